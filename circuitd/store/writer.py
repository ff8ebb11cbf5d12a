"""Write-behind: settlement queues rows; one writer task batches them into SQLite.

Rules:
- Submitting never raises and never loses a row silently: a row that cannot be queued (queue
  full past `block_timeout`, writer closed, caller cancelled while waiting) counts as dropped.
- A batch is up to `batch_rows` rows, or what arrived within `flush_interval` of its first
  row; it is written in one transaction in a worker thread (one thread call per batch). The
  writer wakes once a batch, not once a row: intake only counts the rows it queues.
- A batch failing for the database's sake (busy, I/O, disk full) is retried with backoff a
  bounded number of times, then dropped (and, until a write succeeds again, later batches get
  a single attempt). A batch failing for a row's sake (a constraint, a
  value that cannot be bound) is written again row by row, so one bad row costs only itself.
  Every drop is logged with request ids. The writer never crashes the daemon.
- `close()` ends intake; `run` drains everything queued, then returns. If `run` is cancelled
  instead, it makes one shielded attempt to write what it holds and what is queued.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

import trio

from circuitd.store.rows import RequestRow
from circuitd.store.sqlite import Database, is_row_error

log = logging.getLogger("circuitd.store")

T = TypeVar("T")

DEFAULT_RETRY_DELAYS = (0.1, 0.5, 2.0)


class BatchSink(Protocol):
    """What the writer writes to: `Database` in production, a recorder in tests."""

    def write_batch(self, rows: Sequence[RequestRow]) -> int: ...

    def close(self) -> None: ...


class SyncRunner(Protocol):
    """Runs a blocking callable without blocking trio: a worker thread in production; tests
    may run it inline so that `autojump_clock` sees every wait."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


async def in_worker_thread(fn: Callable[[], T]) -> T:
    return await trio.to_thread.run_sync(fn)


@dataclass(frozen=True, slots=True)
class WriterStatistics:
    queued: int  # rows waiting in the queue now
    queue_size: int
    written: int  # rows inserted
    duplicates: int  # rows whose request id was already stored (not an error)
    dropped: int  # rows lost: queue full, writer closed, or a write that kept failing
    batches: int  # batches handled
    last_batch_rows: int


def _write_each(sink: BatchSink, rows: Sequence[RequestRow]) -> tuple[int, list[RequestRow]]:
    """Worker side: one transaction per row. Returns (inserted, rows not written)."""
    inserted = 0
    failed: list[RequestRow] = []
    for i, row in enumerate(rows):
        try:
            inserted += sink.write_batch((row,))
        except Exception as exc:
            log.exception("store: row %s cannot be written", row.request_id)
            failed.append(row)
            if not is_row_error(exc):  # the database itself is failing: stop trying
                failed.extend(rows[i + 1 :])
                break
    return inserted, failed


class WriteBehind:
    def __init__(
        self,
        *,
        queue_size: int,
        batch_rows: int,
        flush_interval: float,
        block_timeout: float,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        opener: Callable[[str | Path], BatchSink] = Database.open,
        run_sync: SyncRunner = in_worker_thread,
    ) -> None:
        if queue_size < 1 or batch_rows < 1:
            raise ValueError("queue_size and batch_rows must be >= 1")
        if not all(math.isfinite(t) and t >= 0 for t in (flush_interval, block_timeout)):
            raise ValueError("flush_interval and block_timeout must be finite and >= 0")
        self._queue_size = queue_size
        self._batch_rows = batch_rows
        self._flush_interval = flush_interval
        self._block_timeout = block_timeout
        self._retry_delays = tuple(retry_delays)
        self._opener = opener
        self._run_sync = run_sync
        self._send, self._receive = trio.open_memory_channel[RequestRow](queue_size)
        self._holding: list[RequestRow] = []  # the batch being gathered or written
        # The writer waits for the rest of a batch without a wake-up per row: intake counts
        # `_arrivals` and sets `_batch_ready` once `_wake_at` is reached (a whole batch).
        self._arrivals = 0
        self._wake_at = math.inf
        self._batch_ready = trio.Event()
        self._closing = False
        # Set when a batch was dropped after all its retries, cleared by the next success:
        # while the database stays down each batch gets one attempt, so a drain of a full
        # queue cannot take (queue_size / batch_rows) x the whole backoff schedule.
        self._failing = False
        self._written = 0
        self._duplicates = 0
        self._dropped = 0
        self._batches = 0
        self._last_batch_rows = 0

    # -- intake (any task) ------------------------------------------------------------------

    def submit_nowait(self, row: RequestRow) -> bool:
        """Queue `row` if there is room; never blocks. False (counted dropped) if not."""
        try:
            self._send.send_nowait(row)
        except trio.WouldBlock:
            self._drop((row,), "queue full")
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._drop((row,), "writer closed")
            return False
        self._arrived()
        return True

    async def submit(self, row: RequestRow) -> bool:
        """Queue `row`, waiting up to `block_timeout` for room; False (counted dropped) if not.

        Once queued it reports True: the fast path's schedule point cannot raise Cancelled.
        """
        try:
            self._send.send_nowait(row)
        except trio.WouldBlock:
            pass
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._drop((row,), "writer closed")
            return False
        else:
            self._arrived()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return True
        try:
            with trio.move_on_after(self._block_timeout):
                await self._send.send(row)  # cancel-safe: when cancelled, nothing was sent
                self._arrived()
                return True
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._drop((row,), "writer closed")
            return False
        except trio.Cancelled:
            self._drop((row,), "submit cancelled")
            raise
        self._drop((row,), "queue full")
        return False

    def _arrived(self) -> None:
        self._arrivals += 1
        if self._arrivals >= self._wake_at:
            self._batch_ready.set()

    def close(self) -> None:
        """End intake; `run` writes what is queued, then returns. Idempotent."""
        self._closing = True
        self._send.close()
        self._batch_ready.set()  # a batch being gathered is written now

    @property
    def queued(self) -> int:
        return self._send.statistics().current_buffer_used

    @property
    def full(self) -> bool:
        """A `submit` now would wait for room."""
        return self.queued >= self._queue_size

    @property
    def dropped(self) -> int:
        return self._dropped

    def statistics(self) -> WriterStatistics:
        return WriterStatistics(
            queued=self.queued,
            queue_size=self._queue_size,
            written=self._written,
            duplicates=self._duplicates,
            dropped=self._dropped,
            batches=self._batches,
            last_batch_rows=self._last_batch_rows,
        )

    # -- the writer task --------------------------------------------------------------------

    async def run(
        self, db_path: str | Path, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Open the store, report started, write batches until closed and drained."""
        # Opening (and migrating) happens in the worker too; a failure propagates to
        # `nursery.start`, so a bad path stops the daemon at startup, not at the first row.
        sink = await self._run_sync(partial(self._opener, db_path))
        try:
            task_status.started()
            while await self._gather():
                await self._write(sink, self._holding)
                self._holding = []
        finally:
            with trio.CancelScope(shield=True):
                self._send.close()  # from here on submitters are told at once
                await self._last_chance(sink)
                self._receive.close()
                try:
                    await self._run_sync(sink.close)
                except Exception:
                    log.exception("store: closing the database failed")

    async def _gather(self) -> bool:
        """Fill `_holding` with the next batch; False once the channel is closed and empty."""
        try:
            first = await self._receive.receive()
        except trio.EndOfChannel:
            return False
        batch = self._holding = [first]
        missing = self._batch_rows - 1 - self.queued
        if missing > 0 and not self._closing:
            # Wait for the rest of the batch (up to its deadline) without a wake-up per row,
            # then take it in one go: a row's arrival costs intake a count, not a pass of
            # the scheduler through this task.
            self._batch_ready = trio.Event()
            self._wake_at = self._arrivals + missing
            try:
                with trio.move_on_at(trio.current_time() + self._flush_interval):
                    await self._batch_ready.wait()
            finally:
                self._wake_at = math.inf
        try:
            while len(batch) < self._batch_rows:
                batch.append(self._receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            pass  # (closed: write this batch; the next _gather reports the end)
        return True

    async def _write(self, sink: BatchSink, batch: list[RequestRow]) -> None:
        delays = () if self._failing else self._retry_delays
        for attempt, delay in enumerate((*delays, None), start=1):
            try:
                inserted = await self._run_sync(partial(sink.write_batch, batch))
            except Exception as exc:
                if is_row_error(exc):
                    log.warning(
                        "store: batch of %d rows rejected; writing rows one by one",
                        len(batch),
                        exc_info=True,
                    )
                    await self._write_rows_apart(sink, batch)
                    return
                if delay is None:
                    log.exception("store: batch of %d rows failed %d times", len(batch), attempt)
                    self._failing = True
                    self._account(batch, 0, failed=len(batch))
                    self._drop(batch, "write failed")
                    return
                log.warning(
                    "store: batch of %d rows failed (attempt %d); retrying in %.3gs",
                    len(batch),
                    attempt,
                    delay,
                    exc_info=True,
                )
                await trio.sleep(delay)
            else:
                self._failing = False
                self._account(batch, inserted)
                return

    async def _write_rows_apart(self, sink: BatchSink, batch: list[RequestRow]) -> None:
        inserted, failed = await self._run_sync(partial(_write_each, sink, batch))
        self._account(batch, inserted, failed=len(failed))
        if failed:
            self._drop(failed, "write failed")

    async def _last_chance(self, sink: BatchSink) -> None:
        """After a cancellation: one attempt at the batch in hand plus what is queued."""
        rows, self._holding = self._holding, []
        while True:
            try:
                rows.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        if not rows:
            return
        try:
            inserted = await self._run_sync(partial(sink.write_batch, rows))
        except Exception:
            log.exception("store: final batch of %d rows failed", len(rows))
            self._account(rows, 0, failed=len(rows))
            self._drop(rows, "write failed at shutdown")
        else:
            self._account(rows, inserted)

    def _account(self, batch: Sequence[RequestRow], inserted: int, *, failed: int = 0) -> None:
        self._written += inserted
        self._duplicates += len(batch) - failed - inserted
        self._batches += 1
        self._last_batch_rows = len(batch)

    def _drop(self, rows: Sequence[RequestRow], why: str) -> None:
        self._dropped += len(rows)
        # request ids let an operator reconcile with the per-call log lines
        ids = ", ".join(row.request_id for row in rows[:5])
        more = f" (+{len(rows) - 5} more)" if len(rows) > 5 else ""
        log.error("store: dropped %d row(s), %s: %s%s", len(rows), why, ids, more)
