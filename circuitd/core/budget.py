"""Budgets: per-subject USD limits on UTC days and months, never overshot (sans-I/O).

A *subject* is an opaque string (a key id today; "tenant:acme" later). A call is charged to
one or more subjects at once (a key and its tenant): `reserve` fits on all of them or on none.
Each subject has a limit per `Period` (DAY, MONTH: UTC calendar periods); a *slot* is
(subject, period, period id 'YYYY-MM-DD' / 'YYYY-MM'). Money is integer micro-USD (µUSD).

Admission reserves the call's worst-case cost on every slot; settlement removes the
reservation and adds the actual cost to `spent`; `release` removes it without spending. Each
reservation is closed exactly once (a second time raises `BudgetError`).

Rules, per slot with a limit (a slot without one still counts spend, for usage and for a
limit added by a reload mid-period):

- STRICT (default): admit iff spent + reserved + amount <= limit. Guarantee: at all times
  spent + reserved <= limit + E, where E is the sum, over the calls settled in the slot's
  period, of max(0, actual - reserved amount): if every call costs at most its reservation,
  spent never exceeds the limit, and a call that costs more overshoots by its own excess only.
  (A limit lowered mid-period refuses new calls until the total fits under it; calls admitted
  before finish.) A call whose worst case alone exceeds the limit is refused
  (`Refusal.exceeds_limit`): no wait makes it fit.
- SOFT (`strict=False`): admit iff spent + reserved < limit; the overshoot is below one
  admitted call's worst case (plus E).

Cross-midnight calls are charged to the periods they were *reserved* in: the reservation
holds its slots, and the request row's `timestamp` (hence its `usage_daily.day`) is the call's
start too, so ledger and rollups agree and seeding from `usage_daily` reproduces the ledger.
Time never moves backwards: a `now` earlier than the latest seen is taken as the latest. When
the UTC day changes, slots of past periods with nothing outstanding are dropped (their spend is
in the store already); a past slot still holding a reservation goes once that is closed.

Alerts: the first settle that takes a slot's spent to >= p% of its limit queues an `Alert`
for each percent p of `alert_percents` (50/80/95), once per slot; `pop_alerts()` returns them.
Percents already reached by spend `load`ed at start are not alerted again (the previous
process alerted them before their rows were written).

Several processes lease budget from a shared store: `core.lease`.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec

if TYPE_CHECKING:  # only for annotations: core.lease builds on this module
    from circuitd.core.lease import LeaseNeeded, LeaseReport

__all__ = [
    "Alert", "BudgetError", "BudgetLedger", "BudgetLimits", "BudgetPolicy", "Period", "Refusal",
    "Reservation", "Slot", "SlotUsage", "crossed_percents", "day_of", "month_of",
    "period_bounds", "period_id", "shortfall",
]  # fmt: skip

_DAY_S: Final = 86_400
_EPOCH: Final = dt.date(1970, 1, 1)


class Period(enum.StrEnum):
    DAY = "day"
    MONTH = "month"


def _date(epoch: float) -> dt.date:
    # Whole seconds floored, as `time.gmtime` does for the rows' timestamps.
    if not math.isfinite(epoch):
        raise ValueError(f"epoch seconds must be finite, got {epoch!r}")
    return _EPOCH + dt.timedelta(days=math.floor(epoch) // _DAY_S)


def day_of(epoch: float) -> str:
    """'YYYY-MM-DD', the UTC day of `epoch`."""
    return _date(epoch).isoformat()


def month_of(epoch: float) -> str:
    """'YYYY-MM', the UTC month of `epoch`."""
    return _date(epoch).isoformat()[:7]


def period_id(period: Period, epoch: float) -> str:
    return day_of(epoch) if period is Period.DAY else month_of(epoch)


def period_bounds(period: Period, epoch: float) -> tuple[int, int]:
    """(start, end) epoch seconds of the period holding `epoch`; `end` is the next reset."""
    day = _date(epoch)
    if period is Period.DAY:
        start, end = day, day + dt.timedelta(days=1)
    else:
        start = day.replace(day=1)
        end = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return (start - _EPOCH).days * _DAY_S, (end - _EPOCH).days * _DAY_S


class BudgetLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A subject's limits in µUSD; None: no limit on that period (spend is still counted)."""

    daily_micro_usd: int | None = None
    monthly_micro_usd: int | None = None

    def __post_init__(self) -> None:
        for limit in (self.daily_micro_usd, self.monthly_micro_usd):
            if limit is not None and limit < 0:
                raise ValueError(f"budget limits must be >= 0 µUSD, got {limit!r}")

    def of(self, period: Period) -> int | None:
        return self.daily_micro_usd if period is Period.DAY else self.monthly_micro_usd


class BudgetPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    strict: bool = True  # see the module docstring: STRICT vs SOFT
    alert_percents: tuple[int, ...] = (50, 80, 95)

    def __post_init__(self) -> None:
        p = self.alert_percents
        if list(p) != sorted(set(p)) or not all(1 <= x <= 100 for x in p):
            raise ValueError(f"alert_percents must be increasing, in 1..100, got {p!r}")


class Slot(NamedTuple):
    subject: str
    period: Period
    period_id: str


class Refusal(msgspec.Struct, frozen=True):
    """Why `reserve` refused: the binding limit (the one that resets last)."""

    slot: Slot
    limit: int
    spent: int
    reserved: int
    amount: int
    resets_at: int  # epoch seconds
    retry_after_s: int  # whole seconds, >= 1: for Retry-After
    exceeds_limit: bool  # the worst case alone is over the limit: no wait helps
    lease_short: bool = False  # several processes: the store granted too little lease


class Alert(msgspec.Struct, frozen=True):
    slot: Slot
    percent: int
    limit: int
    spent: int
    at: float


class SlotUsage(msgspec.Struct, frozen=True):
    slot: Slot
    limit: int | None
    spent: int
    reserved: int
    remaining: int | None  # max(0, limit - spent - reserved); None without a limit
    resets_at: int


class BudgetError(RuntimeError):
    """A reservation misused: closed twice, or given to a ledger that did not issue it."""


def crossed_percents(
    limit: int, before: int, after: int, percents: Sequence[int]
) -> tuple[int, ...]:
    """The percents p with before < p% of limit <= after (the store's alert check)."""
    return tuple(p for p in percents if before * 100 < limit * p <= after * 100)


def shortfall(total: int, amount: int, cap: int, strict: bool) -> int:
    """How much `cap` lacks for admitting `amount` on top of `total` (0: it fits)."""
    return max(0, total + amount - cap) if strict else max(0, total + 1 - cap)


class Reservation:
    """A call's reserved worst case, to be settled or released exactly once."""

    __slots__ = ("_done", "_owner", "amount", "at", "slots")

    def __init__(self, owner: BudgetLedger, amount: int, slots: tuple[Slot, ...], at: float):
        self._owner = owner
        self._done = False
        self.amount = amount
        self.slots = slots
        self.at = at

    @property
    def done(self) -> bool:
        return self._done

    def __repr__(self) -> str:
        return f"Reservation(amount={self.amount}, slots={self.slots!r}, done={self._done})"


class _Entry:
    __slots__ = (
        "alerted", "expires", "holds", "last_draw", "lease", "limit", "loaded", "pending",
        "reserved", "short", "spent", "unreported",
    )  # fmt: skip

    def __init__(self) -> None:
        self.limit: int | None = None  # as last seen in `reserve`
        self.spent = 0
        self.reserved = 0
        self.holds = 0  # open reservations
        self.alerted = 0  # bit i: alert_percents[i] reached
        self.loaded = 0  # spend loaded at start: percents it reached are not alerted
        self.lease = 0  # core.lease.LeasedBudget only, from here on
        self.unreported = 0
        self.pending: LeaseReport | None = None
        self.expires = -math.inf
        self.last_draw = -math.inf
        # The smallest shortfall the store could not cover since the last sync round: a call
        # needing as much is refused without asking the store again.
        self.short = math.inf


class BudgetLedger:
    """One process's ledger (the whole truth when the gateway runs one process)."""

    _short_wait_s = math.inf

    def __init__(self, policy: BudgetPolicy | None = None) -> None:
        self._policy = policy if policy is not None else BudgetPolicy()
        self._entries: dict[Slot, _Entry] = {}
        self._alerts: list[Alert] = []
        self._now = -math.inf
        self._day: int | None = None
        self._ids: dict[Period, str] = {}

    @property
    def policy(self) -> BudgetPolicy:
        return self._policy

    @property
    def outstanding(self) -> int:
        """Open reservations (a reservation on n slots counts once per slot)."""
        return sum(e.holds for e in self._entries.values())

    def reserve(
        self, accounts: Sequence[tuple[str, BudgetLimits]], amount: int, now: float
    ) -> Reservation | Refusal:
        decision = self._reserve(accounts, amount, now, may_lease=False)
        assert isinstance(decision, Reservation | Refusal)  # one process never leases
        return decision

    def settle(self, reservation: Reservation, actual: int, now: float) -> None:
        """Close `reservation`, adding the call's `actual` cost (any >= 0) to its slots."""
        if actual < 0:
            raise ValueError(f"actual cost must be >= 0 µUSD, got {actual!r}")
        self._close(reservation)
        now = self._clock(now)
        for slot in reservation.slots:
            entry = self._entries[slot]
            entry.spent += actual
            self._settled(slot, entry, actual, now)
            self._prune(slot, entry)

    def release(self, reservation: Reservation) -> None:
        """Close `reservation` without spending (the call cost nothing upstream)."""
        self._close(reservation)
        for slot in reservation.slots:
            self._prune(slot, self._entries[slot])

    def load(self, subject: str, period: Period, period_id: str, spent: int) -> None:
        """Seed a slot's settled spend from the store at start (before any traffic); a period
        other than the current one is ignored."""
        if spent < 0:
            raise ValueError(f"spent must be >= 0 µUSD, got {spent!r}")
        if self._ids and self._ids[period] != period_id:
            return
        entry = self._entries.setdefault(Slot(subject, period, period_id), _Entry())
        entry.spent = entry.loaded = spent

    def usage(
        self, subject: str, now: float, limits: BudgetLimits | None = None
    ) -> tuple[SlotUsage, SlotUsage]:
        """(day, month) for `/v1/usage`; `limits` default to those last seen in `reserve`."""
        self._clock(now)
        day, month = (self._usage(Slot(subject, p, self._ids[p]), limits) for p in Period)
        return day, month

    def snapshot(self, now: float) -> list[SlotUsage]:
        """Every current-period slot, for metrics."""
        self._clock(now)
        return [self._usage(s, None) for s in self._entries if self._ids[s.period] == s.period_id]

    def pop_alerts(self) -> list[Alert]:
        """The alerts since the last call, oldest first; each is returned once."""
        alerts, self._alerts = self._alerts, []
        return alerts

    # -- internals ---------------------------------------------------------------------------

    def _reserve(
        self, accounts: Sequence[tuple[str, BudgetLimits]], amount: int, now: float, may_lease: bool
    ) -> Reservation | Refusal | LeaseNeeded:
        if amount < 0:
            raise ValueError(f"a reservation must be >= 0 µUSD, got {amount!r}")
        if len({subject for subject, _ in accounts}) != len(accounts):
            raise ValueError("a call is charged to each subject at most once")
        now = self._clock(now)
        strict = self._policy.strict
        entries: list[tuple[Slot, _Entry]] = []
        refusal: Refusal | None = None
        for subject, limits in accounts:
            for period in Period:
                slot = Slot(subject, period, self._ids[period])
                entry = self._entries.setdefault(slot, _Entry())
                entry.limit = limit = limits.of(period)
                entries.append((slot, entry))
                if limit is None or not shortfall(
                    entry.spent + entry.reserved, amount, limit, strict
                ):
                    continue
                if refusal is None or period is Period.MONTH:
                    refusal = self._refusal(slot, entry, limit, amount, now)
        if refusal is not None:
            return refusal
        lease_needed = self._draw(entries, amount, now, may_lease)
        if lease_needed is not None:
            return lease_needed
        for _, entry in entries:
            entry.reserved += amount
            entry.holds += 1
            entry.last_draw = now
        return Reservation(self, amount, tuple(slot for slot, _ in entries), now)

    def _draw(
        self, entries: list[tuple[Slot, _Entry]], amount: int, now: float, may_lease: bool
    ) -> LeaseNeeded | Refusal | None:
        return None  # one process: the limit itself is the lease

    def _refusal(
        self, slot: Slot, entry: _Entry, limit: int, amount: int, now: float, short: bool = False
    ) -> Refusal:
        resets_at = period_bounds(slot.period, now)[1]
        wait = resets_at - now
        if short:  # other processes return idle leases sooner than the period resets
            wait = min(wait, self._short_wait_s)
        return Refusal(
            slot,
            limit,
            entry.spent,
            entry.reserved,
            amount,
            resets_at,
            max(1, math.ceil(wait)),
            exceeds_limit=amount > limit,
            lease_short=short,
        )

    def _close(self, reservation: Reservation) -> None:
        if reservation._owner is not self:
            raise BudgetError(f"{reservation!r} was issued by another ledger")
        if reservation._done:
            raise BudgetError(f"{reservation!r} was already settled or released")
        reservation._done = True
        for slot in reservation.slots:
            entry = self._entries[slot]  # an entry with holds > 0 is never pruned
            entry.reserved -= reservation.amount
            entry.holds -= 1

    def _settled(self, slot: Slot, entry: _Entry, actual: int, now: float) -> None:
        limit = entry.limit
        if limit is None:
            return
        for i, percent in enumerate(self._policy.alert_percents):
            if entry.alerted >> i & 1 or entry.spent * 100 < limit * percent:
                continue
            entry.alerted |= 1 << i
            if entry.loaded * 100 < limit * percent:
                self._alerts.append(Alert(slot, percent, limit, entry.spent, now))

    def _clock(self, now: float) -> float:
        if now > self._now:
            self._now = now
            day = math.floor(now) // _DAY_S
            if day != self._day:
                self._day = day
                self._ids = {p: period_id(p, now) for p in Period}
                for slot, entry in list(self._entries.items()):
                    self._prune(slot, entry)
        return self._now

    def _idle(self, entry: _Entry) -> bool:
        return entry.holds == 0

    def _prune(self, slot: Slot, entry: _Entry) -> None:
        if self._ids[slot.period] != slot.period_id and self._idle(entry):
            del self._entries[slot]

    def _usage(self, slot: Slot, limits: BudgetLimits | None) -> SlotUsage:
        entry = self._entries.get(slot) or _Entry()
        limit = limits.of(slot.period) if limits is not None else entry.limit
        committed = entry.spent + entry.reserved
        remaining = None if limit is None else max(0, limit - committed)
        resets_at = period_bounds(slot.period, self._now)[1]
        return SlotUsage(slot, limit, entry.spent, entry.reserved, remaining, resets_at)
