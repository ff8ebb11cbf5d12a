"""The SQLite lease shell: exchanges, dead holders, reconciliation with the roll-ups."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from circuitd.core.budget import Period, Slot, period_id
from circuitd.core.lease import LeasePolicy, LeaseReport
from circuitd.store.leases import Holder, LeaseStore, current_spend
from circuitd.store.sqlite import Database
from tests.store.factory import make_row

NOW = 1_795_000_000.0  # 2026-11-18T...Z
DAY = period_id(Period.DAY, NOW)
SLOT = Slot("key-a", Period.DAY, DAY)
POLICY = LeasePolicy(ttl_s=300.0, grace_s=900.0)


def store(path: Path, holder: Holder, percents: tuple[int, ...] = ()) -> LeaseStore:
    return LeaseStore.open(path / "ledger.db", holder, POLICY, percents)


def ask(request: int, *, used: int = 0, returned: int = 0, minimum: int = 0) -> LeaseReport:
    return LeaseReport(SLOT, 1000, used, returned, request, minimum)


def leases(path: Path) -> dict[str, int]:
    with Database.open(path / "ledger.db") as db:
        rows = db.query("SELECT holder, held_micro_usd FROM budget_leases")
    return {holder: held for holder, held in rows}


def spent(path: Path) -> int:
    with Database.open(path / "ledger.db") as db:
        rows = db.query("SELECT spent_micro_usd FROM budget_slots WHERE subject = 'key-a'")
    return sum(s for (s,) in rows)


def test_grants_are_capped_by_what_other_holders_hold(tmp_path: Path) -> None:
    a = store(tmp_path, Holder("a", "boot", 1))
    b = store(tmp_path, Holder("b", "boot", 2))
    [(first, _)] = a.exchange([ask(700)], NOW)
    [(second, _)] = b.exchange([ask(700)], NOW)
    [(third, _)] = b.exchange([ask(700, minimum=301)], NOW)  # less free than the call needs
    assert (first.granted, second.granted, third.granted) == (700, 300, 0)
    assert leases(tmp_path) == {"a": 700, "b": 300}
    # a reports 500 spent and returns the rest: its lease row goes, spend is recorded
    [(back, _)] = a.exchange([ask(0, used=500, returned=200)], NOW)
    assert (back.spent, back.held) == (500, 0)
    assert (leases(tmp_path), spent(tmp_path)) == ({"b": 300}, 500)
    a.close()
    b.close()


def test_a_lease_not_renewed_is_free_only_after_the_grace(tmp_path: Path) -> None:
    a = store(tmp_path, Holder("a", "boot", 1))
    b = store(tmp_path, Holder("b", "boot", 2))
    a.exchange([ask(1000)], NOW)
    expired = NOW + POLICY.ttl_s + POLICY.grace_s  # expires_at + grace
    [(early, _)] = b.exchange([ask(100)], expired)  # on the edge: still held
    [(late, _)] = b.exchange([ask(100)], expired + 1)
    assert (early.granted, late.granted) == (0, 100)
    assert leases(tmp_path) == {"b": 100}


def holders(path: Path) -> list[str]:
    with Database.open(path / "ledger.db") as db:
        return [h for (h,) in db.query("SELECT holder FROM budget_holders ORDER BY 1")]


def test_join_forgets_holders_that_are_gone_and_frees_their_leases(tmp_path: Path) -> None:
    dead = store(tmp_path, Holder("dead", "boot-2", 12))
    dead.join(NOW, alive=lambda pid: True)
    dead.exchange([ask(100)], NOW)
    store(tmp_path, Holder("old-boot", "boot-1", 11)).exchange([ask(100)], NOW)
    alive = store(tmp_path, Holder("alive", "boot-2", 13))
    alive.exchange([ask(100)], NOW)  # holds a lease without having joined: still counts
    me = store(tmp_path, Holder("me", "boot-2", 14))
    freed, alone = me.join(NOW, alive=lambda pid: pid != 12)
    assert (freed, alone) == (2, False)
    assert leases(tmp_path) == {"alive": 100}
    assert holders(tmp_path) == ["me"]
    me.exchange([ask(100)], NOW)
    me.leave()
    assert (leases(tmp_path), holders(tmp_path)) == ({"alive": 100}, [])


def rollups_and_reports(path: Path) -> LeaseStore:
    """Rows of 300 µUSD for key-a; key-b: rows of 50, 80 reported (rows still queued)."""
    day = DAY + "T01:00:00.000Z"
    with Database.open(path / "ledger.db") as db:
        db.write_batch([make_row(i, timestamp=day, cost_micro_usd=100) for i in range(3)])
        db.write_batch([make_row(9, timestamp=day, key_id="key-b", cost_micro_usd=50)])
    reporter = store(path, Holder("reporter", "boot", 1))
    reporter.exchange([LeaseReport(Slot("key-b", Period.DAY, DAY), None, 80, 0, 0, 0)], NOW)
    return reporter


def reported(path: Path) -> list[tuple[object, ...]]:
    with Database.open(path / "ledger.db") as db:
        return db.query("SELECT subject, period, spent_micro_usd FROM budget_slots ORDER BY 1, 2")


def test_the_first_worker_to_join_reconciles_with_the_rollups(tmp_path: Path) -> None:
    rollups_and_reports(tmp_path).close()
    first = store(tmp_path, Holder("a", "boot", 1))
    assert first.join(NOW, alive=lambda pid: True) == (0, True)
    expected = [("key-a", "day", 300), ("key-a", "month", 300), ("key-b", "day", 80)]
    expected.append(("key-b", "month", 50))  # the larger of rows and reports, per slot
    assert reported(tmp_path) == expected
    with Database.open(tmp_path / "ledger.db") as db:  # a single worker seeds the same way
        assert current_spend(db, NOW) == [("key-a", 300, 300), ("key-b", 80, 50)]


def test_no_reconciling_while_another_worker_lives(tmp_path: Path) -> None:
    # Its rows may be written before it reports their spend: raising to the rows now would
    # count them twice at its next report.
    live = rollups_and_reports(tmp_path)
    live.join(NOW, alive=lambda pid: True)  # (reconciles: it is alone)
    live.exchange([LeaseReport(Slot("key-c", Period.DAY, DAY), None, 0, 0, 0, 0)], NOW)
    with Database.open(tmp_path / "ledger.db") as db:
        db.write_batch([make_row(20, timestamp=DAY + "T02:00:00.000Z", key_id="key-c")])
    second = store(tmp_path, Holder("b", "boot", 2))
    assert second.join(NOW, alive=lambda pid: True) == (0, False)
    assert ("key-c", "day", 0) in reported(tmp_path)  # the live worker reports it itself


def test_alerts_are_raised_by_the_transaction_that_crosses_them(tmp_path: Path) -> None:
    s = store(tmp_path, Holder("a", "boot", 1), percents=(50, 80, 95))
    s.exchange([ask(1000)], NOW)
    [(_, none)] = s.exchange([ask(0, used=400)], NOW)
    [(_, two)] = s.exchange([ask(0, used=450)], NOW)
    assert none == ()
    assert [(a.percent, a.spent, a.limit, a.slot) for a in two] == [
        (50, 850, 1000, SLOT),
        (80, 850, 1000, SLOT),
    ]


def test_holders_in_threads_never_lease_more_than_the_limit(tmp_path: Path) -> None:
    """Real concurrency: each thread has its own connection, as each worker process does."""
    Database.open(tmp_path / "ledger.db").close()  # migrate once, up front
    granted: list[int] = []
    errors: list[BaseException] = []

    def holder(i: int) -> None:
        rng = random.Random(i)
        s = store(tmp_path, Holder(f"h{i}", "boot", 100 + i))
        held = 0
        try:
            for _ in range(40):
                used = rng.randint(0, held)
                [(result, _)] = s.exchange([ask(rng.randint(1, 120), used=used)], NOW)
                held = result.held
                granted.append(result.granted)
        except BaseException as exc:
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=holder, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(granted) > 0
    assert spent(tmp_path) + sum(leases(tmp_path).values()) <= 1000
