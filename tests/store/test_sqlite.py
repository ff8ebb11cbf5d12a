"""The SQLite store: migrations, batched inserts, dedup, roll-ups, queries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import apsw
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitd.store import sqlite
from circuitd.store.busy import BusyWait
from circuitd.store.rows import AttemptRow, RequestRow
from circuitd.store.schema import MIGRATIONS, SCHEMA_VERSION
from circuitd.store.sqlite import ROW_COLUMNS, Database, GroupBy, SchemaError, is_row_error
from tests.store.factory import make_row

Key = tuple[str, str, str, str]


def rollups(db: Database) -> dict[Key, tuple[int, int, int, int, int]]:
    cursor = db._conn.execute(
        "SELECT day, key_id, model, provider, requests, tokens_input, tokens_output,"
        " tokens_cached, cost_micro_usd FROM usage_daily"
    )
    return {(d, k, m, p): tuple(rest) for d, k, m, p, *rest in cursor}


def expected_rollups(rows: list[RequestRow]) -> dict[Key, tuple[int, int, int, int, int]]:
    """What usage_daily must hold: the first row per request id, summed per group."""
    first: dict[str, RequestRow] = {}
    for row in rows:
        first.setdefault(row.request_id, row)
    sums: dict[Key, list[int]] = {}
    for row in first.values():
        key = (row.timestamp[:10], row.key_id or "", row.model, row.provider or "")
        acc = sums.setdefault(key, [0, 0, 0, 0, 0])
        for i, value in enumerate(
            (1, row.tokens_input, row.tokens_output, row.tokens_cached, row.cost_micro_usd)
        ):
            acc[i] += value
    return {key: (a, b, c, d, e) for key, (a, b, c, d, e) in sums.items()}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with Database.open(tmp_path / "circuit.db") as database:
        yield database


def test_columns_cover_the_row() -> None:
    # attempt_log goes to its own table, provider_attempts.
    assert {*ROW_COLUMNS, "attempt_log"} == set(RequestRow.__struct_fields__)


def test_attempts_are_written_once_per_request(db: Database) -> None:
    attempts = tuple(
        AttemptRow(
            attempt=n,
            provider="openai",
            deployment=f"dep-{n}",
            status_code=status,
            error=error,
            latency_ms=1.5,
            started_at="2026-11-23T06:49:52.123Z",
        )
        for n, status, error in ((1, 503, "upstream answered 503"), (2, 200, None))
    )
    row = make_row(1, attempts=2, attempt_log=attempts)
    assert db.write_batch([row]) == 1
    assert db.write_batch([row]) == 0  # a duplicate request id adds no attempts either
    stored = db._conn.execute(
        "SELECT attempt, deployment, status_code, error FROM provider_attempts "
        "WHERE request_id = ? ORDER BY attempt",
        (row.request_id,),
    ).fetchall()
    assert stored == [(1, "dep-1", 503, "upstream answered 503"), (2, "dep-2", 200, None)]


def test_open_creates_parent_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "circuit.db"
    with Database.open(path) as db:
        assert db.schema_version == SCHEMA_VERSION
        conn = db._conn
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_schema")}
        assert {"requests", "provider_attempts", "usage_daily"} <= tables
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        assert db.integrity_check() == "ok"


def test_reopen_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "circuit.db"
    with Database.open(path) as db:
        db.write_batch([make_row(1), make_row(2)])
    with Database.open(path) as db:
        assert db.schema_version == SCHEMA_VERSION
        assert db.count_requests() == 2
        assert db.usage_summary(None, "2026-11-23", "2026-11-23")[0].requests == 2


def test_a_v1_database_with_rows_migrates_to_the_current_schema(tmp_path: Path) -> None:
    """The foundation shipped v1: a ledger it wrote keeps its rows and roll-ups."""
    path = tmp_path / "circuit.db"
    row = make_row(1)
    conn = apsw.Connection(str(path))
    with conn:  # a v1 file with one settled call, as the foundation wrote it
        conn.execute(MIGRATIONS[0])
        conn.execute("PRAGMA user_version = 1")
        conn.execute(sqlite._insert_rows(1), sqlite._row_values(row))
        conn.execute(sqlite._ROLLUP, (0,))
    conn.close()
    with Database.open(path) as db:
        assert db.schema_version == SCHEMA_VERSION == len(MIGRATIONS) > 1
        assert db.get_request(row.request_id) == row
        assert db.usage_summary(None, "2026-11-23", "2026-11-23")[0].requests == 1
        tables = {name for (name,) in db._conn.execute("SELECT name FROM sqlite_schema")}
        assert {"budget_slots", "budget_leases", "budget_holders"} <= tables
        assert db.integrity_check() == "ok"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "circuit.db"
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaError):
        Database.open(path)


def test_write_and_read_back(db: Database) -> None:
    rows = [make_row(1), make_row(2, key_id=None, provider=None, deployment=None)]
    assert db.write_batch(rows) == 2
    assert db.get_request("req-000001") == rows[0]
    assert db.get_request("req-000002") == rows[1]
    assert db.get_request("nope") is None
    assert db.count_requests() == 2
    assert db.write_batch([]) == 0
    # cost_usd is what people query by hand
    listed = db._conn.execute(
        "SELECT request_id, status_code, tokens_input, tokens_output, cost_usd"
        " FROM requests ORDER BY timestamp DESC, request_id"
    ).fetchall()
    assert listed == [
        ("req-000001", 200, 101, 21, 0.001001),
        ("req-000002", 200, 102, 22, 0.001002),
    ]


def test_duplicates_are_skipped_and_not_counted_twice(db: Database) -> None:
    assert db.write_batch([make_row(1), make_row(2), make_row(1, tokens_input=999)]) == 2
    assert db.write_batch([make_row(2), make_row(3)]) == 1
    assert db.write_batch([make_row(3)]) == 0
    assert db.count_requests() == 3
    assert db.get_request("req-000001") == make_row(1)  # the first write wins
    (total,) = db.usage_summary(None, "2026-11-23", "2026-11-23")
    assert (total.requests, total.tokens_input) == (3, 101 + 102 + 103)


def test_rollups_per_day_key_model_provider(db: Database) -> None:
    rows = [
        make_row(1),
        make_row(2, timestamp="2026-11-23T23:59:59.999Z"),
        make_row(3, timestamp="2026-11-24T00:00:00.000Z"),
        make_row(4, key_id="key-b"),
        make_row(5, key_id=None),
        make_row(6, model="claude"),
        make_row(7, provider=None, status="refused", status_code=401),
    ]
    db.write_batch(rows[:4])
    db.write_batch(rows[4:])
    assert rollups(db) == expected_rollups(rows)
    assert ("2026-11-23", "", "gpt-4o-mini", "openai") in rollups(db)
    assert ("2026-11-23", "key-a", "gpt-4o-mini", "") in rollups(db)


row_ids = st.integers(min_value=0, max_value=30)
days = st.sampled_from(["2026-11-22T23:59:59.999Z", "2026-11-23T00:00:00.000Z"])
any_row = st.builds(
    lambda i, ts, key, model, provider: make_row(
        i, timestamp=ts, key_id=key, model=model, provider=provider
    ),
    row_ids,
    days,
    st.sampled_from([None, "", "a", "b"]),
    st.sampled_from(["m1", "m2"]),
    st.sampled_from([None, "p1"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(any_row, max_size=12), max_size=6))
def test_rollups_match_distinct_rows(batches: list[list[RequestRow]]) -> None:
    with Database.open(":memory:") as db:
        inserted = [db.write_batch(batch) for batch in batches]
        everything = [row for batch in batches for row in batch]
        assert sum(inserted) == db.count_requests() == len({r.request_id for r in everything})
        assert rollups(db) == expected_rollups(everything)


@pytest.mark.parametrize("size", [1, 3, 4, 5, 15, 16, 17, 63, 64, 65, 85, 150, 300])
def test_a_batch_of_any_size_is_written_whole_in_its_multi_row_statements(
    tmp_path: Path, size: int
) -> None:
    # (written in chunks of 64, 16, 4 and 1 rows: each size here crosses a different mix)
    def attempts(i: int) -> tuple[AttemptRow, ...]:
        return tuple(
            AttemptRow(
                attempt=n,
                provider="openai",
                deployment="openai-main",
                status_code=200,
                error=None,
                latency_ms=float(i),
                started_at="2026-11-23T06:49:52.123Z",
            )
            for n in range(1, 1 + i % 3)
        )

    rows = [make_row(i, attempts=i % 3, attempt_log=attempts(i)) for i in range(size)]
    again = msgspec.structs.replace(rows[0], tokens_input=999)  # a duplicate, chunks later
    with Database.open(tmp_path / "circuit.db") as db:
        assert db.write_batch([*rows, again]) == size
        assert db.count_requests() == size
        read_back = [db.get_request(row.request_id) for row in rows]
        assert read_back == [msgspec.structs.replace(row, attempt_log=()) for row in rows]
        assert rollups(db) == expected_rollups(rows)
        stored = db._conn.execute(
            "SELECT request_id, attempt, latency_ms FROM provider_attempts ORDER BY 1, 2"
        ).fetchall()
        assert stored == [
            (row.request_id, a.attempt, a.latency_ms) for row in rows for a in row.attempt_log
        ]
        costs = db._conn.execute("SELECT cost_micro_usd, cost_usd FROM requests").fetchall()
        assert all(usd == micro / 1e6 for micro, usd in costs)


def test_failed_batch_writes_nothing(db: Database) -> None:
    db.write_batch([make_row(1)])
    before = rollups(db)
    poison = msgspec.structs.replace(make_row(3), status="bogus")
    with pytest.raises(apsw.ConstraintError) as raised:
        db.write_batch([make_row(2), poison])
    assert is_row_error(raised.value)
    assert db.count_requests() == 1
    assert rollups(db) == before
    assert db.write_batch([make_row(2)]) == 1  # the connection is usable afterwards


def test_unparseable_timestamp_fails_the_batch(db: Database) -> None:
    with pytest.raises(apsw.ConstraintError):
        db.write_batch([make_row(1, timestamp="yesterday")])
    assert db.count_requests() == 0


def test_usage_summary_and_spend(db: Database) -> None:
    db.write_batch(
        [
            make_row(1, timestamp="2026-11-01T10:00:00.000Z", cost_micro_usd=10),
            make_row(2, timestamp="2026-11-02T10:00:00.000Z", cost_micro_usd=20),
            make_row(3, timestamp="2026-11-02T11:00:00.000Z", cost_micro_usd=40, model="m2"),
            make_row(4, timestamp="2026-11-03T10:00:00.000Z", cost_micro_usd=80, key_id="b"),
            make_row(5, timestamp="2026-11-03T10:00:00.000Z", cost_micro_usd=160, provider=None),
            make_row(6, timestamp="2026-11-03T12:00:00.000Z", cost_micro_usd=320, key_id=None),
        ]
    )

    def costs(key: str | None, group_by: GroupBy | None) -> list[tuple[str | None, int, int]]:
        totals = db.usage_summary(key, "2026-11-02", "2026-11-03", group_by)
        return [(t.group, t.requests, t.cost_micro_usd) for t in totals]

    assert costs(None, None) == [(None, 5, 620)]
    assert costs("key-a", None) == [(None, 3, 220)]
    assert costs("", None) == [(None, 1, 320)]
    assert costs("nobody", None) == [(None, 0, 0)]
    assert costs("key-a", "day") == [("2026-11-02", 2, 60), ("2026-11-03", 1, 160)]
    assert costs(None, "model") == [("gpt-4o-mini", 4, 580), ("m2", 1, 40)]
    assert costs(None, "provider") == [(None, 1, 160), ("openai", 4, 460)]
    assert db.spend_micro_usd("key-a", "2026-11-01", "2026-11-30") == 230
    assert db.spend_micro_usd(None, "2026-11-01", "2026-11-01") == 10
    assert db.spend_micro_usd("key-a", "2026-12-01", "2026-12-31") == 0


def test_usage_summary_reads_rollups_not_rows(db: Database) -> None:
    db.write_batch([make_row(1), make_row(2)])
    db._conn.execute("DELETE FROM requests")  # usage survives row retention
    assert db.usage_summary(None, "2026-11-23", "2026-11-23")[0].requests == 2
    assert db.count_requests() == 0


class _BusyThenWal:
    """A connection whose journal-mode switch is refused `busy` times (apsw.BusyError)."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.calls = 0

    def execute(self, sql: str) -> _BusyThenWal:
        assert sql == "PRAGMA journal_mode = WAL"
        self.calls += 1
        if self.calls <= self.busy:
            raise apsw.BusyError("database is locked")
        return self

    def fetchall(self) -> list[tuple[str]]:
        return [("wal",)]


def test_switching_to_wal_is_retried_while_another_process_holds_the_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two workers opening a new file at once: SQLite refuses one without its busy handler.
    monkeypatch.setattr(sqlite, "_WAL_RETRY_DELAYS", (0.0, 0.0, 0.0))
    conn = _BusyThenWal(busy=3)
    sqlite._enable_wal(conn)
    assert conn.calls == 4
    with pytest.raises(apsw.BusyError):  # bounded: then the error stands
        sqlite._enable_wal(_BusyThenWal(busy=4))


def test_busy_wait_polls_until_its_deadline_and_starts_afresh_each_wait() -> None:
    clock = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    wait = BusyWait(timeout_s=0.0035, poll_s=0.001, clock=lambda: clock[0], sleep=sleep)
    tries = next(t for t in range(100) if not wait(t))  # bounded, even if the handler is not
    # every poll_s, the last one cut to the deadline; then SQLite's BUSY stands
    assert slept == pytest.approx([0.001, 0.001, 0.001, 0.0005])
    assert tries == 4
    slept.clear()
    assert wait(0)  # a new wait (tries 0) has a deadline of its own
    assert slept == [0.001]


def test_a_writer_waits_for_another_connections_lock_then_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried = threading.Event()

    class Noticing(BusyWait):
        def __call__(self, tries: int) -> bool:
            tried.set()  # the waiter found the lock taken and is waiting
            return super().__call__(tries)

    monkeypatch.setattr(sqlite, "BusyWait", Noticing)  # what `open` installs
    path = tmp_path / "ledger.db"
    holder, waiter = Database.open(path), Database.open(path)
    results: list[int] = []
    holder._conn.execute("BEGIN IMMEDIATE")
    thread = threading.Thread(target=lambda: results.append(waiter.write_batch([make_row(1)])))
    thread.start()
    assert tried.wait(timeout=30)
    holder._conn.execute("COMMIT")  # released while the waiter polls
    thread.join(timeout=30)
    assert results == [1]
    assert holder.count_requests() == 1
    holder.close()
    waiter.close()


def test_a_lock_held_past_the_busy_timeout_fails_the_write_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    holder, waiter = Database.open(path), Database.open(path)
    waiter._conn.setbusyhandler(BusyWait(timeout_s=0.01))
    holder._conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(apsw.BusyError):
        waiter.write_batch([make_row(1)])
    holder._conn.execute("COMMIT")
    assert waiter.write_batch([make_row(1)]) == 1  # nothing left half-done
    holder.close()
    waiter.close()
