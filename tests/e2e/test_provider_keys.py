"""Presets and several keys against the mock upstream: Azure's request shape (classic
deployments API and v1), round-robin across keys, and a revoked key whose breaker opens while
the other key keeps serving — with no key in any name, header, metric or log line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio

from circuitd.core.keys import fingerprint
from circuitd.mockupstream.testing import running_mock_upstream
from circuitd.providers.openai_presets import AZURE_API_VERSION
from tests.e2e.conftest import upstream_requests
from tests.harness import running_gateway

AZURE_KEY = "azure-key-0123456789abcdef"
GOOD, REVOKED = "sk-good-key-aaaaaaaaaaaa", "sk-revoked-key-bbbbbbbbbbbb"
MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]

AZURE_CONFIG = """
[providers.azure]
kind = "openai"
preset = "azure"
base_url = "{base_url}"
api_key = "{key}"

[models."gpt-4o"]
deployments = [{{ provider = "azure", model = "prod-gpt4o" }}]

[models.emb]
deployments = [{{ provider = "azure", model = "prod-embed" }}]

[pricing.models]  # Azure deployment names are the operator's: priced here
prod-gpt4o = {{ input_usd_per_mtok = 2.5, output_usd_per_mtok = 10.0 }}
prod-embed = {{ input_usd_per_mtok = 0.02, output_usd_per_mtok = 0.0 }}
"""


def headers_of(request: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in request["headers"]}


@pytest.mark.parametrize("api", ["deployments", "v1"])
async def test_azure_request_shape(tmp_path: Path, api: str) -> None:
    with running_mock_upstream(require_key=AZURE_KEY) as root:
        base_url = root if api == "deployments" else root + "/openai/v1"
        text = AZURE_CONFIG.format(base_url=base_url, key=AZURE_KEY)
        async with running_gateway(tmp_path, config_text=text) as gateway:
            client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="-", max_retries=0)
            chat = await trio.to_thread.run_sync(
                lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            )
            vectors = await trio.to_thread.run_sync(
                lambda: client.embeddings.create(model="emb", input="hello", dimensions=4)
            )
            await gateway.drain()
        seen = upstream_requests(root + "/v1")
    assert chat.choices[0].message.content and len(vectors.data[0].embedding) == 4
    if api == "deployments":
        assert [(r["path"], r["query"]) for r in seen] == [
            ("/openai/deployments/prod-gpt4o/chat/completions", f"api-version={AZURE_API_VERSION}"),
            ("/openai/deployments/prod-embed/embeddings", f"api-version={AZURE_API_VERSION}"),
        ]
    else:
        assert [(r["path"], r["query"]) for r in seen] == [
            ("/openai/v1/chat/completions", ""),
            ("/openai/v1/embeddings", ""),
        ]
    for request in seen:
        headers = headers_of(request)
        assert headers["api-key"] == AZURE_KEY and "authorization" not in headers
    assert [r["body"]["model"] for r in seen] == ["prod-gpt4o", "prod-embed"]
    rows = gateway.rows()
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(r["cost_micro_usd"] > 0 for r in rows)  # type: ignore[operator]


async def test_calls_alternate_between_keys(tmp_path: Path) -> None:
    with running_mock_upstream() as root:
        env = {"PROVIDER": "OPENAI", "OPENAI_BASE_URL": root + "/v1", "OPENAI_API_KEY": "k1,k2"}
        async with running_gateway(tmp_path, env=env) as gateway:
            async with httpx.AsyncClient(base_url=gateway.url) as client:
                for _ in range(4):
                    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
                    response = await client.post("/v1/chat/completions", json=body)
                    assert response.status_code == 200
            await gateway.drain()
        seen = upstream_requests(root + "/v1")
    keys = [headers_of(r)["authorization"] for r in seen]
    assert keys == ["Bearer k1", "Bearer k2", "Bearer k1", "Bearer k2"]
    deployments = [r["deployment"] for r in gateway.rows()]
    assert deployments[0] == f"openai/gpt-4o-mini#{fingerprint('k1')}"
    assert deployments[:2] == deployments[2:] and deployments[0] != deployments[1]


KEYS_CONFIG = """
[breaker]
minimum_calls = 2
failure_rate = 0.5
open_s = 100.0

[providers.openai]
kind = "openai"
base_url = "{root}/v1"
api_keys = ["{revoked}", "{good}"]

[passthrough]
provider = "openai"
"""


async def test_a_revoked_key_opens_its_breaker_while_the_other_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    revoked_name = f"openai/{{}}#{fingerprint(REVOKED)}"
    good_name = f"openai/{{}}#{fingerprint(GOOD)}"
    with running_mock_upstream(require_key=GOOD) as root:
        text = KEYS_CONFIG.format(root=root, revoked=REVOKED, good=GOOD)
        async with running_gateway(tmp_path, config_text=text) as gateway:
            client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="-", max_retries=0)
            for _ in range(6):
                await trio.to_thread.run_sync(
                    lambda: client.embeddings.create(model="text-embedding-3-small", input="x")
                )
                await trio.to_thread.run_sync(
                    lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                )
            async with httpx.AsyncClient(base_url=gateway.url) as http:
                health = (await http.get("/health")).text
                metrics = (await http.get("/metrics")).text
            await gateway.drain()
        seen = upstream_requests(root + "/v1")
    breakers = httpx.Response(200, text=health).json()["circuit_breakers"]
    for model in ("text-embedding-3-small", "gpt-4o-mini"):
        assert breakers[revoked_name.format(model)]["state"] == "open"
        assert breakers[good_name.format(model)]["state"] == "closed"
    # Each model's revoked key saw 2 calls (the breaker's minimum), then no more: its turns
    # (the 5th call of each model) went straight to the good key.
    refused = [r for r in seen if headers_of(r)["authorization"] == f"Bearer {REVOKED}"]
    assert len(refused) == 4 and len(seen) == 4 + 12
    rows = gateway.rows()
    assert len(rows) == 12 and {r["status"] for r in rows} == {"ok"}
    assert [r["attempts"] for r in rows] == [2, 2, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1]
    assert {r["deployment"] for r in rows} == {
        good_name.format("text-embedding-3-small"),
        good_name.format("gpt-4o-mini"),
    }
    assert 'circuitd_breaker_state{deployment="' + revoked_name.format("gpt-4o-mini") in metrics
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "breaker" in logged
    for secret in (GOOD, REVOKED):
        for where in (health, metrics, logged):
            assert secret not in where and secret[-8:] not in where


STORM_CONFIG = """
[breaker]
minimum_calls = 2
failure_rate = 0.5
open_s = 100.0

[retry]
max_attempts = 2
base_s = 0.001
max_backoff_s = 0.002

[providers.openai]
kind = "openai"
base_url = "{root}/v1"
api_keys = ["k1", "k2"]

[models.emb]
deployments = [{{ provider = "openai", model = "text-embedding-3-small" }}]
"""


async def test_a_500_storm_on_one_key_opens_only_its_breaker(tmp_path: Path) -> None:
    with running_mock_upstream() as root:
        storm = {"fault": {"status": 500}, "count": None, "key": "k1"}
        async with running_gateway(tmp_path, config_text=STORM_CONFIG.format(root=root)) as gw:
            async with httpx.AsyncClient(base_url=gw.url) as client:
                queued = await client.post(f"{root}/_mock/faults", json=storm)
                assert queued.status_code == 200
                for _ in range(6):
                    response = await client.post(
                        "/v1/embeddings", json={"model": "emb", "input": "storm"}
                    )
                    assert response.status_code == 200
                health = (await client.get("/health")).json()
                stats = (await client.get(f"{root}/_mock/stats")).json()
            await gw.drain()
        seen = upstream_requests(root + "/v1")
    on_k1 = [r for r in seen if headers_of(r)["authorization"] == "Bearer k1"]
    assert len(on_k1) == 2 and stats["statuses"] == {"200": 6, "500": 2}
    # the first call retried k1 once, then k2 served; k1's turns after that were skipped
    assert [r["attempts"] for r in gw.rows()] == [3, 1, 1, 1, 1, 1]
    breakers = health["circuit_breakers"]
    k1, k2 = (f"openai/text-embedding-3-small#{fingerprint(k)}" for k in ("k1", "k2"))
    assert (breakers[k1]["state"], breakers[k2]["state"]) == ("open", "closed")
