"""Scheduler passes per call: how often trio runs a task, and polls for I/O, to serve one call.

    .venv/bin/python bench/steps.py [--calls 500] [--stream] [--where]

Runs circuitd in this process (one worker, env-only mode) against `circuitd mock-upstream`,
sends `--calls` chat completions one after another from a plain-socket client in a thread
of its own (outside trio), and counts with a trio instrument what the gateway's event loop
did meanwhile: task steps (each a pass of the scheduler through a task), I/O waits (each a
turn of the loop) and tasks spawned, per call and by task. `--where` adds where each
request's task was suspended after each of its steps. Counts, not times: the figures are the
same on a busy machine, so they show what a change to the hot path does to the loop's work
without a quiet machine to measure it on.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from functools import partial
from types import CoroutineType
from typing import Any

import trio
from stack import CIRCUITD, free_port, wait_listening

from circuitd.config import load_config
from circuitd.server import listening_socket, run_worker

WARMUP_CALLS = 50
APP_TASK = "_run_app"  # the task of one request (circuitd.hypercorn_exchange.Exchange)


class Census(trio.abc.Instrument):
    def __init__(self, where: bool) -> None:
        self.on = False
        self.where = where
        self.steps: Counter[str] = Counter()
        self.spawned: Counter[str] = Counter()
        self.io_waits = 0
        self.suspended_at: Counter[str] = Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.on:
            self.steps[_short(task.name)] += 1

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.on and self.where and _short(task.name) == APP_TASK:
            self.suspended_at[_suspended_at(task.coro)] += 1

    def after_io_wait(self, timeout: float) -> None:
        if self.on:
            self.io_waits += 1

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if self.on:
            self.spawned[_short(task.name)] += 1


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _suspended_at(coro: CoroutineType[Any, Any, Any] | None) -> str:
    """The innermost circuitd frames of a suspended coroutine chain ("" once it is done)."""
    frames = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None and "circuitd" in frame.f_code.co_filename:
            frames.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return " > ".join(frames[-3:]) or "(done)"


def client(port: int, calls: int, stream: bool) -> None:
    """`calls` chat completions on one keep-alive connection, each request in one write (as
    wrk and most clients send a small one) and each answer read whole."""
    body = json.dumps(
        {
            "model": "gpt-4o-mini",
            "stream": stream,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Summarise why the job stalled. " * 12}],
        }
    ).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"authorization: Bearer bench-key\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%b" % (len(body), body)
    )
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(calls):
            sock.sendall(request)
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")


async def measure(census: Census, upstream_port: int, calls: int, stream: bool) -> None:
    workdir = tempfile.mkdtemp(prefix="circuitd-steps-")
    env = {
        "CIRCUIT_DB": f"{workdir}/ledger.db",
        "CIRCUIT_API_KEYS": "bench-key",
        "CIRCUIT_LOG_LEVEL": "warning",
        "PROVIDER": "OPENAI",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
    }
    config = load_config(None, env)
    sock = listening_socket("127.0.0.1", 0, reuse_port=False)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        [url] = await nursery.start(partial(run_worker, config, env, sock, stop=stop))
        port = int(url.rsplit(":", 1)[1])
        await trio.to_thread.run_sync(client, port, WARMUP_CALLS, stream)
        census.on = True
        await trio.to_thread.run_sync(client, port, calls, stream)
        census.on = False
        stop.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--where", action="store_true")
    args = parser.parse_args()
    upstream_port = free_port()
    command = [*CIRCUITD, "mock-upstream", "--port", str(upstream_port)]
    upstream = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        wait_listening(upstream_port)
        census = Census(args.where)
        run = partial(measure, census, upstream_port, args.calls, args.stream)
        trio.run(run, instruments=[census])
    finally:
        upstream.terminate()
        upstream.wait()
    n = args.calls
    kind = "streams" if args.stream else "JSON calls"
    print(
        f"{n} {kind}: {sum(census.steps.values()) / n:.2f} task steps, "
        f"{census.io_waits / n:.2f} I/O waits, {sum(census.spawned.values()) / n:.2f} tasks "
        "spawned per call"
    )
    for name, count in census.steps.most_common(6):
        print(f"  {count / n:6.2f} steps  {name}")
    for name, count in census.spawned.most_common(4):
        print(f"  {count / n:6.2f} spawned  {name}")
    for place, count in census.suspended_at.most_common(8):
        print(f"  {count / n:6.2f} x {APP_TASK} suspended at {place}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
