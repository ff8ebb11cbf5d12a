"""Side-by-side load runner: mock upstream direct vs. through circuitd, under locust.

    .venv/bin/python bench/run.py --seconds 20 --users 32 --workers 1

Starts `circuitd mock-upstream`, then circuitd (env-only mode, pointed at the mock, one client
key), and runs each locust scenario against each target in turn with the same load. Prints a
Markdown table (req/s, median/p95/p99 latency, failures) and the gateway's RSS after the run.
Requires the bench extra: `.venv/bin/pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (workers), in MB."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def run_locust(host: str, scenario: str, users: int, seconds: int, out: Path) -> dict[str, str]:
    prefix = out / f"{scenario}-{host.rsplit(':', 1)[1]}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "bench" / "locustfile.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{seconds}s",
            "--host",
            host,
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "ERROR",
            scenario,
        ],
        check=True,
        env={**os.environ, "BENCH_KEY": KEY},
        stdout=subprocess.DEVNULL,
    )
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Name"] == "Aggregated"]
    return rows[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--scenarios", default="ChatJSON,ChatStream")
    args = parser.parse_args()

    out = Path(tempfile.mkdtemp(prefix="circuitd-bench-"))
    up_port, gw_port = free_port(), free_port()
    circuitd = [sys.executable, "-m", "circuitd"]
    upstream = subprocess.Popen(
        [*circuitd, "mock-upstream", "--port", str(up_port)], stdout=subprocess.DEVNULL
    )
    gateway = subprocess.Popen(
        [*circuitd, "serve", "--port", str(gw_port), "--workers", str(args.workers)],
        env={
            **os.environ,
            "PROVIDER": "OPENAI",
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1",
            "CIRCUIT_API_KEYS": KEY,
            "CIRCUIT_DB": str(out / "ledger.db"),
            "CIRCUIT_LOG_LEVEL": "warning",
        },
        cwd=out,
    )
    try:
        wait_listening(up_port)
        wait_listening(gw_port)
        print("| target | scenario | req/s | p50 ms | p95 ms | p99 ms | failures |")
        print("|---|---|---|---|---|---|---|")
        for scenario in args.scenarios.split(","):
            for name, port in (("mock upstream direct", up_port), ("circuitd", gw_port)):
                stats = run_locust(
                    f"http://127.0.0.1:{port}", scenario, args.users, args.seconds, out
                )
                print(
                    f"| {name} | {scenario} | {float(stats['Requests/s']):.0f} "
                    f"| {stats['50%']} | {stats['95%']} | {stats['99%']} "
                    f"| {stats['Failure Count']} |",
                    flush=True,
                )
        rss = rss_mb(gateway.pid)
        print(f"\ncircuitd RSS after the runs: {rss:.0f} MB ({args.workers} worker(s))")
    finally:
        for process in (gateway, upstream):
            process.send_signal(signal.SIGTERM)
        for process in (gateway, upstream):
            process.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
