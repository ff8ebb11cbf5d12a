"""POST /v1/embeddings through circuitd: the official `openai` SDK, the mock upstream (and the
in-process mock provider), one ledger row with usage and cost, errors, skipped providers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio

from circuitd.mockupstream.testing import running_mock_upstream
from tests.e2e.conftest import upstream_requests
from tests.harness import Running, running_gateway

CLIENT_KEY = "client-secret-key"
UPSTREAM_KEY = "upstream-provider-key"
MODEL = "text-embedding-3-small"
PRICE_PER_MTOK = 0.02  # circuitd/prices.toml


def env_for(upstream: str, provider: str = "OPENAI") -> dict[str, str]:
    return {
        "PROVIDER": provider,
        "OPENAI_BASE_URL": upstream,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "CIRCUIT_API_KEYS": CLIENT_KEY,
    }


def sdk(gateway: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def micro_usd(tokens: int, usd_per_mtok: float) -> int:
    return -(-tokens * round(usd_per_mtok * 1_000_000) // 1_000_000)


async def test_sdk_embeddings_with_usage_cost_and_one_row(tmp_path: Path, upstream: str) -> None:
    async with running_gateway(tmp_path, env=env_for(upstream)) as gateway:
        client = sdk(gateway)
        raw = await trio.to_thread.run_sync(
            lambda: client.embeddings.with_raw_response.create(
                model=MODEL, input=["circuit breakers", "budgets"], dimensions=8
            )
        )
        result = raw.parse()
        floats = await trio.to_thread.run_sync(
            lambda: client.embeddings.create(
                model=MODEL, input="circuit breakers", dimensions=8, encoding_format="float"
            )
        )
        await gateway.drain()
    assert [e.index for e in result.data] == [0, 1]
    assert all(len(e.embedding) == 8 for e in result.data)
    # base64 (the SDK's default) and floats decode to the same deterministic vector
    assert result.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert result.usage.prompt_tokens > 0
    meta = raw.http_response.json()["x_gateway"]
    assert meta["provider"] == "openai" and meta["attempts"] == 1
    assert raw.headers["x-circuit-deployment"] == f"openai/{MODEL}"
    seen = upstream_requests(upstream)
    assert [r["path"] for r in seen] == ["/v1/embeddings", "/v1/embeddings"]
    body = seen[0]["body"]
    assert isinstance(body, dict)
    assert body["input"] == ["circuit breakers", "budgets"] and body["dimensions"] == 8
    assert body["encoding_format"] == "base64"  # passed through untouched
    headers = {k.lower(): v for k, v in seen[0]["headers"]}  # type: ignore[union-attr]
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    first, second = gateway.rows()
    assert first["request_id"] == meta["request_id"]
    assert first["status"] == "ok" and first["usage_source"] == "provider"
    assert first["model"] == MODEL and first["stream"] == 0
    assert first["tokens_input"] == result.usage.prompt_tokens
    assert first["tokens_output"] == 0
    assert first["cost_micro_usd"] == micro_usd(result.usage.prompt_tokens, PRICE_PER_MTOK)
    assert second["tokens_input"] == floats.usage.prompt_tokens


async def test_in_process_mock_provider_answers_embeddings(tmp_path: Path) -> None:
    env = {"PROVIDER": "MOCK", "CIRCUIT_API_KEYS": CLIENT_KEY}
    async with running_gateway(tmp_path, env=env) as gateway:
        client = sdk(gateway)
        result = await trio.to_thread.run_sync(
            lambda: client.embeddings.create(model=MODEL, input=[[1, 2, 3], [4, 5]])
        )
        await gateway.drain()
    assert len(result.data) == 2 and len(result.data[0].embedding) == 1536
    assert result.usage.prompt_tokens == 5  # token ids count as they are
    [row] = gateway.rows()
    assert (row["status"], row["tokens_input"], row["provider"]) == ("ok", 5, "mock")
    assert row["cost_micro_usd"] == micro_usd(5, PRICE_PER_MTOK)


ERRORS_CONFIG = """
[providers.openai]
kind = "openai"
base_url = "{upstream}"
api_key = "{key}"

[providers.claude]
kind = "anthropic"
base_url = "{root}"
api_key = "{key}"

[models.emb]
deployments = [{{ provider = "openai", model = "text-embedding-3-small" }}]

[models.chat-only]
deployments = [{{ provider = "claude", model = "claude-haiku-4-5" }}]

[models.mixed]
deployments = [
  {{ provider = "claude", model = "claude-haiku-4-5" }},
  {{ provider = "openai", model = "text-embedding-3-small" }},
]

[[keys]]
id = "k"
key = "{client}"
"""


@pytest.mark.parametrize(
    ("body", "status", "param", "fragment"),
    [
        ({"model": "emb", "input": ""}, 400, "input", "empty string"),
        ({"model": "emb", "input": []}, 400, "input", "non-empty"),
        ({"model": "emb", "input": ["a", 1]}, 400, "input", "may not mix"),
        ({"model": "emb"}, 400, None, "missing required field `input`"),
        ({"model": "", "input": "x"}, 400, "model", "non-empty"),
        ({"model": "nope", "input": "x"}, 404, "model", "does not exist"),
        ({"model": "chat-only", "input": "x"}, 400, "model", "anthropic"),
    ],
)
async def test_bad_requests_are_refused_before_any_upstream_call(
    tmp_path: Path,
    upstream: str,
    body: dict[str, Any],
    status: int,
    param: str | None,
    fragment: str,
) -> None:
    text = ERRORS_CONFIG.format(
        upstream=upstream, root=upstream.removesuffix("/v1"), key=UPSTREAM_KEY, client=CLIENT_KEY
    )
    async with running_gateway(tmp_path, config_text=text) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            auth = {"authorization": f"Bearer {CLIENT_KEY}"}
            response = await client.post("/v1/embeddings", json=body, headers=auth)
            wrong_method = await client.get("/v1/embeddings", headers=auth)
            no_key = await client.post("/v1/embeddings", json={"model": "emb", "input": "x"})
        await gateway.drain()
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param and fragment in error["message"]
    assert error["type"] == "invalid_request_error"
    assert wrong_method.status_code == 405
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"
    assert upstream_requests(upstream) == []
    refused, unauthenticated = gateway.rows()  # refusals are settled too (405 is routing's)
    assert (refused["status"], refused["status_code"]) == ("refused", status)
    assert refused["cost_micro_usd"] == 0 and refused["key_id"] == "k"
    assert unauthenticated["status_code"] == 401


async def test_providers_without_embeddings_are_skipped(tmp_path: Path, upstream: str) -> None:
    text = ERRORS_CONFIG.format(
        upstream=upstream, root=upstream.removesuffix("/v1"), key=UPSTREAM_KEY, client=CLIENT_KEY
    )
    async with running_gateway(tmp_path, config_text=text) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            response = await client.post(
                "/v1/embeddings",
                json={"model": "mixed", "input": "x"},
                headers={"authorization": f"Bearer {CLIENT_KEY}"},
            )
        await gateway.drain()
    assert response.status_code == 200
    assert response.headers["x-circuit-deployment"] == "openai/text-embedding-3-small"
    assert [r["path"] for r in upstream_requests(upstream)] == ["/v1/embeddings"]
    [row] = gateway.rows()
    assert row["attempts"] == 1 and row["model"] == "mixed"


async def test_upstream_failure_falls_back_and_settles_once(tmp_path: Path) -> None:
    with (
        running_mock_upstream(status=503) as down,
        running_mock_upstream() as up,
    ):
        text = f"""
[retry]
max_attempts = 1
[providers.a]
kind = "openai"
base_url = "{down}/v1"
api_key = "x"
[providers.b]
kind = "openai"
base_url = "{up}/v1"
api_key = "y"
[models.emb]
deployments = [
  {{ provider = "a", model = "text-embedding-3-small" }},
  {{ provider = "b", model = "text-embedding-3-large" }},
]
"""
        async with running_gateway(tmp_path, config_text=text) as gateway:
            async with httpx.AsyncClient(base_url=gateway.url) as client:
                response = await client.post(
                    "/v1/embeddings", json={"model": "emb", "input": "fallback please"}
                )
            await gateway.drain()
    assert response.status_code == 200
    assert response.json()["model"] == "text-embedding-3-large"  # renamed for b
    assert response.headers["x-circuit-attempts"] == "2"
    [row] = gateway.rows()
    assert (row["status"], row["deployment"], row["attempts"]) == (
        "ok",
        "b/text-embedding-3-large",
        2,
    )
    assert row["cost_micro_usd"] == micro_usd(row["tokens_input"], 0.13)  # type: ignore[arg-type]


async def test_admission_counts_input_tokens_only(tmp_path: Path) -> None:
    """A chat call reserves its output cap too; an embeddings call only its input tokens,
    so a key with a 200-token TPM limit embeds but cannot chat with the default cap."""
    text = f"""
[limits]
tpm = 200
[providers.mock]
kind = "mock"
[models.emb]
deployments = [{{ provider = "mock", model = "text-embedding-3-small" }}]
[models.chat]
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]
[[keys]]
id = "k"
key = "{CLIENT_KEY}"
"""
    words = "one two three four five six seven eight nine ten"
    async with running_gateway(tmp_path, config_text=text) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            auth = {"authorization": f"Bearer {CLIENT_KEY}"}
            embedded = await client.post(
                "/v1/embeddings", json={"model": "emb", "input": words}, headers=auth
            )
            chat = {"model": "chat", "messages": [{"role": "user", "content": words}]}
            refused = await client.post("/v1/chat/completions", json=chat, headers=auth)
        await gateway.drain()
    assert embedded.status_code == 200
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    row = gateway.rows()[0]
    counted = 200 - int(embedded.headers["x-ratelimit-remaining-tokens"])
    assert 0 < counted < 20  # the input's estimate, no output cap
    assert row["tokens_output"] == 0 and row["usage_source"] == "provider"
