"""Open-loop load at a fixed rate, with latency to the microsecond: what a gateway adds.

    .venv/bin/python bench/fixed_rate.py URL --rate 500 --seconds 15 [--stream-share 0.3]
        [--key bench-key] [--json] [--raw FILE]

Request i is due at start + i/rate whether or not earlier ones have answered (no coordinated
omission: a slow answer delays no later request, and each latency counts from when its
request was due, so a client that falls behind shows it). One trio task per request through
one `httpx.AsyncClient` on circuitd's `Http1Transport` (the cheapest Python client at hand;
its own cost is in every row alike, so compare rows, not absolutes). Streams also report the
time to first token: from due time to the first content delta (`"content":"x`).
The first second is warm-up and not counted. Prints a summary, or JSON with `--json`;
`--raw FILE` also writes every counted latency (JSON: json_ms, stream_ms, ttft_ms), so that
several such processes, for a rate one Python process cannot send, can be merged exactly.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import msgspec
import trio

from circuitd.upstream import Http1Transport

FIRST_CONTENT = re.compile(rb'"content":"[^"]')
WARMUP_S = 1.0
STRAGGLERS_S = 10.0
TIMEOUTS = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=30.0)
MESSAGES = [
    {"role": "system", "content": "You are a concise assistant for an operations team."},
    {"role": "user", "content": "Summarise why the nightly export job stalled. " * 12},
]


def body(stream: bool) -> bytes:
    return msgspec.json.encode(
        {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 64, "stream": stream}
    )


@dataclass
class Samples:
    json_ms: list[float] = field(default_factory=list)
    stream_ms: list[float] = field(default_factory=list)  # the whole stream
    ttft_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # transport errors by type


def failures(summary: dict[str, Any]) -> int:
    """A `--json` summary's calls that did not end in a 200: other statuses, transport
    errors, the unfinished."""
    other = sum(count for status, count in summary["statuses"].items() if status != "200")
    return other + sum(summary["errors"].values())


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN when there are no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


@dataclass(frozen=True)
class Summary:
    rate: float
    seconds: float
    achieved_rps: float
    json_p50: float
    json_p99: float
    json_p999: float
    stream_p50: float
    stream_p99: float
    ttft_p50: float
    ttft_p99: float
    statuses: dict[str, int]
    errors: dict[str, int]


def summarise(samples: Samples, rate: float, seconds: float, elapsed: float) -> Summary:
    counted = len(samples.json_ms) + len(samples.stream_ms)
    return Summary(
        rate=rate,
        seconds=seconds,
        achieved_rps=counted / elapsed if elapsed else 0.0,
        json_p50=percentile(samples.json_ms, 50),
        json_p99=percentile(samples.json_ms, 99),
        json_p999=percentile(samples.json_ms, 99.9),
        stream_p50=percentile(samples.stream_ms, 50),
        stream_p99=percentile(samples.stream_ms, 99),
        ttft_p50=percentile(samples.ttft_ms, 50),
        ttft_p99=percentile(samples.ttft_ms, 99),
        statuses={str(k): v for k, v in sorted(samples.statuses.items())},
        errors=dict(samples.errors),
    )


async def one(
    client: httpx.AsyncClient,
    url: str,
    content: bytes,
    headers: dict[str, str],
    due: float,
    samples: Samples | None,
) -> None:
    """One call due at `due` (trio.current_time); recorded into `samples` unless None."""
    stream = content is STREAM_BODY
    ttft: float | None = None
    try:
        request = client.build_request("POST", url, content=content, headers=headers)
        response = await client.send(request, stream=True)
        try:
            if stream and response.status_code == 200:
                seen = b""
                async for chunk in response.aiter_raw():
                    if ttft is None:
                        seen += chunk
                        if FIRST_CONTENT.search(seen):
                            ttft = trio.current_time() - due
            else:
                await response.aread()
        finally:
            await response.aclose()
    except httpx.HTTPError as error:
        if samples is not None:
            samples.errors[type(error).__name__] += 1
        return
    if samples is None:
        return
    elapsed_ms = (trio.current_time() - due) * 1000
    samples.statuses[response.status_code] += 1
    if response.status_code != 200:
        return
    if stream:
        samples.stream_ms.append(elapsed_ms)
        if ttft is not None:
            samples.ttft_ms.append(ttft * 1000)
    else:
        samples.json_ms.append(elapsed_ms)


JSON_BODY, STREAM_BODY = body(False), body(True)


async def drive(
    base_url: str,
    *,
    rate: float,
    seconds: float,
    stream_share: float,
    key: str,
    seed: int = 8,
    samples: Samples | None = None,
) -> Summary:
    """Sends `rate` requests a second for WARMUP_S + `seconds`; the warm-up is not counted.
    The latencies go into `samples` when given."""
    url = base_url.rstrip("/") + "/v1/chat/completions"
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    rng = random.Random(seed)
    samples = Samples() if samples is None else samples
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
    total = int((WARMUP_S + seconds) * rate)
    warmup = int(WARMUP_S * rate)
    async with httpx.AsyncClient(transport=Http1Transport(limits=limits), timeout=TIMEOUTS) as c:
        start = trio.current_time() + 0.1
        async with trio.open_nursery() as nursery:
            for i in range(total):
                due = start + i / rate
                await trio.sleep_until(due)
                content = STREAM_BODY if rng.random() < stream_share else JSON_BODY
                record = samples if i >= warmup else None
                nursery.start_soon(one, c, url, content, headers, due, record)
            elapsed = trio.current_time() - (start + WARMUP_S)
            # A server that cannot keep up leaves a backlog: it gets STRAGGLERS_S more, then
            # what is left counts as unfinished rather than being waited on.
            nursery.cancel_scope.deadline = trio.current_time() + STRAGGLERS_S
        unfinished = total - warmup - samples.statuses.total() - samples.errors.total()
        if unfinished > 0:
            samples.errors["unfinished"] += unfinished
    return summarise(samples, rate, seconds, elapsed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the server's root, e.g. http://127.0.0.1:8080")
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="after 1 s of warm-up")
    parser.add_argument("--stream-share", type=float, default=0.0, help="share of streams")
    parser.add_argument("--key", default="bench-key")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--raw", help="write every counted latency to this file (JSON)")
    args = parser.parse_args()
    samples = Samples()
    summary = trio.run(
        lambda: drive(
            args.url,
            rate=args.rate,
            seconds=args.seconds,
            stream_share=args.stream_share,
            key=args.key,
            samples=samples,
        )
    )
    if args.raw:
        raw = {
            "json_ms": samples.json_ms,
            "stream_ms": samples.stream_ms,
            "ttft_ms": samples.ttft_ms,
        }
        with open(args.raw, "wb") as f:
            f.write(msgspec.json.encode(raw))
    if args.json:
        print(msgspec.json.encode(asdict(summary)).decode())
    else:
        for name, value in asdict(summary).items():
            print(f"{name:14} {value:.2f}" if isinstance(value, float) else f"{name:14} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
