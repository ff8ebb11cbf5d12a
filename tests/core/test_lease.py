"""The lease protocol (core.lease): pure functions, and processes sharing one store."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from circuitd.core.budget import (
    BudgetError,
    BudgetLimits,
    Period,
    Refusal,
    Reservation,
    Slot,
    day_of,
)
from circuitd.core.lease import (
    Exchange,
    LeasedBudget,
    LeaseNeeded,
    LeasePolicy,
    LeaseReport,
    exchange,
    grant,
    lease_request,
)
from tests.core.test_budget import DAY, LIMITS, T0

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


def test_observe_adds_other_processes_spend_and_never_lowers_it() -> None:
    store = Store({"k": LIMITS})
    lb = LeasedBudget()
    needed = lb.reserve_or_lease([("k", LIMITS)], 30, T0)
    assert isinstance(needed, LeaseNeeded)
    (report,) = needed.reports
    lb.apply(report, store.commit(0, report), T0 + 300)
    r = lb.reserve([("k", LIMITS)], 30, T0)
    assert isinstance(r, Reservation)
    lb.settle(r, 20, T0)  # unreported
    lb.observe(report.slot, 100)  # the store: 100 reported by others
    assert lb.usage("k", T0)[0].spent == 120
    lb.observe(report.slot, 50)  # an older read
    assert lb.usage("k", T0)[0].spent == 120
    lb.observe(Slot("other", Period.DAY, day_of(T0)), 10)  # a slot this process never used
    assert [u.slot.subject for u in lb.snapshot(T0)] == ["k", "k"]


def test_a_shortfall_the_store_refused_is_not_asked_again_until_the_next_sync() -> None:
    """An exhausted budget must not cost a store transaction per refused call."""
    store = Store({"k": LIMITS})
    other = LeasedBudget(lease_policy=LeasePolicy(divisor=1))  # holds the whole limit
    (taken,) = _leased(other, 1000)
    other.apply(taken, store.commit(1, taken), T0 + 300)
    lb = LeasedBudget()
    accounts = [("k", LIMITS)]
    needed = lb.reserve_or_lease(accounts, 40, T0)
    assert isinstance(needed, LeaseNeeded)
    (report,) = needed.reports
    lb.apply(report, store.commit(0, report), T0 + 300)
    assert store.held[0, report.slot] == 0  # nothing free
    for amount in (40, 500):  # as much or more: refused here, no exchange
        refusal = lb.reserve_or_lease(accounts, amount, T0)
        assert isinstance(refusal, Refusal) and refusal.lease_short
    assert isinstance(lb.reserve_or_lease(accounts, 10, T0), LeaseNeeded)  # less: ask
    lb.sync(T0 + 1)  # a sync round: the others may have returned lease since
    assert isinstance(lb.reserve_or_lease(accounts, 40, T0 + 1), LeaseNeeded)


def _leased(lb: LeasedBudget, amount: int) -> tuple[LeaseReport, ...]:
    needed = lb.reserve_or_lease([("k", LIMITS)], amount, T0)
    assert isinstance(needed, LeaseNeeded)
    return needed.reports
