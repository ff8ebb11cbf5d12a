"""How many rows/s `Database.write_batch` sustains, per batch size and request-id scheme.

    python bench/writer_bench.py [--rows 50000] [--preload 0] [--dir /tmp] [--batch 1 64 256]
        [--ids gateway random]

Each (ids, batch size) gets a fresh database, filled first with `--preload` rows (untimed: a
ledger that has been running a while); rows are generated up front so only the write is
timed, in wall time and in this process's CPU time. Times increase over three days; roll-ups
spread over 3 days x 20 keys x 4 models x 2 providers. `--ids gateway` are the gateway's own
request ids (time-ordered); `random` are 96 random bits, as before session 15.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from circuitd.gateway.app import new_request_id
from circuitd.store.rows import RequestRow
from circuitd.store.sqlite import Database

IDS: dict[str, Callable[[], str]] = {
    "gateway": new_request_id,
    "random": lambda: "req_" + secrets.token_hex(12),
}


def timestamp(i: int, total: int) -> str:
    """The i-th of `total` rows' time: increasing, spread over three days."""
    seconds = i * 3 * 86_400 // total
    day, second = divmod(seconds, 86_400)
    return f"2026-11-{20 + day}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}.123Z"


def rows(n: int, request_id: Callable[[], str], first: int = 0, total: int = 0) -> list[RequestRow]:
    """Rows `first`..`first + n` of `total` (n when 0)."""
    total = total or n
    return [
        RequestRow(
            request_id=request_id(),
            timestamp=timestamp(i, total),
            key_id=f"key-{i % 20}",
            model=f"model-{i % 4}",
            provider=("openai", "anthropic")[i % 2],
            deployment="main",
            upstream_model="upstream",
            stream=bool(i % 2),
            status="ok",
            status_code=200,
            error_code=None,
            latency_ms=123.456,
            ttft_ms=45.6,
            tokens_input=500 + i % 100,
            tokens_output=200 + i % 50,
            tokens_cached=0,
            usage_source="provider",
            cost_micro_usd=1234 + i % 10,
            attempts=1,
        )
        for i in range(first, first + n)
    ]


def bench(path: Path, batch: int, preload: list[RequestRow], data: list[RequestRow]) -> str:
    with Database.open(path) as db:
        for i in range(0, len(preload), 256):
            db.write_batch(preload[i : i + 256])
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(data), batch):
            db.write_batch(data[i : i + batch])
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert db.count_requests() == len(preload) + len(data)
    per_row = 1e6 / len(data)
    return f"{len(data) / elapsed:>10,.0f} rows/s  {cpu * per_row:6.1f} µs CPU/row"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--preload", type=int, default=0)
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--ids", nargs="+", choices=sorted(IDS), default=["gateway", "random"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="circuitd-bench-") as tmp:
        for ids in args.ids:
            total = args.preload + args.rows
            preload = rows(args.preload, IDS[ids], 0, total)
            data = rows(args.rows, IDS[ids], args.preload, total)
            for batch in args.batch:
                result = bench(Path(tmp) / f"{ids}-{batch}.db", batch, preload, data)
                print(f"{ids:>8} ids, batch {batch:>5}: {result}")


if __name__ == "__main__":
    main()
