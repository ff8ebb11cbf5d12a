"""httpx's default transport (httpcore's pool) vs. circuitd's `Http1Transport`, client side.

    .venv/bin/python bench/transport_bench.py [--requests 20000] [--concurrency 32]
        [--scenario json|stream|both] [--rounds 3] [--transport httpx|http1|both]

Starts `circuitd mock-upstream` as a subprocess (its own process: the numbers here are the
client's), then sends `requests` chat completions from `concurrency` trio tasks through one
shared `httpx.AsyncClient`, the way the gateway does (`build_request`, `send(stream=True)`,
`aread` or `aiter_raw`, `aclose`, a per-request `timeout=`). Rounds alternate between the
transports. Prints, per round: requests/s, the client process's CPU time per request (µs,
`time.process_time`), and the TCP connections the mock upstream accepted during the round.
The mock upstream shares the machine's cores with the client: compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
import msgspec
import trio

from circuitd.upstream import Http1Transport

BODY = msgspec.json.encode(
    {
        "model": "gpt-4o-mini",
        "max_tokens": 64,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Tell me about connection pools. " * 20},
        ],
    }
)
STREAM_BODY = msgspec.json.encode({**msgspec.json.decode(BODY), "stream": True})
WARMUP = 500
TIMEOUTS = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)


def start_mock() -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "circuitd", "mock-upstream", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    prefix = "mock-upstream listening on "
    if not line.startswith(prefix):
        process.kill()
        raise SystemExit(f"mock upstream did not start: {line!r}")
    return process, line.removeprefix(prefix).strip()


def client_for(name: str, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2
    )
    if name == "http1":
        return httpx.AsyncClient(transport=Http1Transport(limits=limits), timeout=TIMEOUTS)
    return httpx.AsyncClient(limits=limits, timeout=TIMEOUTS, trust_env=False)


async def one_json(client: httpx.AsyncClient, url: str, timeouts: httpx.Timeout) -> int:
    request = client.build_request(
        "POST", url, content=BODY, headers={"content-type": "application/json"}, timeout=timeouts
    )
    response = await client.send(request, stream=True)
    try:
        return len(await response.aread())
    finally:
        await response.aclose()


async def one_stream(client: httpx.AsyncClient, url: str, timeouts: httpx.Timeout) -> int:
    request = client.build_request(
        "POST",
        url,
        content=STREAM_BODY,
        headers={"content-type": "application/json"},
        timeout=timeouts,
    )
    response = await client.send(request, stream=True)
    size = 0
    try:
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if chunk.endswith(b"data: [DONE]\n\n"):
                break  # as the gateway's SSE relay: it stops at [DONE]
    finally:
        await response.aclose()
    return size


async def run_round(
    client: httpx.AsyncClient,
    base: str,
    one: Callable[[httpx.AsyncClient, str, httpx.Timeout], Awaitable[int]],
    requests: int,
    concurrency: int,
) -> tuple[float, float]:
    """Seconds of wall time and of process CPU time for `requests` calls."""
    url = base + "/v1/chat/completions"
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one(client, url, TIMEOUTS)

    wall, cpu = time.perf_counter(), time.process_time()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return time.perf_counter() - wall, time.process_time() - cpu


def connections(base: str) -> int:
    stats = httpx.get(base + "/_mock/stats", timeout=5.0).json()
    return int(stats["connections"])


async def bench(args: argparse.Namespace, base: str) -> None:
    scenarios = ["json", "stream"] if args.scenario == "both" else [args.scenario]
    transports = ["httpx", "http1"] if args.transport == "both" else [args.transport]
    print(
        f"{args.requests} requests, {args.concurrency} concurrent tasks, "
        f"{os.cpu_count()} CPUs (shared with the mock upstream)"
    )
    print(
        f"{'scenario':8} {'transport':9} {'round':>5} {'req/s':>8} {'CPU µs/req':>11} {'conns':>6}"
    )
    for scenario in scenarios:
        one = one_json if scenario == "json" else one_stream
        clients = {name: client_for(name, args.concurrency) for name in transports}
        for client in clients.values():
            await run_round(client, base, one, WARMUP, args.concurrency)
        for round_ in range(1, args.rounds + 1):
            for name, client in clients.items():
                before = await trio.to_thread.run_sync(connections, base)
                wall, cpu = await run_round(client, base, one, args.requests, args.concurrency)
                opened = await trio.to_thread.run_sync(connections, base) - before - 1
                print(
                    f"{scenario:8} {name:9} {round_:>5} {args.requests / wall:>8.0f} "
                    f"{cpu / args.requests * 1e6:>11.0f} {opened:>6}",
                    flush=True,
                )
        for client in clients.values():
            await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--scenario", choices=["json", "stream", "both"], default="both")
    parser.add_argument("--transport", choices=["httpx", "http1", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    process, base = start_mock()
    try:
        trio.run(bench, args, base)
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
