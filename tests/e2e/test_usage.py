"""GET /v1/usage and `circuitd usage`, read from the roll-ups after a restart."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from circuitd.cli import main
from tests.harness import running_gateway

CONFIG = """
[providers.mock]
kind = "mock"

[models.cheap]
deployments = [{ provider = "mock", input_usd_per_mtok = 1.0, output_usd_per_mtok = 2.0 }]

[models.dear]
deployments = [{ provider = "mock", input_usd_per_mtok = 10.0, output_usd_per_mtok = 30.0 }]

[[keys]]
id = "alice"
key = "ka"
daily_usd_limit = 5.0

[[keys]]
id = "bob"
key = "kb"
"""


def chat(model: str, tokens: int) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "count"}],
        "mock": {"tokens": tokens},
    }


async def test_usage_per_key_after_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = {"authorization": "Bearer ka"}, {"authorization": "Bearer kb"}
    async with (
        running_gateway(tmp_path, config_text=CONFIG) as first,
        httpx.AsyncClient(base_url=first.url) as client,
    ):
        for model, tokens, key in (("cheap", 10, alice), ("dear", 20, alice), ("cheap", 5, bob)):
            assert (
                await client.post("/v1/chat/completions", json=chat(model, tokens), headers=key)
            ).is_success
        await first.drain()
    rows = {(r["key_id"], r["model"]): r for r in first.rows()}
    # Hand-computed: a price of X USD per 1M tokens is X µUSD per token (whole numbers here).
    for (_, model), row in rows.items():
        per_in, per_out = (1, 2) if model == "cheap" else (10, 30)
        assert (
            row["cost_micro_usd"] == row["tokens_input"] * per_in + row["tokens_output"] * per_out
        )
    alice_cost = rows["alice", "cheap"]["cost_micro_usd"] + rows["alice", "dear"]["cost_micro_usd"]

    async with (
        running_gateway(tmp_path, config_text=CONFIG) as second,
        httpx.AsyncClient(base_url=second.url) as client,
    ):
        report = (await client.get("/v1/usage", headers=alice)).json()
        assert report["key_id"] == "alice"
        assert report["request_count"] == 2
        assert report["tokens_output"] == 30
        assert report["total_cost_usd"] == pytest.approx(alice_cost / 1e6)
        assert report["budget_usd"] == 5.0
        assert report["budget_spent_usd"] == pytest.approx(alice_cost / 1e6)
        assert report["budget_used_pct"] == pytest.approx(100 * alice_cost / 1e6 / 5.0, rel=1e-3)
        grouped = (await client.get("/v1/usage?group_by=model", headers=alice)).json()
        assert {g["group"]: g["request_count"] for g in grouped["data"]} == {"cheap": 1, "dear": 1}
        other = (await client.get("/v1/usage", headers=bob)).json()
        assert (other["request_count"], other["budget_usd"]) == (1, None)
        for bad in (
            "?group_by=colour",
            "?start=yesterday",
            "?start=2026-02-01&end=2026-01-01",
            "?x=1",
        ):
            response = await client.get(f"/v1/usage{bad}", headers=alice)
            assert response.status_code == 400, bad
            assert response.json()["error"]["code"] == "invalid_request_error"
        assert (await client.get("/v1/usage")).status_code == 401

    monkeypatch.setenv("CIRCUIT_DB", str(second.db_path))
    config_path = tmp_path / "circuitd.toml"
    assert main(["usage", "--config", str(config_path), "--group-by", "model", "--json"]) == 0
    everyone = json.loads(capsys.readouterr().out)
    assert everyone["request_count"] == 3
    assert {g["group"]: g["request_count"] for g in everyone["data"]} == {"cheap": 2, "dear": 1}
    assert main(["usage", "--config", str(config_path), "--key", "alice"]) == 0
    text = capsys.readouterr().out
    assert "key alice" in text and "5.00 USD daily budget" in text
