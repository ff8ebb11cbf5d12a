"""Many workers' ledger writers on one SQLite file: does the ledger keep up with the rate
issue 8 aims at, and how long does a batch wait for the write lock?

    .venv/bin/python bench/ledger_writers.py [--procs 16] [--rate 10000] [--seconds 20]
        [--interval-ms 50] [--preload 0] [--dir /tmp]

Each of `--procs` processes plays one worker's write-behind: every `--interval-ms` (the
writer's batch period) it writes the rows due since its last batch through
`Database.write_batch` on its own connection to the one ledger file (WAL, BEGIN IMMEDIATE,
the gateway's busy timeout), `--rate` rows/s in all. Rows are made up front (gateway request
ids, bench/writer_bench.py's rows), so only the writes are timed. Reports the rows/s written
against the rate, each batch's time (waiting for the lock included) p50 / p99 / max, busy
errors, and the rows the ledger holds at the end against those sent. CPU-light (~10 µs a
row), so 16 writers at 10,000 rows/s can be measured on a small machine: what it shows is
the lock and the WAL, not the cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

from fixed_rate import percentile
from writer_bench import IDS, rows

from circuitd.store.sqlite import Database


def writer(
    path: str, index: int, rate: float, seconds: float, interval: float, start: float
) -> tuple[list[float], int, int]:
    """One worker's write-behind: (each batch's time in ms, rows written, errors)."""
    data = rows(int(rate * seconds) + 1, IDS["gateway"], first=index)
    db = Database.open(path)
    times: list[float] = []
    written = errors = 0
    sent = 0
    tick = start
    try:
        while tick < start + seconds:
            tick += interval
            pause = tick - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            due = min(len(data), int((tick - start) * rate))
            batch, sent = data[sent:due], due
            began = time.perf_counter()
            try:
                written += db.write_batch(batch)
            except Exception as error:  # counted: a lost batch is the finding
                errors += 1
                print(f"writer {index}: {error!r}", file=sys.stderr)
            times.append((time.perf_counter() - began) * 1000)
    finally:
        db.close()
    return times, written, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=16)
    parser.add_argument("--rate", type=float, default=10_000.0, help="rows/s, all together")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval-ms", type=float, default=50.0)
    parser.add_argument("--preload", type=int, default=0, help="rows in the ledger first")
    parser.add_argument("--dir", default="/tmp")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = str(Path(tmp) / "ledger.db")
        db = Database.open(path)
        if args.preload:
            db.write_batch(rows(args.preload, IDS["gateway"]))
        db.close()
        start = time.monotonic() + 2.0  # all processes started and their rows made
        work = [
            (path, i, args.rate / args.procs, args.seconds, args.interval_ms / 1000, start)
            for i in range(args.procs)
        ]
        with multiprocessing.get_context("spawn").Pool(args.procs) as pool:
            results = pool.starmap(writer, work)
        db = Database.open(path)
        held = db.count_requests() - args.preload
        db.close()
    times = sorted(t for r in results for t in r[0])
    written = sum(r[1] for r in results)
    errors = sum(r[2] for r in results)
    print(
        f"{args.procs} writers, {args.rate:,.0f} rows/s for {args.seconds:g} s, a batch every "
        f"{args.interval_ms:g} ms, preload {args.preload:,}: {written / args.seconds:,.0f} "
        f"rows/s written; batch ms p50 {percentile(times, 50):.2f} p99 {percentile(times, 99):.2f} "
        f"max {times[-1]:.2f} ({len(times):,} batches); errors {errors}; "
        f"ledger holds {held:,} of {written:,}"
    )
    return 1 if errors or held != written else 0


if __name__ == "__main__":
    sys.exit(main())
