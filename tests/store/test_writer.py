"""Write-behind: batching, bounds, drain, failures. Deterministic: the tests run the store
calls inline (no worker thread) so the mock clock sees every wait; one test uses real
threads and a real file end to end."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import apsw
import msgspec
import pytest
import trio
import trio.testing

from circuitd.store.rows import RequestRow
from circuitd.store.sqlite import Database
from circuitd.store.writer import WriteBehind
from tests.store.factory import make_row

T = TypeVar("T")


class Recorder:
    """A sink that records batches; `fail` decides, per call, whether to raise instead."""

    def __init__(
        self, fail: Callable[[Sequence[RequestRow]], BaseException | None] = lambda _: None
    ):
        self.fail = fail
        self.batches: list[list[str]] = []
        self.calls = 0
        self.closed = False

    def write_batch(self, rows: Sequence[RequestRow]) -> int:
        self.calls += 1
        error = self.fail(rows)
        if error is not None:
            raise error
        self.batches.append([row.request_id for row in rows])
        return len(rows)

    def close(self) -> None:
        self.closed = True

    @property
    def sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]

    @property
    def ids(self) -> list[str]:
        return [i for batch in self.batches for i in batch]


class Inline:
    """Runs store calls in the trio thread; `gate` lets a test hold the writer mid-write."""

    def __init__(self) -> None:
        self.gate: trio.Event | None = None

    async def __call__(self, fn: Callable[[], T]) -> T:
        await trio.lowlevel.checkpoint()
        if self.gate is not None:
            await self.gate.wait()
        return fn()


def writer_for(
    sink: Recorder | None = None,
    *,
    runner: Inline | None = None,
    queue_size: int = 100,
    batch_rows: int = 4,
    flush_interval: float = 0.05,
    block_timeout: float = 1.0,
) -> WriteBehind:
    chosen = Recorder() if sink is None else sink
    return WriteBehind(
        queue_size=queue_size,
        batch_rows=batch_rows,
        flush_interval=flush_interval,
        block_timeout=block_timeout,
        opener=lambda _path: chosen,
        run_sync=Inline() if runner is None else runner,
    )


async def test_batches_by_size_then_by_time(mock_clock: trio.testing.MockClock) -> None:
    sink = Recorder()
    writer = writer_for(sink, batch_rows=4, flush_interval=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, "unused")
        for i in range(10):
            assert writer.submit_nowait(make_row(i))
        await trio.testing.wait_all_tasks_blocked()
        assert sink.sizes == [4, 4]  # the last two wait for more rows or the interval
        mock_clock.jump(0.049)
        await trio.testing.wait_all_tasks_blocked()
        assert sink.sizes == [4, 4]
        mock_clock.jump(0.002)
        await trio.testing.wait_all_tasks_blocked()
        assert sink.sizes == [4, 4, 2]
        stats = writer.statistics()
        assert (stats.written, stats.batches, stats.last_batch_rows, stats.queued) == (10, 3, 2, 0)
        writer.close()
    assert sink.ids == [f"req-{i:06d}" for i in range(10)]
    assert sink.closed


class TaskSteps(trio.abc.Instrument):
    """Counts the times the scheduler runs `task`."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += task is self.task


async def test_a_batch_fills_without_waking_the_writer_per_row(
    mock_clock: trio.testing.MockClock,
) -> None:
    sink = Recorder()
    writer = writer_for(sink, batch_rows=4, flush_interval=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, "unused")
        [writer_task] = nursery.child_tasks
        writer.submit_nowait(make_row(0))
        await trio.testing.wait_all_tasks_blocked()  # the writer waits for the rest
        steps = TaskSteps(writer_task)
        trio.lowlevel.add_instrument(steps)
        try:
            for i in (1, 2):
                writer.submit_nowait(make_row(i))
                await trio.testing.wait_all_tasks_blocked()
            assert (sink.sizes, steps.steps) == ([], 0)  # rows 1 and 2 only counted
            writer.submit_nowait(make_row(3))  # a whole batch: written now, not at 60 s
            await trio.testing.wait_all_tasks_blocked()
            assert sink.sizes == [4] and steps.steps > 0
        finally:
            trio.lowlevel.remove_instrument(steps)
        writer.close()
    assert sink.ids == [f"req-{i:06d}" for i in range(4)]


async def test_close_flushes_a_partial_batch(mock_clock: trio.testing.MockClock) -> None:
    sink = Recorder()
    writer = writer_for(sink, batch_rows=4, flush_interval=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, "unused")
        writer.submit_nowait(make_row(0))
        writer.submit_nowait(make_row(1))
        await trio.testing.wait_all_tasks_blocked()  # the writer waits for rows 3 and 4
        assert sink.sizes == []
        writer.close()  # no clock movement needed: the end of intake ends the batch
    assert sink.sizes == [2]


async def test_interval_counts_from_the_first_row(mock_clock: trio.testing.MockClock) -> None:
    sink = Recorder()
    writer = writer_for(sink, batch_rows=100, flush_interval=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, "unused")
        writer.submit_nowait(make_row(0))
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.9)
        writer.submit_nowait(make_row(1))  # a late row does not push the deadline
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.2)
        await trio.testing.wait_all_tasks_blocked()
        assert sink.sizes == [2]
        writer.close()


async def test_close_drains_everything(autojump_clock: trio.testing.MockClock) -> None:
    sink = Recorder()
    writer = writer_for(sink, queue_size=50, batch_rows=8, flush_interval=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, "unused")
        for i in range(45):
            assert await writer.submit(make_row(i))
        writer.close()
        writer.close()  # idempotent
    assert len(sink.ids) == 45
    assert writer.statistics().written == 45
    assert writer.statistics().queued == 0
    assert not await writer.submit(make_row(99))  # after close: refused, counted, no raise
    assert not writer.submit_nowait(make_row(100))
    assert writer.statistics().dropped == 2


async def test_queue_bound_and_drops(autojump_clock: trio.testing.MockClock) -> None:
    writer = writer_for(queue_size=3, block_timeout=0.5)  # no writer running: nothing drains
    assert all(writer.submit_nowait(make_row(i)) for i in range(3))
    assert not writer.submit_nowait(make_row(3))
    assert not await writer.submit(make_row(4))  # waits block_timeout, then gives up
    stats = writer.statistics()
    assert (stats.queued, stats.queue_size, stats.dropped) == (3, 3, 2)


async def test_submit_waits_for_room(autojump_clock: trio.testing.MockClock) -> None:
    runner = Inline()
    runner.gate = trio.Event()
    sink = Recorder()
    writer = writer_for(sink, runner=runner, queue_size=2, batch_rows=1, block_timeout=60)
    results: list[bool] = []

    async def submit_late() -> None:
        results.append(await writer.submit(make_row(9)))

    async with trio.open_nursery() as nursery:
        runner.gate.set()
        await nursery.start(writer.run, "unused")
        runner.gate = trio.Event()  # hold the first write
        writer.submit_nowait(make_row(0))
        await trio.testing.wait_all_tasks_blocked()
        writer.submit_nowait(make_row(1))
        writer.submit_nowait(make_row(2))
        nursery.start_soon(submit_late)
        await trio.testing.wait_all_tasks_blocked()
        assert results == []  # blocked: the queue is full
        runner.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert results == [True]
        writer.close()
    assert sink.ids == ["req-000000", "req-000001", "req-000002", "req-000009"]
    assert writer.statistics().dropped == 0


async def test_waiting_submit_is_refused_on_close(autojump_clock: trio.testing.MockClock) -> None:
    writer = writer_for(queue_size=1, block_timeout=60)
    writer.submit_nowait(make_row(0))
    results: list[bool] = []

    async def submit() -> None:
        results.append(await writer.submit(make_row(1)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit)
        await trio.testing.wait_all_tasks_blocked()
        writer.close()
    assert results == [False]
    assert writer.statistics().dropped == 1


async def test_cancelled_submit_counts_the_drop(autojump_clock: trio.testing.MockClock) -> None:
    writer = writer_for(queue_size=1, block_timeout=60)
    writer.submit_nowait(make_row(0))
    with trio.move_on_after(1):
        await writer.submit(make_row(1))
    assert writer.statistics().dropped == 1


async def test_transient_failure_is_retried(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    failures = iter([apsw.BusyError("locked"), apsw.IOError("disk")])
    sink = Recorder(fail=lambda _rows: next(failures, None))
    writer = writer_for(sink, batch_rows=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, "unused")
        for i in range(5):
            writer.submit_nowait(make_row(i))
        writer.close()
    assert sink.calls == 3
    assert sink.sizes == [5]
    assert (writer.statistics().written, writer.statistics().dropped) == (5, 0)
    warnings = [r for r in caplog.records if r.name == "circuitd.store"]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING]


async def test_persistent_failure_drops_after_bounded_retries(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Recorder(fail=lambda _rows: apsw.FullError("database or disk is full"))
    writer = writer_for(sink, batch_rows=3, flush_interval=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, "unused")
        for i in range(5):
            writer.submit_nowait(make_row(i))
        writer.close()
    # first batch: every retry (3) plus one; while still failing the next gets one attempt
    assert sink.calls == 4 + 1
    stats = writer.statistics()
    assert (stats.written, stats.dropped, stats.batches) == (0, 5, 2)
    assert sink.closed
    assert any("dropped 3 row(s)" in r.getMessage() for r in caplog.records)


async def test_bad_row_costs_only_itself(tmp_path: Path) -> None:
    poison = msgspec.structs.replace(make_row(2), status="bogus")
    writer = WriteBehind(
        queue_size=10,
        batch_rows=10,
        flush_interval=60,
        block_timeout=0,
        run_sync=Inline(),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, tmp_path / "circuit.db")
        for row in (make_row(1), poison, make_row(3), make_row(1)):
            writer.submit_nowait(row)
        writer.close()
    stats = writer.statistics()
    assert (stats.written, stats.duplicates, stats.dropped) == (2, 1, 1)
    with Database.open(tmp_path / "circuit.db") as db:
        assert db.count_requests() == 2
        assert db.usage_summary(None, "2026-11-23", "2026-11-23")[0].requests == 2


async def test_cancelled_writer_writes_what_it_holds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = Recorder()
    writer = writer_for(sink, batch_rows=100, flush_interval=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, "unused")
        for i in range(7):
            writer.submit_nowait(make_row(i))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert len(sink.ids) == 7
    assert sink.closed
    assert not writer.submit_nowait(make_row(8))  # intake is closed after the writer ends


async def test_open_failure_reaches_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    writer = WriteBehind(queue_size=1, batch_rows=1, flush_interval=0, block_timeout=0)
    async with trio.open_nursery() as nursery:
        with pytest.raises(OSError):
            await nursery.start(writer.run, tmp_path / "file" / "circuit.db")


async def test_statistics_encode_for_health() -> None:
    writer = writer_for(queue_size=5)
    writer.submit_nowait(make_row(0))
    assert msgspec.json.decode(msgspec.json.encode(writer.statistics())) == {
        "queued": 1,
        "queue_size": 5,
        "written": 0,
        "duplicates": 0,
        "dropped": 0,
        "batches": 0,
        "last_batch_rows": 0,
    }


async def test_end_to_end_with_threads(tmp_path: Path) -> None:
    path = tmp_path / "data" / "circuit.db"
    writer = WriteBehind(queue_size=256, batch_rows=64, flush_interval=0.01, block_timeout=60)
    rows = [make_row(i % 900, timestamp=f"2026-11-{20 + i % 5}T12:00:00.000Z") for i in range(1000)]
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, path)
        for row in rows:
            assert await writer.submit(row)
        writer.close()
    stats = writer.statistics()
    assert (stats.written, stats.duplicates, stats.dropped, stats.queued) == (900, 100, 0, 0)
    with Database.open(path) as db:
        assert db.count_requests() == 900
        total = db.usage_summary(None, "2026-11-01", "2026-11-30")[0]
        assert total.requests == 900
        assert total.cost_micro_usd == sum(1_000 + i for i in range(900))
        assert db.integrity_check() == "ok"
