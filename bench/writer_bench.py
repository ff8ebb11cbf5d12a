"""How many rows/s `Database.write_batch` sustains, per batch size, on a file.

    python bench/writer_bench.py [--rows 50000] [--dir /tmp] [--batch 1 64 256]

Each batch size gets a fresh database; rows are generated up front so only the write is
timed. Roll-ups use a realistic spread (3 days x 20 keys x 4 models x 2 providers).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from circuitd.store.rows import RequestRow
from circuitd.store.sqlite import Database


def rows(n: int) -> list[RequestRow]:
    return [
        RequestRow(
            request_id=f"chatcmpl-{i:012d}-bench",
            timestamp=f"2026-11-{20 + i % 3}T12:{i // 60 % 60:02d}:{i % 60:02d}.123Z",
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
        for i in range(n)
    ]


def bench(directory: Path, batch: int, data: list[RequestRow]) -> float:
    with Database.open(directory / f"bench-{batch}.db") as db:
        start = time.perf_counter()
        for i in range(0, len(data), batch):
            db.write_batch(data[i : i + batch])
        elapsed = time.perf_counter() - start
        assert db.count_requests() == len(data)
    return len(data) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64, 256])
    args = parser.parse_args()
    data = rows(args.rows)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="circuitd-bench-") as tmp:
        for batch in args.batch:
            rate = bench(Path(tmp), batch, data)
            print(f"batch {batch:>5}: {rate:>10,.0f} rows/s")


if __name__ == "__main__":
    main()
