"""The SQLite shell of the lease protocol (`core.lease`): budgets shared by worker processes.

Tables (schema v2): `budget_slots` holds the spend the workers have reported per slot;
`budget_leases` holds each worker's live lease per slot. Every exchange batch is one
`BEGIN IMMEDIATE` transaction (the write lock is taken up front, so two workers never compute
from the same `spent` and `leased`), running `core.lease.exchange` per report.

Synchronous on purpose, like `Database`: the gateway calls it from a worker thread, one call at
a time.

Workers that are gone: each worker registers in `budget_holders` (a random id per worker run,
the host's boot id and the pid), and a lease names its holder. At a worker's start `join`
forgets holders from another boot or whose pid is no longer alive and frees their leases; and
any exchange treats a lease not renewed for `ttl_s` + `grace_s` as free (a pid reused by an
unrelated process only delays that far). A clean stop `leave`s.

Spend and the roll-ups: a worker's settled spend reaches `budget_slots` at its next exchange
and `usage_daily` through the write-behind writer. Across restarts and across a change between
one worker (which keeps its ledger in memory and never writes `budget_slots`) and several, both
sides take the larger of the two: the first worker of a daemon to `join` (no other holder
alive) raises `budget_slots` to the roll-ups, and a single worker seeds from the larger one
(`current_spend`). Neither ever undercounts written rows, nor counts one twice.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple, Self

from circuitd.core.budget import Alert, Period, Slot, crossed_percents, period_id
from circuitd.core.lease import Exchange, LeasePolicy, LeaseReport, exchange
from circuitd.store.sqlite import Database

_BOOT_ID_PATH: Final = Path("/proc/sys/kernel/random/boot_id")

_SLOT: Final = "subject = ?1 AND period = ?2 AND period_id = ?3"
_EXPIRED: Final = f"DELETE FROM budget_leases WHERE {_SLOT} AND expires_at < ?4"
_SPENT: Final = f"SELECT spent_micro_usd FROM budget_slots WHERE {_SLOT}"
_LEASED: Final = (
    "SELECT coalesce(sum(held_micro_usd), 0), "
    "coalesce(sum(CASE WHEN holder = ?4 THEN held_micro_usd END), 0) "
    f"FROM budget_leases WHERE {_SLOT}"
)
_SET_SPENT: Final = (
    "INSERT INTO budget_slots (subject, period, period_id, spent_micro_usd) "
    "VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT (subject, period, period_id) DO UPDATE SET "
    "spent_micro_usd = excluded.spent_micro_usd"
)
_SET_LEASE: Final = (
    "INSERT INTO budget_leases (subject, period, period_id, holder, boot_id, pid, "
    "held_micro_usd, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
    "ON CONFLICT (subject, period, period_id, holder) DO UPDATE SET "
    "held_micro_usd = excluded.held_micro_usd, expires_at = excluded.expires_at"
)
_DROP_LEASE: Final = f"DELETE FROM budget_leases WHERE {_SLOT} AND holder = ?4"
# `WHERE true`: SQLite's documented way to keep an upsert's SELECT unambiguous.
_RECONCILE: Final = """
INSERT INTO budget_slots AS s (subject, period, period_id, spent_micro_usd)
SELECT key_id, ?1, ?2, sum(cost_micro_usd) FROM usage_daily
WHERE true AND key_id != '' AND day BETWEEN ?3 AND ?4 GROUP BY key_id
ON CONFLICT (subject, period, period_id) DO UPDATE SET
    spent_micro_usd = max(s.spent_micro_usd, excluded.spent_micro_usd)
"""


def boot_id() -> str:
    """The host's boot id ('' where the system does not tell)."""
    try:
        return _BOOT_ID_PATH.read_text().strip()
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lease: one worker process for one run."""

    id: str
    boot_id: str
    pid: int

    @classmethod
    def this_process(cls) -> Self:
        return cls(uuid.uuid4().hex, boot_id(), os.getpid())


class ExchangeResult(NamedTuple):
    exchange: Exchange
    alerts: tuple[Alert, ...]  # thresholds this report's spend crossed, store-wide


def _key(report: LeaseReport) -> tuple[str, str, str]:
    slot = report.slot
    return slot.subject, str(slot.period), slot.period_id


class LeaseStore:
    """One apsw connection for one worker's exchanges. Not thread-safe: one call at a time."""

    def __init__(
        self,
        db: Database,
        holder: Holder,
        policy: LeasePolicy,
        alert_percents: Sequence[int] = (),
    ) -> None:
        self._db = db
        self.holder = holder
        self.policy = policy
        self._alert_percents = tuple(alert_percents)

    @classmethod
    def open(
        cls,
        path: str | Path,
        holder: Holder,
        policy: LeasePolicy,
        alert_percents: Sequence[int] = (),
    ) -> Self:
        return cls(Database.open(path), holder, policy, alert_percents)

    def close(self) -> None:
        self._db.close()

    def exchange(self, reports: Sequence[LeaseReport], now: float) -> list[ExchangeResult]:
        """Runs every report in one transaction (all or none); `now` is epoch seconds."""
        with self._db.transaction() as conn:
            return [self._exchange_one(conn, report, now) for report in reports]

    def _exchange_one(self, conn: Any, report: LeaseReport, now: float) -> ExchangeResult:
        key = _key(report)
        holder = self.holder
        conn.execute(_EXPIRED, (*key, now - self.policy.grace_s))
        found = conn.execute(_SPENT, key).fetchone()
        spent = int(found[0]) if found else 0
        leased, held = conn.execute(_LEASED, (*key, holder.id)).fetchone()
        result = exchange(report.limit, spent, int(leased), int(held), report)
        if result.spent != spent or found is None:
            conn.execute(_SET_SPENT, (*key, result.spent))
        if result.held > 0:  # every exchange renews the lease
            expires = now + self.policy.ttl_s
            conn.execute(
                _SET_LEASE, (*key, holder.id, holder.boot_id, holder.pid, result.held, expires)
            )
        elif held:
            conn.execute(_DROP_LEASE, (*key, holder.id))
        alerts: tuple[Alert, ...] = ()
        if report.limit is not None:
            alerts = tuple(
                Alert(report.slot, percent, report.limit, result.spent, now)
                for percent in crossed_percents(
                    report.limit, spent, result.spent, self._alert_percents
                )
            )
        return ExchangeResult(result, alerts)

    def spent(self, slots: Sequence[Slot]) -> dict[Slot, int]:
        """The reported spend of each of `slots` (one read transaction)."""
        with self._db.transaction() as conn:
            found = {}
            for slot in slots:
                row = conn.execute(_SPENT, (slot.subject, str(slot.period), slot.period_id))
                value = row.fetchone()
                if value is not None:
                    found[slot] = int(value[0])
            return found

    def join(self, now: float, alive: Callable[[int], bool] = pid_alive) -> tuple[int, bool]:
        """At a worker's start, in one transaction: forgets the holders that are gone (another
        boot, or a pid not alive) and frees their leases and any expired past the grace;
        reconciles with the roll-ups if no other holder is alive (see the module docstring);
        registers this holder. Returns (leases freed, whether it reconciled)."""
        me = self.holder
        with self._db.transaction() as conn:
            others = conn.execute(
                "SELECT holder, boot_id, pid FROM budget_holders WHERE holder != ?1 UNION "
                "SELECT DISTINCT holder, boot_id, pid FROM budget_leases WHERE holder != ?1",
                (me.id,),
            ).fetchall()
            gone = [
                (holder,)
                for holder, boot, pid in others
                if (boot and me.boot_id and boot != me.boot_id) or not alive(pid)
            ]
            before = conn.total_changes()
            conn.executemany("DELETE FROM budget_leases WHERE holder = ?", gone)
            conn.execute(
                "DELETE FROM budget_leases WHERE expires_at < ?", (now - self.policy.grace_s,)
            )
            freed = int(conn.total_changes() - before)
            conn.executemany("DELETE FROM budget_holders WHERE holder = ?", gone)
            alone = len(others) == len(gone)
            if alone:
                _reconcile(conn, now)
            conn.execute(
                "INSERT OR REPLACE INTO budget_holders VALUES (?, ?, ?, ?)",
                (me.id, me.boot_id, me.pid, now),
            )
            return freed, alone

    def leave(self) -> None:
        """At a clean stop (after the last sync): unregisters this holder and frees whatever
        lease it still holds."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM budget_leases WHERE holder = ?", (self.holder.id,))
            conn.execute("DELETE FROM budget_holders WHERE holder = ?", (self.holder.id,))


def _reconcile(conn: Any, now: float) -> None:
    """Raises the current periods' reported spend to the roll-ups where those hold more (rows
    of a single worker, or of a worker that died before reporting them). Only while no other
    worker lives: a live one's rows may be written before their spend is reported, and the
    report would then count them twice."""
    today = period_id(Period.DAY, now)
    month = period_id(Period.MONTH, now)
    conn.execute(_RECONCILE, (str(Period.DAY), today, today, today))
    conn.execute(_RECONCILE, (str(Period.MONTH), month, f"{month}-01", f"{month}-31"))


def current_spend(db: Database, now: float) -> list[tuple[str, int, int]]:
    """(key_id, today's spend, this month's spend) per key: the larger of the roll-ups and the
    spend the workers reported to `budget_slots` (see the module docstring)."""
    today = period_id(Period.DAY, now)
    month = period_id(Period.MONTH, now)
    spend: dict[str, list[int]] = {}
    for key_id, day_spend, month_spend in db.spend_by_key(f"{month}-01", today):
        if key_id:  # '' is calls without a key (refused ones)
            spend[key_id] = [day_spend, month_spend]
    reported = db.query(
        "SELECT subject, period, spent_micro_usd FROM budget_slots "
        "WHERE (period = 'day' AND period_id = ?1) OR (period = 'month' AND period_id = ?2)",
        (today, month),
    )
    for subject, period, spent in reported:
        both = spend.setdefault(subject, [0, 0])
        i = 0 if period == Period.DAY else 1
        both[i] = max(both[i], int(spent))
    return [(key_id, day, month_) for key_id, (day, month_) in sorted(spend.items())]
