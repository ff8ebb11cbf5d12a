from __future__ import annotations

import calendar
import random
from collections import defaultdict

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from circuitd.core.budget import (
    Alert,
    BudgetError,
    BudgetLedger,
    BudgetLimits,
    BudgetPolicy,
    Exchange,
    LeasedBudget,
    LeaseNeeded,
    LeasePolicy,
    LeaseReport,
    Period,
    Refusal,
    Reservation,
    Slot,
    crossed_percents,
    day_of,
    exchange,
    grant,
    lease_request,
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


# -- leasing: pure functions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "spent", "leased", "wanted", "minimum", "granted"),
    [
        (1000, 0, 0, 100, 0, 100),
        (1000, 600, 300, 200, 0, 100),  # capped by what is free
        (1000, 600, 300, 200, 100, 100),  # exactly the minimum is free
        (1000, 600, 300, 200, 101, 0),  # less than the call's shortfall: strand nothing
        (1000, 900, 300, 50, 0, 0),  # over-committed already (an excess)
        (1000, 0, 0, -5, 0, 0),
    ],
)
def test_grant(
    limit: int, spent: int, leased: int, wanted: int, minimum: int, granted: int
) -> None:
    assert grant(limit, spent, leased, wanted, minimum) == granted


SLOT = Slot("k", Period.DAY, "2025-03-14")


@pytest.mark.parametrize(
    ("report", "before", "after"),
    [
        # report 300 used, return 100, ask 500: held 400 -> 0 + 500
        (LeaseReport(SLOT, 1000, 300, 100, 500, 50), (0, 600, 400), Exchange(300, 700, 500, 500)),
        # only 100 free after the report: the call needs 150 -> nothing
        (LeaseReport(SLOT, 1000, 0, 0, 500, 150), (800, 100, 50), Exchange(800, 100, 50, 0)),
        # overshoot: used more than held; the lease goes to 0, spent records the truth
        (LeaseReport(SLOT, 1000, 90, 0, 0, 0), (0, 80, 80), Exchange(90, 0, 0, 0)),
        # an unlimited slot only reports
        (LeaseReport(SLOT, None, 70, 0, 500, 0), (10, 0, 0), Exchange(80, 0, 0, 0)),
    ],
)
def test_exchange(report: LeaseReport, before: tuple[int, int, int], after: Exchange) -> None:
    assert exchange(report.limit, *before, report) == after


@pytest.mark.parametrize(
    ("need", "amount", "limit", "wanted"),
    [(0, 10, 6400, 100), (0, 500, 6400, 500), (700, 500, 6400, 700), (0, 10, 63, 10), (0, 9, 5, 5)],
)
def test_lease_request(need: int, amount: int, limit: int, wanted: int) -> None:
    assert lease_request(need, amount, limit) == wanted


# -- leasing: several processes ----------------------------------------------------------------


class Store:
    """The shared store, as the shell's transactions will run it (each call is atomic)."""

    def __init__(self, limits: dict[str, BudgetLimits]) -> None:
        self.limits = limits
        self.spent: dict[Slot, int] = defaultdict(int)
        self.held: dict[tuple[int, Slot], int] = defaultdict(int)

    def leased(self, slot: Slot) -> int:
        return sum(v for (_, s), v in self.held.items() if s == slot)

    def commit(self, holder: int, report: LeaseReport) -> Exchange:
        slot = report.slot
        limit = self.limits[slot.subject].of(slot.period)
        assert limit == report.limit
        result = exchange(
            limit, self.spent[slot], self.leased(slot), self.held[holder, slot], report
        )
        assert result.leased == self.leased(slot) - self.held[holder, slot] + result.held
        self.spent[slot], self.held[holder, slot] = result.spent, result.held
        return result


LEASE_LIMITS = {
    "k1": BudgetLimits(daily_micro_usd=6000),
    "k2": BudgetLimits(daily_micro_usd=6000, monthly_micro_usd=8000),
    "tenant:t": BudgetLimits(daily_micro_usd=10_000),
}


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32), processes=st.integers(1, 5))
def test_processes_leasing_from_one_store_never_exceed_the_limit(seed: int, processes: int) -> None:
    rng = random.Random(seed)
    store = Store(LEASE_LIMITS)
    policy = LeasePolicy(divisor=4, idle_s=30.0)
    procs = [LeasedBudget(lease_policy=policy) for _ in range(processes)]
    now = float(T0)
    to_commit: list[tuple[int, LeaseReport]] = []
    to_apply: list[tuple[int, LeaseReport, Exchange]] = []
    open_: list[tuple[int, Reservation]] = []
    settled: dict[tuple[int, Slot], int] = defaultdict(int)  # per process, per slot
    reported: dict[tuple[int, Slot], int] = defaultdict(int)  # committed `used`
    total: dict[Slot, int] = defaultdict(int)
    admitted = refused = peak = 0
    tenant = Slot("tenant:t", Period.DAY, day_of(T0))

    def outstanding(slot: Slot) -> int:
        worst = sum(r.amount for _, r in open_ if slot in r.slots)
        return worst + sum(settled[p, slot] - reported[p, slot] for p in range(processes))

    def step(action: str) -> None:
        nonlocal admitted, refused, now
        if action in ("call", "retry"):  # a retry follows an exchange: it never leases
            p = rng.randrange(processes)
            key = rng.choice(["k1", "k2"])
            accounts = [(key, LEASE_LIMITS[key]), ("tenant:t", LEASE_LIMITS["tenant:t"])]
            amount = rng.randint(1, 1500)
            decision = (
                procs[p].reserve_or_lease(accounts, amount, now)
                if action == "call"
                else procs[p].reserve(accounts, amount, now)
            )
            if isinstance(decision, Reservation):
                open_.append((p, decision))
                admitted += 1
            elif isinstance(decision, LeaseNeeded):
                to_commit.extend((p, r) for r in decision.reports)
            else:
                refused += 1
        elif action == "commit" and to_commit:
            p, report = to_commit.pop(rng.randrange(len(to_commit)))
            if rng.random() < 0.05:
                procs[p].abandon(report)  # the transaction failed
                return
            to_apply.append((p, report, store.commit(p, report)))
            reported[p, report.slot] += report.used
        elif action == "apply" and to_apply:
            p, report, result = to_apply.pop(rng.randrange(len(to_apply)))
            procs[p].apply(report, result, now + policy.ttl_s)
        elif action == "end" and open_:
            p, r = open_.pop(rng.randrange(len(open_)))
            actual = rng.randint(0, r.amount)
            procs[p].settle(r, actual, now)
            for slot in r.slots:
                settled[p, slot] += actual
                total[slot] += actual
        elif action == "sync":
            p = rng.randrange(processes)
            to_commit.extend((p, r) for r in procs[p].sync(now))
        elif action == "tick":
            now += rng.choice([0.5, 5.0, 40.0])

    actions = ["call"] * 3 + ["commit", "apply", "end"] * 3 + ["retry", "sync", "tick"]
    for _ in range(1000):
        step(rng.choice(actions))
        for slot in list(store.spent):
            limit = LEASE_LIMITS[slot.subject].of(slot.period)
            if limit is None:
                continue
            assert store.spent[slot] + store.leased(slot) <= limit
            assert store.spent[slot] + outstanding(slot) <= limit  # every admitted worst case
        peak = max(peak, store.spent[tenant] + outstanding(tenant))
    # Drain: calls end, exchanges finish, every process returns its leases.
    while open_:
        step("end")
    for _ in range(100):  # a failed transaction (abandon) is retried at the next sync
        while to_commit or to_apply:
            step(rng.choice(["commit", "apply"]))
        for p in range(processes):
            to_commit.extend((p, r) for r in procs[p].sync(now, closing=True))
        if not to_commit:
            break
    assert not to_commit
    for slot, spent in total.items():
        assert store.spent[slot] == spent
        assert store.leased(slot) == 0
    for proc in procs:
        assert proc.outstanding == 0
        assert all(proc.lease(s) == 0 for s in total)
    event(f"admitted {min(admitted, 100) // 20 * 20}+")
    event(f"refused {min(refused, 20) // 5 * 5}+")
    event(f"tenant's peak committed {peak * 10 // 10_000 * 10}%")


def test_leased_budget_flow() -> None:
    store = Store({"k": LIMITS})
    lb = LeasedBudget(lease_policy=LeasePolicy(divisor=10))
    accounts = [("k", LIMITS)]
    needed = lb.reserve_or_lease(accounts, 30, T0)
    assert isinstance(needed, LeaseNeeded) and needed.pending == ()
    (report,) = needed.reports
    assert (report.used, report.request, report.minimum) == (0, 100, 30)  # a chunk: limit / 10
    # While the exchange is in flight, another call on the slot waits for it.
    assert lb.reserve_or_lease(accounts, 5, T0) == LeaseNeeded((), (report.slot,))
    refusal = lb.reserve(accounts, 5, T0)  # `reserve` never leases
    assert isinstance(refusal, Refusal) and refusal.lease_short
    assert refusal.retry_after_s == 60  # other processes return idle leases within idle_s
    lb.apply(report, store.commit(0, report), T0 + 300)
    assert lb.lease(report.slot) == 100
    r = lb.reserve_or_lease(accounts, 30, T0)
    assert isinstance(r, Reservation)
    lb.settle(r, 20, T0 + 1)
    day, month = sorted(lb.sync(T0 + 2), key=lambda x: x.slot.period != Period.DAY)
    assert (day.used, day.returned, day.request) == (20, 0, 0)  # spend is reported at each sync
    assert (month.limit, month.used) == (None, 20)  # unlimited slots report spend too
    for report in (day, month):
        lb.apply(report, store.commit(0, report), T0 + 300)
    assert (lb.lease(day.slot), store.held[0, day.slot], store.spent[day.slot]) == (80, 80, 20)
    assert lb.sync(T0 + 30) == []  # nothing due
    (due,) = lb.sync(T0 + 200)  # idle for idle_s: the unused lease goes back
    assert (due.slot, due.used, due.returned, due.request) == (day.slot, 0, 80, 0)
    lb.apply(due, store.commit(0, due), T0 + 500)
    assert (lb.lease(due.slot), store.spent[due.slot], store.leased(due.slot)) == (0, 20, 0)
    assert lb.usage("k", T0 + 200)[0].spent == 20
    with pytest.raises(BudgetError):
        lb.apply(due, store.commit(0, due), T0 + 500)


def test_an_expired_lease_is_renewed_before_drawing() -> None:
    store = Store({"k": LIMITS})
    lb = LeasedBudget()
    needed = lb.reserve_or_lease([("k", LIMITS)], 30, T0)
    assert isinstance(needed, LeaseNeeded)
    lb.apply(needed.reports[0], store.commit(0, needed.reports[0]), T0 + 10)
    assert isinstance(lb.reserve_or_lease([("k", LIMITS)], 10, T0 + 9), Reservation)
    assert isinstance(lb.reserve_or_lease([("k", LIMITS)], 0, T0 + 10), Reservation)  # free
    renew = lb.reserve_or_lease([("k", LIMITS)], 10, T0 + 10)
    assert isinstance(renew, LeaseNeeded)
    assert (renew.reports[0].request, renew.reports[0].minimum) == (0, 0)
    lb.apply(renew.reports[0], store.commit(0, renew.reports[0]), T0 + 310)
    assert isinstance(lb.reserve_or_lease([("k", LIMITS)], 10, T0 + 10), Reservation)


def test_a_past_periods_lease_is_returned_and_forgotten() -> None:
    store = Store({"k": LIMITS})
    lb = LeasedBudget()
    needed = lb.reserve_or_lease([("k", LIMITS)], 30, T0)
    assert isinstance(needed, LeaseNeeded)
    lb.apply(needed.reports[0], store.commit(0, needed.reports[0]), T0 + 300)
    r = lb.reserve_or_lease([("k", LIMITS)], 30, T0)
    assert isinstance(r, Reservation)
    tomorrow = T0 + DAY
    lb.settle(r, 25, tomorrow)
    reports = sorted(lb.sync(tomorrow), key=lambda x: x.slot.period_id)
    assert [(x.slot.period_id, x.used, x.returned) for x in reports] == [
        ("2025-03", 25, 0),
        ("2025-03-14", 25, 5),
    ]
    for report in reports:
        lb.apply(report, store.commit(0, report), tomorrow + 300)
    assert list(lb._entries) == [Slot("k", Period.MONTH, "2025-03")]  # the past day is gone
    assert (store.spent[reports[1].slot], store.leased(reports[1].slot)) == (25, 0)
