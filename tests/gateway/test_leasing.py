"""The worker side of leasing (gateway.leasing) over a real SQLite file, on trio."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio
import trio.testing

from circuitd.core.budget import Alert, BudgetLimits, Period, Refusal, Reservation, period_id
from circuitd.core.lease import LeasedBudget, LeasePolicy
from circuitd.gateway.leasing import SharedBudget
from circuitd.store.leases import Holder, LeaseStore
from circuitd.store.sqlite import Database

T = TypeVar("T")
NOW = 1_795_000_000.0
ACCOUNTS = [("k", BudgetLimits(daily_micro_usd=1000))]
POLICY = LeasePolicy(divisor=10)


async def inline(fn: Callable[[], T]) -> T:
    await trio.lowlevel.checkpoint()  # like a thread hop: other tasks run meanwhile
    return fn()


def shared(
    tmp_path: Path,
    name: str,
    alerts: list[Alert] | None = None,
    on_sync: Callable[[], None] = lambda: None,
) -> SharedBudget:
    store = LeaseStore.open(tmp_path / "ledger.db", Holder(name, "boot", 1), POLICY, (50,))
    return SharedBudget(
        LeasedBudget(lease_policy=POLICY),
        store,
        wall_clock=lambda: NOW,
        on_alert=(alerts if alerts is not None else []).append,
        on_sync=on_sync,
        run_sync=inline,
    )


def store_state(tmp_path: Path) -> tuple[int, int]:
    """(spent reported for today, Σ leases)."""
    with Database.open(tmp_path / "ledger.db") as db:
        [(spent,)] = db.query(
            "SELECT coalesce(sum(spent_micro_usd), 0) FROM budget_slots "
            "WHERE period = 'day' AND period_id = ?",
            (period_id(Period.DAY, NOW),),
        )
        [(leased,)] = db.query("SELECT coalesce(sum(held_micro_usd), 0) FROM budget_leases")
    return spent, leased


async def test_concurrent_calls_in_two_workers_share_the_limit(tmp_path: Path) -> None:
    alerts: list[Alert] = []
    workers = [shared(tmp_path, "a", alerts), shared(tmp_path, "b", alerts)]
    granted: list[tuple[SharedBudget, Reservation]] = []
    refused = 0

    async def call(worker: SharedBudget) -> None:
        nonlocal refused
        decision = await worker.reserve(ACCOUNTS, 70, NOW)
        if isinstance(decision, Reservation):
            granted.append((worker, decision))
        else:
            refused += 1

    async with trio.open_nursery() as nursery:
        for i in range(40):
            nursery.start_soon(call, workers[i % 2])
    assert len(granted) + refused == 40
    # never over (15 x 70 > 1000); at most one call's worth short per worker's stranded lease
    assert 12 <= len(granted) <= 14
    for worker, reservation in granted:
        worker.ledger.settle(reservation, 70, NOW)
    async with trio.open_nursery() as nursery:
        for worker in workers:
            nursery.start_soon(worker.run)
        await trio.testing.wait_all_tasks_blocked()
        for worker in workers:
            worker.close()  # the last sync reports spend and returns every lease
    assert store_state(tmp_path) == (70 * len(granted), 0)
    assert [a.percent for a in alerts] == [50]  # raised once, by the store's transaction


async def test_a_failing_store_refuses_calls_that_need_a_lease(tmp_path: Path) -> None:
    worker = shared(tmp_path, "a")

    def broken(*args: object) -> None:
        raise OSError("disk gone")

    worker._store.exchange = broken  # type: ignore[method-assign,assignment]
    decision = await worker.reserve(ACCOUNTS, 70, NOW)
    assert isinstance(decision, Refusal) and decision.lease_short  # fail closed
    assert worker.failures == 1
    assert worker.ledger.outstanding == 0


async def test_a_call_cancelled_while_leasing_leaves_the_lease_applied(tmp_path: Path) -> None:
    worker = shared(tmp_path, "a")
    decision = None
    with trio.CancelScope() as scope:
        scope.cancel()
        decision = await worker.reserve(ACCOUNTS, 70, NOW)  # the exchange is shielded ...
        await trio.lowlevel.checkpoint()  # ... so the cancellation lands at the next checkpoint
    assert scope.cancelled_caught
    assert isinstance(decision, Reservation)  # admission hands it on; settlement releases it
    worker.ledger.release(decision)
    slot = next(iter(worker.ledger.snapshot(NOW))).slot
    assert worker.ledger.lease(slot) == 100  # the exchange ran and was applied (shielded)
    assert store_state(tmp_path) == (0, 100)
    assert worker._in_flight == {}  # nobody is left waiting for it


async def test_a_worker_sees_the_spend_other_workers_reported(tmp_path: Path) -> None:
    a, b = shared(tmp_path, "a"), shared(tmp_path, "b")
    mine = await b.reserve(ACCOUNTS, 70, NOW)
    assert isinstance(mine, Reservation)
    b.ledger.settle(mine, 30, NOW)  # settled here, not reported yet
    theirs = await a.reserve(ACCOUNTS, 70, NOW)
    assert isinstance(theirs, Reservation)
    a.ledger.settle(theirs, 50, NOW)
    await a.sync()  # a reports its 50
    assert b.ledger.usage("k", NOW)[0].spent == 30
    await b.observe()
    assert b.ledger.usage("k", NOW)[0].spent == 80  # 50 reported by a + 30 of its own
    await b.sync()
    await b.observe()
    assert b.ledger.usage("k", NOW)[0].spent == 80  # reported now: still counted once


async def test_close_during_a_round_still_returns_every_lease(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    rounds: list[None] = []
    worker = shared(tmp_path, "a", on_sync=lambda: (rounds.append(None), worker.close())[0])
    reservation = await worker.reserve(ACCOUNTS, 70, NOW)
    assert isinstance(reservation, Reservation)
    worker.ledger.release(reservation)
    assert store_state(tmp_path) == (0, 100)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)  # closed at the end of its first round, then returns
    assert len(rounds) == 1
    assert store_state(tmp_path) == (0, 0)
