from __future__ import annotations

import calendar
import random
from collections import defaultdict

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from circuitd.core.budget import (
    Alert,
    BudgetError,
    BudgetLedger,
    BudgetLimits,
    BudgetPolicy,
    Period,
    Refusal,
    Reservation,
    Slot,
    crossed_percents,
    day_of,
    month_of,
    period_bounds,
)

DAY = 86_400


def utc(*args: int) -> int:
    return calendar.timegm((*args, *[0] * (6 - len(args))))


T0 = utc(2025, 3, 14, 12)  # a Friday, mid-month
LIMITS = BudgetLimits(daily_micro_usd=1000)


def reserved(ledger: BudgetLedger, amount: int, now: float = T0, subject: str = "k") -> Reservation:
    decision = ledger.reserve([(subject, LIMITS)], amount, now)
    assert isinstance(decision, Reservation), decision
    return decision


# -- periods -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch", "day", "month"),
    [
        (0, "1970-01-01", "1970-01"),
        (DAY - 0.001, "1970-01-01", "1970-01"),  # whole seconds floored, as time.gmtime
        (DAY, "1970-01-02", "1970-01"),
        (-0.5, "1969-12-31", "1969-12"),
        (utc(2024, 2, 29, 23, 59, 59), "2024-02-29", "2024-02"),
        (utc(2024, 3, 1), "2024-03-01", "2024-03"),
        (utc(2025, 12, 31, 23, 59, 59) + 0.999, "2025-12-31", "2025-12"),
        (utc(2026, 1, 1), "2026-01-01", "2026-01"),
    ],
)
def test_period_ids(epoch: float, day: str, month: str) -> None:
    assert day_of(epoch) == day
    assert month_of(epoch) == month


@pytest.mark.parametrize(
    ("period", "epoch", "bounds"),
    [
        (Period.DAY, T0, (utc(2025, 3, 14), utc(2025, 3, 15))),
        (Period.DAY, utc(2025, 3, 15), (utc(2025, 3, 15), utc(2025, 3, 16))),
        (Period.DAY, utc(2025, 3, 15) - 1, (utc(2025, 3, 14), utc(2025, 3, 15))),
        (Period.MONTH, T0, (utc(2025, 3, 1), utc(2025, 4, 1))),
        (Period.MONTH, utc(2025, 12, 9), (utc(2025, 12, 1), utc(2026, 1, 1))),
        (Period.MONTH, utc(2024, 2, 29, 23), (utc(2024, 2, 1), utc(2024, 3, 1))),
    ],
)
def test_period_bounds(period: Period, epoch: float, bounds: tuple[int, int]) -> None:
    assert period_bounds(period, epoch) == bounds


@given(st.floats(min_value=0, max_value=4e9))
def test_period_ids_match_bounds(epoch: float) -> None:
    for period in Period:
        start, end = period_bounds(period, epoch)
        assert start <= epoch < end
        of = day_of if period is Period.DAY else month_of
        assert of(start) == of(epoch) == of(end - 1) != of(end)
        assert of(start - 1) != of(start)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="finite"):
        day_of(float("nan"))
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"daily_micro_usd": -1}, BudgetLimits)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"alert_percents": [80, 50]}, BudgetPolicy)
    ledger = BudgetLedger()
    with pytest.raises(ValueError, match=">= 0"):
        ledger.reserve([("k", LIMITS)], -1, T0)
    with pytest.raises(ValueError, match="at most once"):
        ledger.reserve([("k", LIMITS), ("k", LIMITS)], 1, T0)
    with pytest.raises(ValueError, match=">= 0"):
        ledger.settle(reserved(ledger, 1), -1, T0)


# -- admission edges ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spent", "held", "amount", "admitted"),
    [
        (0, 0, 1000, True),  # exactly fits
        (0, 0, 1001, False),  # one µUSD over
        (400, 200, 400, True),  # spent + reserved + amount == limit
        (400, 200, 401, False),
        (1000, 0, 0, True),  # a free call when exactly at the limit
        (1000, 0, 1, False),
        (0, 0, 0, True),
    ],
)
def test_strict_edges(spent: int, held: int, amount: int, admitted: bool) -> None:
    ledger = BudgetLedger()
    if spent:
        ledger.settle(reserved(ledger, spent), spent, T0)
    if held:
        reserved(ledger, held)
    decision = ledger.reserve([("k", LIMITS)], amount, T0)
    assert isinstance(decision, Reservation) is admitted
    if not admitted:
        assert decision == Refusal(
            slot=Slot("k", Period.DAY, "2025-03-14"),
            limit=1000,
            spent=spent,
            reserved=held,
            amount=amount,
            resets_at=utc(2025, 3, 15),
            retry_after_s=12 * 3600,
            exceeds_limit=amount > 1000,
        )


@pytest.mark.parametrize(
    ("committed", "amount", "admitted"),
    [(999, 10_000, True), (1000, 0, False), (0, 5000, True)],
)
def test_soft_mode_admits_while_under(committed: int, amount: int, admitted: bool) -> None:
    ledger = BudgetLedger(BudgetPolicy(strict=False))
    if committed:
        reserved(ledger, committed)
    assert isinstance(ledger.reserve([("k", LIMITS)], amount, T0), Reservation) is admitted


def test_retry_after_counts_to_the_reset() -> None:
    ledger = BudgetLedger()
    refusal = ledger.reserve([("k", LIMITS)], 2000, utc(2025, 3, 14, 23, 59, 59) + 0.5)
    assert isinstance(refusal, Refusal)
    assert (refusal.retry_after_s, refusal.exceeds_limit) == (1, True)


def test_refusal_names_the_limit_that_resets_last() -> None:
    ledger = BudgetLedger()
    both = BudgetLimits(daily_micro_usd=100, monthly_micro_usd=100)
    refusal = ledger.reserve([("k", LIMITS), ("tenant:t", both)], 200, T0)
    assert isinstance(refusal, Refusal)
    assert refusal.slot == Slot("tenant:t", Period.MONTH, "2025-03")
    assert refusal.resets_at == utc(2025, 4, 1)


def test_several_subjects_reserve_on_all_or_none() -> None:
    ledger = BudgetLedger()
    tenant = ("tenant:t", BudgetLimits(monthly_micro_usd=1500))
    first = ledger.reserve([("a", LIMITS), tenant], 1000, T0)
    assert isinstance(first, Reservation)
    assert isinstance(ledger.reserve([("b", LIMITS), tenant], 600, T0), Refusal)
    b_day, _ = ledger.usage("b", T0)
    assert (b_day.reserved, b_day.remaining) == (0, 1000)  # nothing held on b
    assert isinstance(ledger.reserve([("b", LIMITS), tenant], 500, T0), Reservation)
    ledger.release(first)
    _, t_month = ledger.usage("tenant:t", T0)
    assert (t_month.limit, t_month.spent, t_month.reserved, t_month.remaining) == (
        1500,
        0,
        500,
        1000,
    )


def test_settle_replaces_the_reservation() -> None:
    ledger = BudgetLedger()
    r = reserved(ledger, 600)
    day, month = ledger.usage("k", T0)
    assert (day.spent, day.reserved, day.remaining) == (0, 600, 400)
    assert (month.limit, month.remaining) == (None, None)  # spend is counted without a limit
    ledger.settle(r, 150, T0 + 1)
    day, month = ledger.usage("k", T0 + 1)
    assert (day.spent, day.reserved, day.remaining, month.spent) == (150, 0, 850, 150)
    assert ledger.outstanding == 0


def test_a_reservation_closes_exactly_once() -> None:
    ledger = BudgetLedger()
    r = reserved(ledger, 10)
    ledger.settle(r, 5, T0)
    assert r.done
    with pytest.raises(BudgetError, match="already"):
        ledger.settle(r, 5, T0)
    with pytest.raises(BudgetError, match="already"):
        ledger.release(r)
    with pytest.raises(BudgetError, match="another ledger"):
        BudgetLedger().release(reserved(ledger, 1))
    assert ledger.usage("k", T0)[0].spent == 5


def test_overshoot_is_bounded_by_the_call_excess() -> None:
    ledger = BudgetLedger()
    r = reserved(ledger, 900)
    ledger.settle(r, 1200, T0)  # the provider over-delivered: the ledger records the truth
    day, _ = ledger.usage("k", T0)
    assert (day.spent, day.remaining) == (1200, 0)
    assert isinstance(ledger.reserve([("k", LIMITS)], 0, T0), Refusal)


# -- periods in the ledger ---------------------------------------------------------------------


def test_a_call_across_midnight_is_charged_to_the_day_it_was_reserved_in() -> None:
    ledger = BudgetLedger()
    night = utc(2025, 3, 31, 23, 59, 59)
    r = reserved(ledger, 800, night)
    assert r.slots[0] == Slot("k", Period.DAY, "2025-03-31")
    morning = night + 2
    day, month = ledger.usage("k", morning)
    assert (day.slot.period_id, day.spent, day.reserved, month.slot.period_id) == (
        "2025-04-01",
        0,
        0,
        "2025-04",
    )
    assert len(ledger._entries) == 2  # the old day and month stay while the call is open
    ledger.settle(r, 700, morning)
    assert ledger._entries == {}  # ... and go once it is settled
    assert ledger.usage("k", morning)[0].spent == 0


def test_old_periods_do_not_accumulate() -> None:
    ledger = BudgetLedger()
    for day in range(400):
        now = T0 + day * DAY
        ledger.settle(reserved(ledger, 10, now, subject=f"k{day % 3}"), 10, now)
        assert len(ledger._entries) <= 3 * 2 + 2 * 2
    assert {s.period_id for s in ledger._entries} <= {day_of(now), month_of(now)}


def test_time_never_moves_backwards() -> None:
    ledger = BudgetLedger()
    ledger.settle(reserved(ledger, 10, T0 + DAY), 10, T0 + DAY)
    r = reserved(ledger, 10, T0)  # an earlier clock is read as the latest
    assert r.slots[0].period_id == "2025-03-15"


def test_restart_keeps_the_days_spend_and_a_new_day_resets_it() -> None:
    before = BudgetLedger()
    before.settle(reserved(before, 700, T0), 700, T0)
    spent = before.usage("k", T0)[0].spent
    after = BudgetLedger()  # a restart: seeded from usage_daily
    after.load("k", Period.DAY, day_of(T0), spent)
    after.load("k", Period.MONTH, month_of(T0), spent + 5000)
    after.load("k", Period.DAY, "2025-03-13", 999)  # another day's rollup: not today's
    assert isinstance(after.reserve([("k", LIMITS)], 301, T0 + 60), Refusal)
    held = after.reserve([("k", LIMITS)], 300, T0 + 60)
    assert isinstance(held, Reservation)
    after.release(held)
    day, month = after.usage("k", T0 + DAY)
    assert (day.spent, day.reserved, month.spent) == (0, 0, 5700)
    assert isinstance(after.reserve([("k", LIMITS)], 1000, T0 + DAY), Reservation)
    after.load("k", Period.DAY, "2025-03-14", 999)  # now a past day: ignored
    assert all(s.period_id != "2025-03-14" for s in after._entries)


# -- alerts ------------------------------------------------------------------------------------


def test_alerts_once_per_slot_and_percent() -> None:
    ledger = BudgetLedger()
    slot = Slot("k", Period.DAY, "2025-03-14")
    ledger.settle(reserved(ledger, 499), 499, T0)
    assert ledger.pop_alerts() == []
    ledger.settle(reserved(ledger, 1), 1, T0 + 1)  # exactly 50%
    assert ledger.pop_alerts() == [Alert(slot, 50, 1000, 500, T0 + 1)]
    ledger.settle(reserved(ledger, 460), 460, T0 + 2)  # 96%: two at once
    assert [a.percent for a in ledger.pop_alerts()] == [80, 95]
    ledger.settle(reserved(ledger, 40), 40, T0 + 3)
    assert ledger.pop_alerts() == []
    ledger.settle(reserved(ledger, 10, T0 + DAY), 10, T0 + DAY)  # a new period starts over
    assert ledger.pop_alerts() == []
    ledger.settle(reserved(ledger, 490, T0 + DAY), 490, T0 + DAY)
    assert [a.slot.period_id for a in ledger.pop_alerts()] == ["2025-03-15"]


def test_alerts_already_reached_before_a_restart_are_not_repeated() -> None:
    ledger = BudgetLedger()
    ledger.load("k", Period.DAY, day_of(T0), 850)
    ledger.settle(reserved(ledger, 10), 10, T0)
    assert ledger.pop_alerts() == []
    ledger.settle(reserved(ledger, 100), 100, T0)
    assert [a.percent for a in ledger.pop_alerts()] == [95]


@pytest.mark.parametrize(
    ("before", "after", "crossed"),
    [(0, 499, ()), (0, 500, (50,)), (500, 800, (80,)), (499, 1000, (50, 80, 95)), (960, 2000, ())],
)
def test_crossed_percents(before: int, after: int, crossed: tuple[int, ...]) -> None:
    assert crossed_percents(1000, before, after, (50, 80, 95)) == crossed


# -- the race ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_race_200_calls_against_a_small_budget(seed: int) -> None:
    rng = random.Random(seed)
    limit = 50_000
    limits = BudgetLimits(daily_micro_usd=limit, monthly_micro_usd=limit * 3)
    ledger = BudgetLedger()
    arrivals = [rng.randint(100, 2000) for _ in range(200)]
    open_: list[Reservation] = []
    settled = 0
    admitted = 0
    while arrivals or open_:
        # each step: a call arrives (reserve) or one in flight ends, in random order
        if arrivals and (not open_ or rng.random() < 0.6):
            decision = ledger.reserve([("k", limits)], arrivals.pop(), T0)
            if isinstance(decision, Reservation):
                open_.append(decision)
                admitted += 1
        else:
            r = open_.pop(rng.randrange(len(open_)))
            if rng.random() < 0.2:
                ledger.release(r)  # failed before any upstream cost
            else:
                actual = rng.randint(0, r.amount)
                ledger.settle(r, actual, T0)
                settled += actual
        day, _ = ledger.usage("k", T0)
        assert day.spent + day.reserved <= limit  # the admitted worst case, at every step
        assert day.reserved == sum(r.amount for r in open_)
    day, month = ledger.usage("k", T0)
    assert day.spent == month.spent == settled <= limit
    assert ledger.outstanding == 0
    assert 0 < admitted < 200


# -- state machine -----------------------------------------------------------------------------

SUBJECT_LIMITS = {
    "a": BudgetLimits(daily_micro_usd=1000, monthly_micro_usd=3000),
    "b": BudgetLimits(monthly_micro_usd=2000),
    "tenant:t": BudgetLimits(daily_micro_usd=1500),
}
ACCOUNTS = [["a"], ["b"], ["a", "tenant:t"], ["b", "tenant:t"], ["tenant:t"]]


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.strict = True
        self.ledger = BudgetLedger()
        self.now = float(utc(2025, 1, 31, 22))
        self.open: list[Reservation] = []
        self.closed: list[Reservation] = []
        self.spent: dict[Slot, int] = defaultdict(int)  # settled actuals, per slot
        self.excess: dict[Slot, int] = defaultdict(int)  # Σ max(0, actual - reserved)

    @rule(dt=st.sampled_from([0.0, 1.0, 600.0, 3600.0, 7200.0, DAY, 20 * DAY]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(which=st.sampled_from(ACCOUNTS), amount=st.integers(0, 1600))
    def reserve(self, which: list[str], amount: int) -> None:
        accounts = [(s, SUBJECT_LIMITS[s]) for s in which]
        before = self.held(which)
        decision = self.ledger.reserve(accounts, amount, self.now)
        if isinstance(decision, Reservation):
            self.open.append(decision)
            assert len(decision.slots) == 2 * len(which)
        else:  # refused: some limit really lacks room, and nothing was held
            assert decision.spent + decision.reserved + amount > decision.limit
            assert self.held(which) == before

    def held(self, subjects: list[str]) -> list[tuple[int, int]]:
        return [(u.spent, u.reserved) for s in subjects for u in self.ledger.usage(s, self.now)]

    @precondition(lambda self: self.open)
    @rule(pick=st.integers(0, 10**6), fraction=st.floats(0, 1), over=st.sampled_from([0, 0, 7]))
    def settle(self, pick: int, fraction: float, over: int) -> None:
        r = self.open.pop(pick % len(self.open))
        actual = int(r.amount * fraction) + over
        self.ledger.settle(r, actual, self.now)
        self.closed.append(r)
        for slot in r.slots:
            self.spent[slot] += actual
            self.excess[slot] += max(0, actual - r.amount)

    @precondition(lambda self: self.open)
    @rule(pick=st.integers(0, 10**6))
    def release(self, pick: int) -> None:
        r = self.open.pop(pick % len(self.open))
        self.ledger.release(r)
        self.closed.append(r)

    @precondition(lambda self: self.closed)
    @rule(pick=st.integers(0, 10**6))
    def close_again(self, pick: int) -> None:
        with pytest.raises(BudgetError):
            self.ledger.settle(self.closed[pick % len(self.closed)], 1, self.now)

    @invariant()
    def books_balance(self) -> None:
        for subject, limits in SUBJECT_LIMITS.items():
            for usage in self.ledger.usage(subject, self.now):
                slot = usage.slot
                held = sum(r.amount for r in self.open if slot in r.slots)
                assert usage.reserved == held
                assert usage.spent == self.spent[slot]
                limit = limits.of(slot.period)
                if limit is not None:
                    assert usage.spent + usage.reserved <= limit + self.excess[slot]
        assert self.ledger.outstanding == sum(len(r.slots) for r in self.open)
        open_slots = {s for r in self.open for s in r.slots}
        current = {(p, self.ledger._ids[p]) for p in Period}
        for slot in self.ledger._entries:  # past periods stay only while a call holds them
            assert (slot.period, slot.period_id) in current or slot in open_slots

    def teardown(self) -> None:
        for r in self.open:
            self.ledger.release(r)
        assert self.ledger.outstanding == 0


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
