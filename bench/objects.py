"""A leak check by census: the live Python objects, by type, after each round of calls.

    .venv/bin/python bench/objects.py [--rounds 9] [--calls 3000]

circuitd runs in this process (the tests' harness, port 0, a temporary ledger) in front of
`circuitd mock-upstream` (a subprocess); each round sends `--calls` chat calls, a third of
them streams, 32 at a time, lets the write-behind flush, collects garbage and counts the
objects `gc` tracks. A leak is a type whose count keeps rising round after round; RSS alone
cannot tell one from the allocator's and trio's own warm-up. Prints the total and the trio
`CancelScope`s per round, then the types that grew between the middle round and the last.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.harness

from stack import CIRCUITD, free_port, wait_listening

from circuitd.upstream import Http1Transport
from tests.harness import running_gateway

CONCURRENCY = 32


def census() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__qualname__ for o in gc.get_objects())


async def calls(client: httpx.AsyncClient, n: int) -> None:
    limiter = trio.CapacityLimiter(CONCURRENCY)

    async def one(i: int) -> None:
        async with limiter:
            body = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": i % 3 == 0,
            }
            headers = {"authorization": "Bearer bench-key"}
            answer = await client.post("/v1/chat/completions", json=body, headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(f"call {i}: {answer.status_code} {answer.text[:200]}")

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)


async def run(upstream: str, rounds: int, per_round: int) -> None:
    env = {
        "PROVIDER": "OPENAI",
        "OPENAI_BASE_URL": upstream,
        "OPENAI_API_KEY": "sk-bench",
        "CIRCUIT_API_KEYS": "bench-key",
        "CIRCUIT_LOG_LEVEL": "warning",
    }
    with tempfile.TemporaryDirectory() as workdir:
        async with (
            running_gateway(Path(workdir), env=env) as gateway,
            httpx.AsyncClient(base_url=gateway.url, transport=Http1Transport(), timeout=30) as c,
        ):
            counts = []
            for number in range(rounds):
                await calls(c, per_round)
                await trio.sleep(0.5)  # the write-behind's flush interval
                counts.append(census())
                total, scopes = sum(counts[-1].values()), counts[-1]["CancelScope"]
                print(f"round {number}: {total:,} objects, {scopes:,} CancelScope", flush=True)
            grew = counts[-1] - counts[len(counts) // 2]
            print("grew from the middle round to the last:", grew.most_common(10) or "nothing")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=3000, help="per round")
    args = parser.parse_args()
    port = free_port()
    mock = subprocess.Popen(
        [*CIRCUITD, "mock-upstream", "--port", str(port)], stdout=subprocess.DEVNULL
    )
    try:
        wait_listening(port)
        trio.run(run, f"http://127.0.0.1:{port}/v1", args.rounds, args.calls)
    finally:
        mock.terminate()
        mock.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
