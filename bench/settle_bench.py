"""The cost of settlement on the hot path: with the SQLite ledger vs. without persistence.

    .venv/bin/python bench/settle_bench.py [--calls 20000] [--concurrency 32]

Settles `calls` realistic stream records (usage from the provider, 3 attempts logged) through
the real `Settler` and `WriteBehind`, from `concurrency` trio tasks, twice: once writing to a
SQLite file (WAL, batches of 256 / 50 ms, in a worker thread) and once into a sink that drops
the rows. Prints process CPU time per call (the writer thread's included; the JSON log line,
written to /dev/null, too), so the difference is what persistence adds to each request.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from circuitd.config import MockConfig
from circuitd.core.pricing import Price
from circuitd.core.tokens import default_tokenizer
from circuitd.gateway.admission import Admission
from circuitd.gateway.settle import CallRecord, Settler
from circuitd.obs.logs import JsonFormatter
from circuitd.obs.metrics import Metrics
from circuitd.providers.base import Deployment
from circuitd.providers.mock import MockProvider
from circuitd.store.rows import AttemptRow, RequestRow
from circuitd.store.sqlite import Database
from circuitd.store.writer import BatchSink, WriteBehind
from circuitd.wire.openai import ChatRequestView, Message, Usage


class NullSink:
    def write_batch(self, rows: Sequence[RequestRow]) -> int:
        return len(rows)

    def close(self) -> None:
        pass


def record(i: int, deployment: Deployment, request: ChatRequestView) -> CallRecord:
    now = trio.current_time()
    call = CallRecord(f"req_{i:024x}", now - 0.2, time.time(), stream=True, key_id="bench")
    call.request, call.deployment, call.attempts = request, deployment, 3
    call.status, call.status_code, call.error_code = "ok", 200, None
    call.usage = Usage(prompt_tokens=150, completion_tokens=64)
    call.ttft = 0.05
    call.attempt_log = [
        AttemptRow(
            attempt=n,
            provider="mock",
            deployment=deployment.name,
            status_code=503 if n < 3 else 200,
            error="upstream answered 503" if n < 3 else None,
            latency_ms=12.5,
            started_at="2026-11-23T07:00:00.000Z",
        )
        for n in (1, 2, 3)
    ]
    return call


async def run(calls: int, concurrency: int, opener: Callable[[str | Path], BatchSink]) -> float:
    writer = WriteBehind(
        queue_size=10_000, batch_rows=256, flush_interval=0.05, block_timeout=0.05, opener=opener
    )
    metrics, tokenizer = Metrics(), default_tokenizer()
    admission = Admission(tokenizer=tokenizer, metrics=metrics, default_max_output_tokens=4096)
    settler = Settler(writer, tokenizer, metrics, admission)
    deployment = Deployment(
        name="mock/gpt-4o-mini",
        provider=MockProvider("mock", MockConfig()),
        upstream_model="gpt-4o-mini",
        price=Price(input_usd_per_mtok=0.15, output_usd_per_mtok=0.6),
    )
    request = ChatRequestView(model="gpt-4o-mini", messages=[Message("user", "hello " * 100)])
    with tempfile.TemporaryDirectory() as tmp:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run, Path(tmp) / "bench.db")
            cpu = time.process_time()

            async def worker(first: int) -> None:
                for i in range(first, calls, concurrency):
                    await settler.settle(record(i, deployment, request), trio.current_time())

            async with trio.open_nursery() as workers:
                for first in range(concurrency):
                    workers.start_soon(worker, first)
            writer.close()
        cpu = time.process_time() - cpu  # the writer drained: its thread's work is included
        assert writer.statistics().written == calls, writer.statistics()
    return cpu


def main() -> None:
    # The production log line per call is part of the cost: format it, write it to /dev/null.
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as we do
    handler.setFormatter(JsonFormatter())
    logging.getLogger().handlers[:] = [handler]
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    null: Callable[[str | Path], BatchSink] = lambda _path: NullSink()  # noqa: E731
    rows: list[tuple[str, Callable[[str | Path], BatchSink], int]] = [
        ("SQLite ledger", Database.open, logging.INFO),
        ("no persistence", null, logging.INFO),
        ("neither, no log", null, logging.WARNING),
    ]
    for name, sink, level in rows:
        logging.getLogger().setLevel(level)
        cpu = trio.run(run, args.calls, args.concurrency, sink)
        print(f"{name:>15}: {1e6 * cpu / args.calls:6.1f} µs CPU per settled call")


if __name__ == "__main__":
    main()
