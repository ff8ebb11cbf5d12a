"""Budgets shared by several processes: leases from a shared store (sans-I/O).

A shared store (SQLite with `BEGIN IMMEDIATE`, or Redis)
holds per slot the settled `spent` and, per holder process, a `held` lease. Each process may
commit budget only out of its own lease: it admits a call iff, locally, unreported + reserved
+ amount <= lease, where *unreported* is spend settled here but not yet reported to the store.
When the lease is short, `reserve_or_lease` returns `LeaseNeeded`; the shell runs one
transaction per report computing `exchange(...)` (report used spend: spent += used, lease -=
used; return unused lease; then `grant`: at most limit - spent - Σ leases, and nothing unless
at least the call's shortfall is free, so budget is not stranded), then calls `apply` and
`reserve` (which never leases, so that a second shortfall refuses). Chunks: `lease_request`
asks for max(shortfall, min(limit, max(amount, ceil(limit / divisor)))), divisor 64. Every
exchange renews the lease for `ttl_s`; a process draws from it only before it expires, and the
store counts an expired lease as free only `grace_s` later (>= the longest call), so a crashed
process's lease comes back. Unused lease is returned when idle `idle_s`, for past periods, and
at shutdown (`sync(now, closing=True)`).
Bound: `grant` keeps spent + Σ held <= limit, and each process keeps unreported + reserved <=
held, so spent + Σ (unreported + reserved) — every admitted worst case, everywhere — stays <=
limit: strict mode holds across processes with the same E as in `core.budget`, never N times
anything. The price is that a call may be refused while up to N chunks sit unused in other
processes' leases (for at most `idle_s`).

Alerts: a process sees only its share of a slot, so `LeasedBudget` raises none; the store's
transaction does, with `crossed_percents` over its `spent` before and after the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from circuitd.core.budget import (
    BudgetError,
    BudgetLedger,
    BudgetLimits,
    BudgetPolicy,
    Refusal,
    Reservation,
    Slot,
    _Entry,
    shortfall,
)

__all__ = [
    "Exchange", "LeaseNeeded", "LeasePolicy", "LeaseReport", "LeasedBudget", "exchange", "grant",
    "lease_request",
]  # fmt: skip


class LeasePolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    divisor: int = 64  # a lease chunk is limit / divisor (at least the call's worst case)
    ttl_s: float = 300.0  # an exchange renews the lease for this long
    renew_s: float = 100.0  # `sync` renews a lease that expires sooner than this
    idle_s: float = 60.0  # `sync` returns the unused lease of a slot idle this long
    grace_s: float = 900.0  # store side: an expired lease is free only this much later

    def __post_init__(self) -> None:
        if self.divisor < 1 or not 0 < self.renew_s < self.ttl_s or self.idle_s < 0:
            raise ValueError("need divisor >= 1, 0 < renew_s < ttl_s and idle_s >= 0")


class LeaseReport(msgspec.Struct, frozen=True):
    """One exchange with the store for one slot, as the shell's transaction will run it."""

    slot: Slot
    limit: int | None  # None: an unlimited slot only reports its spend
    used: int  # settled spend to move from this process's lease to the store's `spent`
    returned: int  # unused lease to give back
    request: int  # lease wanted (0: only report, return, renew)
    minimum: int  # grant nothing unless at least this much is free (the call's shortfall)


class LeaseNeeded(msgspec.Struct, frozen=True):
    reports: tuple[LeaseReport, ...]  # run each, then `apply` it (or `abandon` on failure)
    pending: tuple[Slot, ...]  # exchanges already in flight: wait for them, then retry


class Exchange(msgspec.Struct, frozen=True):
    spent: int
    leased: int
    held: int
    granted: int


def grant(
    global_limit: int, global_spent: int, global_leased: int, request: int, minimum: int = 0
) -> int:
    """Lease to grant: at most what is free (limit - spent - leased), nothing if under `minimum`."""
    free = max(0, global_limit - global_spent - global_leased)
    return 0 if free < minimum else min(max(request, 0), free)


def exchange(
    limit: int | None, spent: int, leased: int, held: int, report: LeaseReport
) -> Exchange:
    """The shared store's transaction: `spent`, `leased` (Σ live leases) and `held` (this
    holder's lease) before; the same after, and what was granted."""
    spent += report.used
    dropped = min(held, report.used + report.returned)
    request = report.request if limit is not None else 0
    granted = grant(limit or 0, spent, leased - dropped, request, report.minimum)
    return Exchange(spent, leased - dropped + granted, held - dropped + granted, granted)


def lease_request(need: int, amount: int, limit: int, divisor: int = 64) -> int:
    """Lease to ask for: the shortfall `need`, else a chunk of max(call, limit / divisor)."""
    return max(need, min(limit, max(amount, -(-limit // divisor))))


class LeasedBudget(BudgetLedger):
    """A process's ledger when several processes share the budgets (see the module docstring).

    `reserve` never leases (a short lease refuses); `reserve_or_lease` may return
    `LeaseNeeded`. At most one exchange per slot is in flight. No alerts here (a process sees
    only its share): the store's transaction raises them with `crossed_percents`; `load` is
    unused (each exchange brings the store's spend)."""

    def __init__(
        self, policy: BudgetPolicy | None = None, lease_policy: LeasePolicy | None = None
    ) -> None:
        super().__init__(policy)
        self._lease_policy = lease_policy if lease_policy is not None else LeasePolicy()
        self._short_wait_s = self._lease_policy.idle_s

    @property
    def lease_policy(self) -> LeasePolicy:
        return self._lease_policy

    def reserve_or_lease(
        self, accounts: Sequence[tuple[str, BudgetLimits]], amount: int, now: float
    ) -> Reservation | Refusal | LeaseNeeded:
        return self._reserve(accounts, amount, now, may_lease=True)

    def lease(self, slot: Slot) -> int:
        entry = self._entries.get(slot)
        return entry.lease if entry is not None else 0

    def observe(self, slot: Slot, store_spent: int) -> None:
        """The store's `spent` for `slot`, read while no exchange of this ledger ran (so it
        holds none of the local unreported spend): keeps usage and metrics current with other
        processes' spend. Spend shown never goes down."""
        entry = self._entries.get(slot)
        if entry is not None and entry.pending is None:
            entry.spent = max(entry.spent, store_spent + entry.unreported)

    def sync(self, now: float, *, closing: bool = False) -> list[LeaseReport]:
        """Exchanges due now: spend to report, idle, past-period or (`closing`) all unused
        lease to return, leases to renew. Run each, then `apply` (or `abandon`) it."""
        now = self._clock(now)
        policy = self._lease_policy
        reports = []
        for slot, entry in self._entries.items():
            entry.short = math.inf  # leases may have come back since: ask the store again
            if entry.pending is not None:
                continue
            current = self._ids[slot.period] == slot.period_id
            unused = max(0, entry.lease - entry.unreported - entry.reserved)
            idle = closing or not current or now - entry.last_draw >= policy.idle_s
            returned = unused if idle else 0
            renew = entry.lease > returned and entry.expires - now < policy.renew_s
            if entry.unreported or returned or renew:
                reports.append(self._report(slot, entry, returned=returned))
        return reports

    def apply(self, report: LeaseReport, result: Exchange, expires_at: float) -> None:
        """`report`'s transaction committed with `result`; the lease is now `result.held`
        (the store is authoritative) until `expires_at` (the store's expiry minus a margin)."""
        entry = self._pending(report)
        entry.pending = None
        entry.unreported -= report.used
        if report.minimum and not result.granted:  # the store is short for such a call
            entry.short = min(entry.short, report.minimum)
        entry.lease = result.held
        entry.spent = max(entry.spent, result.spent + entry.unreported)
        entry.expires = expires_at
        self._prune(report.slot, entry)

    def abandon(self, report: LeaseReport) -> None:
        """`report`'s transaction failed (rolled back): nothing changed."""
        entry = self._pending(report)
        entry.pending = None
        self._prune(report.slot, entry)

    def _pending(self, report: LeaseReport) -> _Entry:
        entry = self._entries.get(report.slot)
        if entry is None or entry.pending is not report:
            raise BudgetError(f"{report!r} is not this ledger's exchange in flight")
        return entry

    def _report(
        self, slot: Slot, entry: _Entry, returned: int = 0, request: int = 0, minimum: int = 0
    ) -> LeaseReport:
        report = LeaseReport(slot, entry.limit, entry.unreported, returned, request, minimum)
        entry.pending = report
        return report

    def _draw(
        self, entries: list[tuple[Slot, _Entry]], amount: int, now: float, may_lease: bool
    ) -> LeaseNeeded | Refusal | None:
        strict = self._policy.strict
        wanted: list[tuple[Slot, _Entry, int, int]] = []  # slot, entry, limit, shortfall
        for slot, entry in entries:
            limit = entry.limit
            if limit is None:
                continue
            cap = entry.lease - (entry.pending.returned if entry.pending is not None else 0)
            need = shortfall(entry.unreported + entry.reserved, amount, cap, strict)
            if not need and (now < entry.expires or amount == 0):
                continue  # covered by a live lease (a free call draws nothing)
            # Decided before any exchange is started: a refusal must leave none pending.
            if not may_lease or need >= entry.short:  # (the store just said it is short)
                return self._refusal(slot, entry, limit, amount, now, short=True)
            wanted.append((slot, entry, limit, need))
        reports: list[LeaseReport] = []
        pending: list[Slot] = []
        for slot, entry, limit, need in wanted:
            if entry.pending is not None:
                pending.append(slot)
            else:  # short, or the lease has expired: exchange (which renews it)
                request = lease_request(need, amount, limit, self._lease_policy.divisor)
                reports.append(
                    self._report(slot, entry, request=request if need else 0, minimum=need)
                )
        return LeaseNeeded(tuple(reports), tuple(pending)) if reports or pending else None

    def _settled(self, slot: Slot, entry: _Entry, actual: int, now: float) -> None:
        entry.unreported += actual

    def _idle(self, entry: _Entry) -> bool:
        return not (entry.holds or entry.lease or entry.unreported or entry.pending)
