"""Budgets and rate limits at the door: strict under concurrency, kept over a restart."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio
import trio.testing

from tests.harness import running_gateway

ALICE = {"authorization": "Bearer ka"}

# The mock answers `tokens` words; with max_tokens 10 the worst case of a call is
# prompt * $10/M + 10 * $30/M. The budget fits a handful of calls, not 200.
CONFIG = """
[providers.mock]
kind = "mock"

[models.dear]
deployments = [{{ provider = "mock", input_usd_per_mtok = 10.0, output_usd_per_mtok = 30.0 }}]

[[keys]]
id = "alice"
key = "ka"
daily_usd_limit = {daily}
{extra}
"""


def chat(**extra: object) -> dict[str, object]:
    return {
        "model": "dear",
        "messages": [{"role": "user", "content": "spend"}],
        "max_tokens": 10,
        "mock": {"tokens": 10, "latency_ms": 20},
        **extra,
    }


async def test_concurrent_calls_never_overshoot_the_budget(tmp_path: Path) -> None:
    limit_usd = 0.004
    async with (
        running_gateway(tmp_path, config_text=CONFIG.format(daily=limit_usd, extra="")) as gw,
        httpx.AsyncClient(
            base_url=gw.url, limits=httpx.Limits(max_connections=200), timeout=60
        ) as client,
    ):
        answers: list[httpx.Response] = []

        async def one() -> None:
            answers.append(await client.post("/v1/chat/completions", json=chat(), headers=ALICE))

        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()  # every call settled
        usage = (await client.get("/v1/usage", headers=ALICE)).json()
        await gw.drain()
    ok = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(ok) + len(refused) == 200
    assert 0 < len(ok) < 200
    assert {a.json()["error"]["code"] for a in refused} == {"budget_exceeded"}
    assert all(int(a.headers["retry-after"]) >= 1 for a in refused)
    rows = gw.rows()
    spent = sum(r["cost_micro_usd"] for r in rows)
    assert spent <= limit_usd * 1_000_000  # strict: never over, whatever the concurrency
    assert len([r for r in rows if r["status"] == "ok"]) == len(ok)
    assert len([r for r in rows if r["status"] == "refused"]) == len(refused)
    [day, month] = usage["budgets"]
    assert (day["period"], month["period"]) == ("day", "month")
    assert day["reserved_usd"] == 0  # no reservation left behind
    assert round(day["spent_usd"] * 1e6) == spent


async def test_spend_survives_a_restart(tmp_path: Path) -> None:
    text = CONFIG.format(daily=0.002, extra="")
    async with (
        running_gateway(tmp_path, config_text=text) as first,
        httpx.AsyncClient(base_url=first.url) as client,
    ):
        statuses = [
            (await client.post("/v1/chat/completions", json=chat(), headers=ALICE)).status_code
            for _ in range(10)
        ]
        await first.drain()
    assert statuses[0] == 200 and statuses[-1] == 429
    spent = sum(r["cost_micro_usd"] for r in first.rows())
    async with (
        running_gateway(tmp_path, config_text=text) as second,
        httpx.AsyncClient(base_url=second.url) as client,
    ):
        again = await client.post("/v1/chat/completions", json=chat(), headers=ALICE)
        assert again.status_code == 429  # the day's spend came back from the roll-ups
        assert again.json()["error"]["code"] == "budget_exceeded"
        usage = (await client.get("/v1/usage", headers=ALICE)).json()
        assert round(usage["budgets"][0]["spent_usd"] * 1e6) == spent


async def test_a_call_whose_worst_case_exceeds_the_budget_is_refused(tmp_path: Path) -> None:
    async with (
        running_gateway(tmp_path, config_text=CONFIG.format(daily=0.001, extra="")) as gw,
        httpx.AsyncClient(base_url=gw.url) as client,
    ):
        huge = await client.post(
            "/v1/chat/completions", json=chat(max_tokens=100_000), headers=ALICE
        )
        assert huge.status_code == 429
        assert "lower max_tokens" in huge.json()["error"]["message"]
        fine = await client.post("/v1/chat/completions", json=chat(), headers=ALICE)
        assert fine.status_code == 200


async def test_rate_limits_answer_429_with_headers(tmp_path: Path) -> None:
    text = CONFIG.format(daily=100, extra="rpm = 3")
    async with (
        running_gateway(tmp_path, config_text=text) as gw,
        httpx.AsyncClient(base_url=gw.url) as client,
    ):
        answers = [
            await client.post("/v1/chat/completions", json=chat(), headers=ALICE) for _ in range(4)
        ]
        streamed = await client.post("/v1/chat/completions", json=chat(stream=True), headers=ALICE)
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers[:3]] == ["2", "1", "0"]
    assert all(a.headers["x-ratelimit-limit-requests"] == "3" for a in answers)
    refused = answers[3]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert "x-ratelimit-reset-requests" in refused.headers
    assert streamed.status_code == 429
