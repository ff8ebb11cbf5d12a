"""Connections per worker: how evenly circuitd's workers share a few keep-alive connections.

    .venv/bin/python bench/spread.py [--workers 2 4 16] [--connections 32 64] [--rounds 3]

For each (workers, connections) and round: starts the bench stack (bench/stack.py) with that
many workers, waits until each one serves, opens the connections (one request each, all kept
open) and counts from /proc which worker holds each. Prints the counts, busiest first. Run
with `PYTHONPATH` at a checkout from before `circuitd.handoff` (session 17) to see the
kernel's SO_REUSEPORT hash alone.
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import time
from pathlib import Path

import procstat
from stack import KEY, running_stack


def wait_serving(log: Path, workers: int, timeout_s: float = 60.0) -> None:
    """Until `workers` workers have logged that they listen."""
    deadline = time.monotonic() + timeout_s
    while log.read_text().count('"msg":"listening"') < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{workers} workers did not all start")
        time.sleep(0.05)


def spread(workers: int, connections: int) -> list[int]:
    workdir = Path(tempfile.mkdtemp(prefix="circuitd-spread-"))
    env = {"CIRCUIT_LOG_LEVEL": "info"}  # for the "listening" lines
    with running_stack(workdir, workers=workers, env=env) as stack:
        wait_serving(workdir / "circuitd.log", workers)
        port = int(stack.gateway_url.rsplit(":", 1)[1])
        opened = []
        for _ in range(connections):
            connection = http.client.HTTPConnection("127.0.0.1", port)
            connection.request("GET", "/v1/models", headers={"authorization": f"Bearer {KEY}"})
            connection.getresponse().read()
            opened.append(connection)
        held = [procstat.connections(pid, port) for pid in procstat.workers(stack.gateway_pid)]
        for connection in opened:
            connection.close()
    return sorted(held, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 16])
    parser.add_argument("--connections", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for workers in args.workers:
        for connections in args.connections:
            for _ in range(args.rounds):
                held = spread(workers, connections)
                idle = sum(1 for n in held if n == 0)
                print(f"{workers:3} workers {connections:4} connections: {held} ({idle} idle)")


if __name__ == "__main__":
    main()
