"""Budgets across several workers: strict over real processes, kept over a restart, reset by a
new UTC day; no reservation or lease left behind after a drain."""

from __future__ import annotations

import calendar
import signal
import threading
from pathlib import Path

import apsw
import httpx
import trio

from circuitd.store.leases import boot_id
from circuitd.store.sqlite import Database
from tests.e2e.serving import Clock, gateway_at
from tests.e2e.test_admission import ALICE, CONFIG
from tests.e2e.test_metrics import samples, value
from tests.processes import reaped, start


# test_admission's key and model (a worst case of a few hundred µUSD), with several workers:
# the lease path.
def config(daily: float, workers: int = 2) -> str:
    return CONFIG.format(daily=daily, extra=f"\n[server]\nworkers = {workers}\n")


CHAT = {
    "model": "dear",
    "messages": [{"role": "user", "content": "spend"}],
    "max_tokens": 10,
    "mock": {"tokens": 10},
}


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    connection = apsw.Connection(str(db))
    try:
        return list(connection.execute(sql))
    finally:
        connection.close()


def ledger_state(db: Path, day: str | None = None) -> tuple[int, int, list[tuple[object, ...]]]:
    """(sum of the rows' cost, the shared ledger's spend for the day, leases left)."""
    where = f"WHERE key_id = 'alice' AND substr(timestamp, 1, 10) = '{day}'" if day else ""
    [(rows,)] = query(db, f"SELECT coalesce(sum(cost_micro_usd), 0) FROM requests {where}")
    slot = f"AND period_id = '{day}'" if day else ""
    [(ledger,)] = query(
        db,
        "SELECT coalesce(sum(spent_micro_usd), 0) FROM budget_slots "
        f"WHERE subject = 'alice' AND period = 'day' {slot}",
    )
    return int(rows), int(ledger), query(db, "SELECT * FROM budget_leases")  # type: ignore[arg-type]


async def test_two_worker_processes_never_overshoot_a_budget(tmp_path: Path) -> None:
    limit_usd = 0.004
    path = tmp_path / "circuitd.toml"
    path.write_text(config(limit_usd))
    process, url = start(tmp_path, "--config", str(path), CIRCUIT_API_KEYS="")
    # 200 calls log more than a pipe holds: keep reading, or the workers block on stderr.
    assert process.stderr is not None
    threading.Thread(target=process.stderr.read, daemon=True).start()
    answers: list[httpx.Response] = []
    with reaped(process):
        async with httpx.AsyncClient(
            base_url=url, limits=httpx.Limits(max_connections=200), timeout=60
        ) as client:

            async def one() -> None:
                answers.append(await client.post("/v1/chat/completions", json=CHAT, headers=ALICE))

            async with trio.open_nursery() as nursery:
                for _ in range(200):
                    nursery.start_soon(one)
            found = samples((await client.get("/metrics")).text)  # both workers' samples
        process.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(process.wait) == 0
    ok = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(ok) + len(refused) == 200
    assert 0 < len(ok) < 200
    assert {a.json()["error"]["code"] for a in refused} == {"budget_exceeded"}
    for answer in refused:  # short of lease: worth a retry within a minute; else at the reset
        message, wait = answer.json()["error"]["message"], int(answer.headers["retry-after"])
        assert (1 <= wait <= 60) if "other workers" in message else "resets in" in message
    assert value(found, "circuitd_budget_lease_exchanges_total", result="ok") >= 2
    assert value(found, "circuitd_budget_lease_exchanges_total", result="failed") == 0
    db = tmp_path / "ledger.db"
    rows, ledger, leases = ledger_state(db)
    assert rows <= limit_usd * 1_000_000  # strict across processes
    assert ledger == rows  # the shared ledger equals the sum of the rows
    assert leases == []  # every lease returned at the drain
    [(statuses,)] = query(db, "SELECT group_concat(DISTINCT status) FROM requests")
    assert set(str(statuses).split(",")) == {"ok", "refused"}
    assert len(query(db, "SELECT 1 FROM requests WHERE status = 'ok'")) == len(ok)


async def test_leased_spend_survives_a_restart_and_a_new_day_resets_it(tmp_path: Path) -> None:
    text = config(0.002)  # several workers: the lease path
    clock = Clock(calendar.timegm((2026, 11, 29, 23, 0, 0)))
    statuses: list[int] = []
    # Two workers of one daemon, in this process, sharing the ledger file.
    async with (
        gateway_at(tmp_path, text, clock) as (first, _),
        gateway_at(tmp_path, text, clock) as (second, _),
        httpx.AsyncClient() as client,
    ):
        for i in range(10):
            url = (first, second)[i % 2]
            answer = await client.post(f"{url}/v1/chat/completions", json=CHAT, headers=ALICE)
            statuses.append(answer.status_code)
    assert statuses[:2] == [200, 200] and statuses[-1] == 429
    db = tmp_path / "ledger.db"
    rows, ledger, leases = ledger_state(db, "2026-11-29")
    assert 0 < rows <= 2000 and ledger == rows and leases == []

    async with (
        gateway_at(tmp_path, text, clock) as (again, _),
        httpx.AsyncClient(base_url=again) as client,
    ):
        refused = await client.post("/v1/chat/completions", json=CHAT, headers=ALICE)
        assert refused.status_code == 429  # the day's spend came back
        assert refused.json()["error"]["code"] == "budget_exceeded"
        [day, _month] = (await client.get("/v1/usage", headers=ALICE)).json()["budgets"]
        assert (round(day["spent_usd"] * 1e6), day["reserved_usd"]) == (rows, 0)

        clock.now += 3600  # 00:00 UTC: a new day, same month
        fresh = await client.post("/v1/chat/completions", json=CHAT, headers=ALICE)
        assert fresh.status_code == 200
        [day, month] = (await client.get("/v1/usage", headers=ALICE)).json()["budgets"]
        assert 0 < round(day["spent_usd"] * 1e6) < rows
        assert round(month["spent_usd"] * 1e6) == rows + round(day["spent_usd"] * 1e6)
    today, today_ledger, leases = ledger_state(db, "2026-11-30")
    assert 0 < today == today_ledger and leases == []
    assert ledger_state(db, "2026-11-29")[:2] == (rows, rows)  # yesterday untouched


async def test_a_crashed_workers_lease_is_reclaimed_at_the_next_start(tmp_path: Path) -> None:
    text = config(0.002)
    clock = Clock(calendar.timegm((2026, 11, 29, 12, 0, 0)))
    dead = await trio.lowlevel.open_process(["true"])  # a pid gone before circuitd starts
    await dead.wait()
    Database.open(tmp_path / "ledger.db").close()
    # A worker killed while holding the whole day's budget, its lease not expired yet.
    with Database.open(tmp_path / "ledger.db") as db, db.transaction() as conn:
        conn.execute(
            "INSERT INTO budget_leases VALUES ('alice', 'day', '2026-11-29', 'crashed', ?, ?, "
            "2000, ?)",
            (boot_id(), dead.pid, clock.now + 300),
        )
    async with (
        gateway_at(tmp_path, text, clock) as (url, _),
        httpx.AsyncClient(base_url=url) as client,
    ):
        answer = await client.post("/v1/chat/completions", json=CHAT, headers=ALICE)
        assert answer.status_code == 200  # the dead worker's lease was freed at start
    rows, ledger, leases = ledger_state(tmp_path / "ledger.db", "2026-11-29")
    assert 0 < rows == ledger and leases == []
