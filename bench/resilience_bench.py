"""What the resilience layers cost, and how fast they react to an outage and a recovery.

    .venv/bin/python bench/resilience_bench.py overhead [--calls 200000]
    .venv/bin/python bench/resilience_bench.py outage [--concurrency 16] [--outage-s 10]

`overhead`: in one process, the per-call CPU cost of `gateway.router.route` — the breaker's
permit and verdict, the retry bookkeeping, the attempt log and its metrics — around an attempt
that answers at once, against calling that attempt directly (the layers bypassed).

`outage`: starts `circuitd mock-upstream` and `circuitd serve` (env-only mode, the default
breaker and retry settings) and drives it with `concurrency` closed-loop clients sending JSON
chat completions. After a healthy phase the mock upstream answers every request 500
(`POST /_mock/faults`, until cleared) for `outage-s` seconds, then heals. Prints the timeline
in 250 ms buckets and: the time from the outage to the first 503 a client sees (the breaker
open), the calls the upstream received during the outage, the time from the heal to the first
200 and to full traffic (a bucket with no failure and at least 90% of the healthy rate).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import trio
from stack import KEY, running_stack

from circuitd.config import MockConfig
from circuitd.core.backoff import RetryPolicy
from circuitd.core.breaker import BreakerPolicy
from circuitd.gateway.breakers import Breakers
from circuitd.gateway.router import route
from circuitd.gateway.settle import CallRecord
from circuitd.obs.metrics import Metrics
from circuitd.providers.base import Deployment
from circuitd.providers.mock import MockProvider
from circuitd.upstream import Http1Transport

BODY = msgspec.json.encode(
    {
        "model": "gpt-4o-mini",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Tell me about circuit breakers. " * 10}],
    }
)
BUCKET_S = 0.25


# -- overhead --------------------------------------------------------------------------------


async def overhead(calls: int) -> None:
    metrics = Metrics()
    breakers = Breakers(BreakerPolicy(), metrics)
    retry = RetryPolicy()
    deployment = Deployment("mock/gpt-4o-mini", MockProvider("mock", MockConfig()), "m", None)

    async def attempt(_: Deployment) -> None:
        return None

    async def direct() -> None:
        for _ in range(calls):
            await attempt(deployment)

    async def layered() -> None:
        for i in range(calls):
            record = CallRecord(f"req_{i}", 0.0, 0.0)
            await route(
                record,
                (deployment,),
                attempt,
                breakers=breakers,
                retry=retry,
                deadline=float("inf"),
                metrics=metrics,
            )

    async def bare_records() -> None:  # the CallRecord is made either way: not the layers'
        for i in range(calls):
            CallRecord(f"req_{i}", 0.0, 0.0)
            await attempt(deployment)

    results = {}
    for name, run in (("direct", direct), ("records", bare_records), ("route", layered)):
        await run()  # warm-up (the breaker's window fills, metric children exist)
        started = time.process_time()
        await run()
        results[name] = (time.process_time() - started) / calls * 1e6
        print(f"{name:8} {results[name]:7.2f} µs/call")
    added = results["route"] - results["records"]
    print(f"breaker + retry + attempt log: {added:.2f} µs per call")


# -- outage ----------------------------------------------------------------------------------


@dataclass
class Result:
    sent: float
    done: float
    status: int  # 0: the client's own request failed (connect error, timeout)


async def outage(concurrency: int, healthy_s: float, outage_s: float, after_s: float) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="circuitd-resilience-"))
    with running_stack(workdir) as stack:
        limits = httpx.Limits(max_connections=concurrency * 2)
        client = httpx.AsyncClient(
            transport=Http1Transport(limits=limits),
            timeout=httpx.Timeout(30.0),
            headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
        )
        async with client:
            results: list[Result] = []
            stop = trio.Event()

            async def user() -> None:
                url = f"{stack.gateway_url}/v1/chat/completions"
                while not stop.is_set():
                    sent = trio.current_time()
                    try:
                        response = await client.post(url, content=BODY)
                        status = response.status_code
                    except httpx.HTTPError:
                        status = 0
                    results.append(Result(sent, trio.current_time(), status))

            async def upstream_requests() -> int:
                stats = await client.get(f"{stack.upstream_url}/_mock/stats")
                return int(stats.json()["requests"])

            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(user)
                start = trio.current_time()
                await trio.sleep(healthy_s)
                before = await upstream_requests()
                fail_at = trio.current_time()
                await client.post(
                    f"{stack.upstream_url}/_mock/faults",
                    json={"fault": {"status": 500}, "count": None},
                )
                await trio.sleep(outage_s)
                await client.delete(f"{stack.upstream_url}/_mock/faults")
                heal_at = trio.current_time()
                during = await upstream_requests() - before
                await trio.sleep(after_s)
                stop.set()
    report(results, start, fail_at, heal_at, during, concurrency, healthy_s, outage_s)


def report(
    results: list[Result],
    start: float,
    fail_at: float,
    heal_at: float,
    upstream_calls: int,
    concurrency: int,
    healthy_s: float,
    outage_s: float,
) -> None:
    buckets: dict[int, Counter[int]] = {}
    for r in results:
        buckets.setdefault(int((r.done - start) / BUCKET_S), Counter())[r.status] += 1
    # The healthy rate: the second half of the healthy phase (the first warms up).
    warm = [
        sum(c.values())
        for b, c in buckets.items()
        if healthy_s / 2 <= b * BUCKET_S and (b + 1) * BUCKET_S <= healthy_s
    ]
    healthy_rate = sum(warm) / (len(warm) * BUCKET_S)
    print("t_s   " + "  ".join(f"{s:>5}" for s in (200, 500, 502, 503, 0)))
    for b in sorted(buckets):
        c = buckets[b]
        print(f"{b * BUCKET_S:5.2f} " + "  ".join(f"{c[s]:>5}" for s in (200, 500, 502, 503, 0)))

    first_503 = min(
        (r.done for r in results if r.status == 503 and r.sent >= fail_at), default=None
    )
    before_trip = [
        r for r in results if fail_at <= r.sent and (first_503 is None or r.done < first_503)
    ]
    failed_fast = sorted(
        r.done - r.sent for r in results if r.status == 503 and fail_at <= r.sent < heal_at
    )
    first_ok = min((r.done for r in results if r.status == 200 and r.sent >= heal_at), default=None)
    full = None
    for b in sorted(buckets):
        if b * BUCKET_S + start < heal_at:
            continue
        c = buckets[b]
        if sum(c.values()) == c[200] and c[200] >= 0.9 * healthy_rate * BUCKET_S:
            full = start + b * BUCKET_S
            break

    def ms(t: float | None, since: float) -> str:
        return "never" if t is None else f"{(t - since) * 1000:.0f} ms"

    print(f"\nconcurrency {concurrency}, outage {outage_s:.0f} s, healthy {healthy_rate:.0f} req/s")
    print(f"outage → first 503 to a client: {ms(first_503, fail_at)}")
    print(f"answers before the trip: {len(before_trip)} ({Counter(r.status for r in before_trip)})")
    print(f"upstream calls during the outage: {upstream_calls}")
    if failed_fast:
        print(
            f"503 latency: p50 {failed_fast[len(failed_fast) // 2] * 1000:.1f} ms, "
            f"p99 {failed_fast[int(len(failed_fast) * 0.99)] * 1000:.1f} ms "
            f"({len(failed_fast)} answers)"
        )
    print(f"heal → first 200: {ms(first_ok, heal_at)}")
    print(f"heal → full traffic: {ms(full, heal_at)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--calls", type=int, default=200_000)
    u = sub.add_parser("outage")
    u.add_argument("--concurrency", type=int, default=16)
    u.add_argument("--healthy-s", type=float, default=4.0)
    u.add_argument("--outage-s", type=float, default=10.0)
    u.add_argument("--after-s", type=float, default=25.0)
    args = parser.parse_args()
    if args.command == "overhead":
        trio.run(overhead, args.calls)
    else:
        trio.run(outage, args.concurrency, args.healthy_s, args.outage_s, args.after_s)


if __name__ == "__main__":
    main()
