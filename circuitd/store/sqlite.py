"""The SQLite store (apsw): open + migrate, batched row writes with daily roll-ups, queries.

Synchronous on purpose: the write-behind writer calls it from a worker thread, one call at a
time (an apsw connection may move between threads but must not be used by two at once).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import operator
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Literal, Self

import apsw
import msgspec

from circuitd.store.busy import BusyWait
from circuitd.store.rows import RequestRow
from circuitd.store.schema import MIGRATIONS, SCHEMA_VERSION

GroupBy = Literal["model", "provider", "day"]

_WAL_RETRY_DELAYS: Final = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.0, 2.0)

# RequestRow's fields in the order they are bound; cost_usd is derived in SQL.
ROW_COLUMNS: Final = (
    "request_id",
    "client_request_id",
    "timestamp",
    "key_id",
    "model",
    "provider",
    "deployment",
    "upstream_model",
    "stream",
    "status",
    "status_code",
    "error_code",
    "latency_ms",
    "ttft_ms",
    "tokens_input",
    "tokens_output",
    "tokens_cached",
    "usage_source",
    "cost_micro_usd",
    "attempts",
)
# One C-level call per row builds the binding tuple (no per-row dict).
_row_values: Final = operator.attrgetter(*ROW_COLUMNS)

ATTEMPT_COLUMNS: Final = (
    "attempt",
    "provider",
    "deployment",
    "status_code",
    "error",
    "latency_ms",
    "started_at",
)
_attempt_values: Final = operator.attrgetter(*ATTEMPT_COLUMNS)
# A batch goes in as a few multi-row statements, chunks of these sizes (largest first): a
# handful of distinct statements, each prepared once and kept in apsw's statement cache.
_CHUNKS: Final = (64, 16, 4, 1)


@functools.cache
def _insert_rows(n: int) -> str:
    """`n` rows into `requests` (numbered parameters, `len(ROW_COLUMNS)` a row: each row's
    `cost_usd` is its own `cost_micro_usd` / 1e6); a request id already stored is skipped."""
    width = len(ROW_COLUMNS)
    cost = ROW_COLUMNS.index("cost_micro_usd") + 1
    values = ", ".join(
        "("
        + ", ".join(f"?{k * width + i}" for i in range(1, width + 1))
        + f", ?{k * width + cost} / 1e6)"
        for k in range(n)
    )
    return (
        f"INSERT INTO requests ({', '.join(ROW_COLUMNS)}, cost_usd) VALUES {values} "
        "ON CONFLICT (request_id) DO NOTHING"
    )


@functools.cache
def _insert_attempts(n: int) -> str:
    """`n` rows into `provider_attempts` (request id, then `ATTEMPT_COLUMNS`)."""
    row = "(" + ", ".join("?" * (len(ATTEMPT_COLUMNS) + 1)) + ")"
    return (
        f"INSERT OR IGNORE INTO provider_attempts (request_id, {', '.join(ATTEMPT_COLUMNS)}) "
        f"VALUES {', '.join([row] * n)}"
    )


def _insert_all(
    conn: Any, statement: Callable[[int], str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """`rows` in chunks of `_CHUNKS` rows, one statement each: where executemany ran its
    statement once a row, a batch of 125 rows is 8 statements (bench/RESULTS.md)."""
    start = 0
    for size in _CHUNKS:
        while len(rows) - start >= size:
            chunk = rows[start : start + size]
            conn.execute(statement(size), tuple(itertools.chain.from_iterable(chunk)))
            start += size


# Rows get increasing rowids and the batch holds the write lock, so `id > ?` selects exactly
# the rows this batch inserted: duplicates (DO NOTHING) are never counted twice. A timestamp
# date() cannot parse yields a NULL day and fails the batch rather than vanish from usage.
_ROLLUP: Final = """
INSERT INTO usage_daily AS u (day, key_id, model, provider,
    requests, tokens_input, tokens_output, tokens_cached, cost_micro_usd)
SELECT date(timestamp), coalesce(key_id, ''), model, coalesce(provider, ''),
    count(*), sum(tokens_input), sum(tokens_output), sum(tokens_cached), sum(cost_micro_usd)
FROM requests WHERE id > ?1
GROUP BY 1, 2, 3, 4
ON CONFLICT (day, key_id, model, provider) DO UPDATE SET
    requests = u.requests + excluded.requests,
    tokens_input = u.tokens_input + excluded.tokens_input,
    tokens_output = u.tokens_output + excluded.tokens_output,
    tokens_cached = u.tokens_cached + excluded.tokens_cached,
    cost_micro_usd = u.cost_micro_usd + excluded.cost_micro_usd
"""

_SELECT_ROW: Final = f"SELECT {', '.join(ROW_COLUMNS)} FROM requests WHERE request_id = ?"

_SUMS: Final = (
    "coalesce(sum(requests), 0), coalesce(sum(tokens_input), 0), "
    "coalesce(sum(tokens_output), 0), coalesce(sum(tokens_cached), 0), "
    "coalesce(sum(cost_micro_usd), 0)"
)
# Prebuilt per (group_by, filtered by key) so the statement cache sees a handful of strings.
_GROUP_EXPR: Final[dict[GroupBy | None, str]] = {
    None: "NULL",
    "model": "model",
    "provider": "NULLIF(provider, '')",
    "day": "day",
}
_USAGE_SQL: Final = {
    (group_by, by_key): (
        f"SELECT {expr}, {_SUMS} FROM usage_daily WHERE day BETWEEN ?1 AND ?2"
        + (" AND key_id = ?3" if by_key else "")
        + (" GROUP BY 1 ORDER BY 1" if group_by else "")
    )
    for group_by, expr in _GROUP_EXPR.items()
    for by_key in (False, True)
}


def is_row_error(exc: BaseException) -> bool:
    """True when an error is about the data (a constraint, a value that cannot be bound), so
    retrying the same rows cannot help but writing the others can."""
    return isinstance(
        exc,
        (
            apsw.ConstraintError,
            apsw.MismatchError,
            apsw.TooBigError,
            TypeError,
            ValueError,
            OverflowError,
        ),
    )


class SchemaError(RuntimeError):
    """The database was written by a newer circuitd (its schema version is ahead of ours)."""


class UsageTotal(msgspec.Struct, frozen=True, kw_only=True):
    # the day, model or provider grouped on; None without group_by or for "no provider"
    group: str | None
    requests: int
    tokens_input: int
    tokens_output: int
    tokens_cached: int
    cost_micro_usd: int


@contextlib.contextmanager
def _immediate(conn: Any) -> Iterator[None]:
    # BEGIN IMMEDIATE takes the write lock up front (waiting under `BusyWait`): a deferred
    # read-then-write transaction can fail with SQLITE_BUSY_SNAPSHOT, which the busy handler
    # never retries, when another process writes in between.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _enable_wal(conn: Any) -> None:
    # Several worker processes open a new file at once: switching it to WAL needs the
    # exclusive lock, and SQLite answers BUSY at once, without the busy handler, where waiting
    # could deadlock. The switch is quick and happens once per file, so retry a bounded time.
    for delay in (*_WAL_RETRY_DELAYS, None):
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
            return
        except apsw.BusyError:
            if delay is None:
                raise
            time.sleep(delay)  # a worker thread: this never blocks the event loop


def _user_version(conn: Any) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _migrate(conn: Any) -> None:
    if _user_version(conn) == SCHEMA_VERSION:
        return  # the usual case: no write lock taken on open
    while True:
        with _immediate(conn):
            # re-read under the lock: another worker process may have migrated meanwhile
            version = _user_version(conn)
            if version > SCHEMA_VERSION:
                raise SchemaError(
                    f"database schema version {version} is newer than this circuitd "
                    f"supports ({SCHEMA_VERSION})"
                )
            if version == SCHEMA_VERSION:
                return
            conn.execute(MIGRATIONS[version])
            conn.execute(f"PRAGMA user_version = {version + 1}")


class Database:
    """One apsw connection. Not thread-safe: use it from one thread at a time."""

    def __init__(self, conn: Any, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> Self:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = apsw.Connection(str(path))
        try:
            conn.setbusyhandler(BusyWait())
            # WAL: readers (usage queries, `sqlite3` by hand) never block the writer.
            # NORMAL: a commit survives a process crash; only power loss may lose the last few.
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        # cheap, keeps planner statistics useful; never a reason not to close
        with contextlib.suppress(apsw.Error):
            self._conn.execute("PRAGMA optimize")
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """The connection inside one `BEGIN IMMEDIATE` transaction: committed on exit, rolled
        back on error."""
        with _immediate(self._conn):
            yield self._conn

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        return list(self._conn.execute(sql, params))

    @property
    def schema_version(self) -> int:
        return _user_version(self._conn)

    def write_batch(self, rows: Sequence[RequestRow]) -> int:
        """Insert `rows` and roll them into usage_daily in one transaction.

        A request id already stored is skipped (and not counted again). Returns how many rows
        were inserted. On error nothing of the batch is written.
        """
        if not rows:
            return 0
        conn = self._conn
        with _immediate(conn):
            (last_id,) = conn.execute("SELECT coalesce(max(id), 0) FROM requests").fetchone()
            before = conn.total_changes()
            _insert_all(conn, _insert_rows, [_row_values(row) for row in rows])
            inserted: int = conn.total_changes() - before
            if inserted:
                conn.execute(_ROLLUP, (last_id,))
                # A duplicate request id repeats its attempt numbers: OR IGNORE skips them.
                attempts = [
                    (row.request_id, *_attempt_values(a)) for row in rows for a in row.attempt_log
                ]
                _insert_all(conn, _insert_attempts, attempts)
        return inserted

    def count_requests(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM requests").fetchone()[0])

    def get_request(self, request_id: str) -> RequestRow | None:
        found = self._conn.execute(_SELECT_ROW, (request_id,)).fetchone()
        if found is None:
            return None
        values = dict(zip(ROW_COLUMNS, found, strict=True))
        values["stream"] = bool(values["stream"])
        return RequestRow(**values)

    def usage_summary(
        self,
        key_id: str | None,
        start_day: str,
        end_day: str,
        group_by: GroupBy | None = None,
    ) -> list[UsageTotal]:
        """Totals from usage_daily over [start_day, end_day] ('YYYY-MM-DD', UTC, inclusive).

        key_id None: all keys; "" selects calls made without a key. Without group_by the
        result is one total row (zeros when nothing matched).
        """
        params: tuple[str, ...] = (start_day, end_day)
        if key_id is not None:
            params = (*params, key_id)
        sql = _USAGE_SQL[group_by, key_id is not None]
        return [
            UsageTotal(
                group=group,
                requests=requests,
                tokens_input=tokens_in,
                tokens_output=tokens_out,
                tokens_cached=tokens_cached,
                cost_micro_usd=cost,
            )
            for group, requests, tokens_in, tokens_out, tokens_cached, cost in self._conn.execute(
                sql, params
            )
        ]

    def spend_micro_usd(self, key_id: str | None, start_day: str, end_day: str) -> int:
        """Spend over [start_day, end_day] inclusive; key_id None sums every key."""
        return self.usage_summary(key_id, start_day, end_day)[0].cost_micro_usd

    def spend_by_key(self, month_start: str, today: str) -> list[tuple[str, int, int]]:
        """(key_id, today's spend, spend from `month_start` to `today`) per key, from the
        roll-ups: what the budget ledger is seeded with at start."""
        rows = self._conn.execute(
            "SELECT key_id, sum(CASE WHEN day = ?2 THEN cost_micro_usd ELSE 0 END), "
            "sum(cost_micro_usd) FROM usage_daily WHERE day BETWEEN ?1 AND ?2 GROUP BY key_id",
            (month_start, today),
        )
        return [(key_id, int(day), int(month)) for key_id, day, month in rows]

    def integrity_check(self) -> str:
        """'ok' when SQLite finds nothing wrong, else its findings one per line."""
        return "\n".join(str(line) for (line,) in self._conn.execute("PRAGMA integrity_check"))
