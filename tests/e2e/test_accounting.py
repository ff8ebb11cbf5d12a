"""Accounting: provider usage vs. estimates, prices from the config, unpriced models."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio.testing

from circuitd.core.pricing import Price, cost_micro_usd
from tests.harness import running_gateway

AUTH = {"authorization": "Bearer k"}
MESSAGES = [{"role": "user", "content": "Estimate me, please: how many tokens is this?"}]

CONFIG = """
[pricing.models."house-model"]
input_usd_per_mtok = 2.0
output_usd_per_mtok = 8.0

[providers.mock]
kind = "mock"

[models.house]
deployments = [{ provider = "mock", model = "house-model" }]

[models.mystery]
deployments = [{ provider = "mock", model = "no-such-model" }]

[[keys]]
id = "k"
key = "k"
"""


async def test_estimates_when_the_provider_gives_no_usage(tmp_path: Path) -> None:
    price = Price(input_usd_per_mtok=2.0, output_usd_per_mtok=8.0)
    async with (
        running_gateway(tmp_path, config_text=CONFIG) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        for stream in (False, True):
            body = {"model": "house", "messages": MESSAGES, "stream": stream}
            with_usage = await client.post("/v1/chat/completions", json=body, headers=AUTH)
            without = await client.post(
                "/v1/chat/completions", json={**body, "mock": {"omit_usage": True}}, headers=AUTH
            )
            assert with_usage.status_code == without.status_code == 200
        await gateway.drain()
    rows = gateway.rows()
    assert [(r["stream"], r["usage_source"]) for r in rows] == [
        (0, "provider"),
        (0, "estimated"),
        (1, "provider"),
        (1, "estimated"),
    ]
    for row in rows:
        # The config's price, applied exactly (rounded up to the micro-dollar).
        expected = cost_micro_usd(
            price, input_tokens=row["tokens_input"], output_tokens=row["tokens_output"]
        )
        assert row["cost_micro_usd"] == expected > 0
    provider_json, estimated_json = rows[0], rows[1]
    # Same answer, counted two ways: the estimate is within a third of the provider's count.
    assert abs(estimated_json["tokens_output"] - provider_json["tokens_output"]) <= (
        provider_json["tokens_output"] / 3
    )


async def test_unpriced_models_cost_zero_and_are_counted(tmp_path: Path) -> None:
    async with (
        running_gateway(tmp_path, config_text=CONFIG) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        body = {"model": "mystery", "messages": MESSAGES}
        assert (await client.post("/v1/chat/completions", json=body, headers=AUTH)).is_success
        await trio.testing.wait_all_tasks_blocked()  # the call is settled after its response
        metrics = (await client.get("/metrics")).text
        await gateway.drain()
    [row] = gateway.rows()
    assert row["tokens_output"] > 0 and row["cost_micro_usd"] == 0
    line = 'circuitd_unpriced_calls_total{model="mystery",provider="mock"} 1.0'
    assert line in metrics

    second = tmp_path / "second"
    second.mkdir()
    priced = CONFIG.replace(
        "[providers.mock]",
        "[pricing.unknown_model]\ninput_usd_per_mtok = 1.0\noutput_usd_per_mtok = 1.0\n\n"
        "[providers.mock]",
    )
    async with (
        running_gateway(second, config_text=priced) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        assert (await client.post("/v1/chat/completions", json=body, headers=AUTH)).is_success
        await gateway.drain()
    [row] = gateway.rows()
    assert row["cost_micro_usd"] == row["tokens_input"] + row["tokens_output"]
