"""The mock's embeddings (official SDK) and Azure URL shapes, over a real socket."""

from __future__ import annotations

import base64
import math
import struct

import httpx
import openai
import pytest

from circuitd.mockupstream.azure import AzureRoute, azure_route
from circuitd.mockupstream.testing import running_mock_upstream

CHAT = "chat/completions"


def test_sdk_embeddings_are_deterministic_unit_vectors(sdk: openai.OpenAI) -> None:
    first = sdk.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog"])
    again = sdk.embeddings.create(model="text-embedding-3-small", input="a cat")
    assert [len(e.embedding) for e in first.data] == [1536, 1536]
    assert first.data[0].embedding == again.data[0].embedding != first.data[1].embedding
    assert math.isclose(sum(v * v for v in first.data[0].embedding), 1.0, rel_tol=1e-4)
    assert first.usage.prompt_tokens == first.usage.total_tokens == 4  # ~4 chars a token
    assert first.model == "text-embedding-3-small"
    large = sdk.embeddings.create(model="text-embedding-3-large", input=[[1, 2, 3]])
    assert len(large.data[0].embedding) == 3072 and large.usage.prompt_tokens == 3


def test_float_and_base64_agree(http: httpx.Client) -> None:
    body = {"model": "m", "input": "x", "dimensions": 3}
    floats = http.post("/v1/embeddings", json=body).json()
    packed = http.post("/v1/embeddings", json={**body, "encoding_format": "base64"}).json()
    decoded = struct.unpack("<3f", base64.b64decode(packed["data"][0]["embedding"]))
    assert decoded == pytest.approx(floats["data"][0]["embedding"], abs=1e-6)
    assert floats["object"] == "list" and floats["data"][0]["object"] == "embedding"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"model": "m", "input": ""}, 400),
        ({"model": "m", "input": "x", "encoding_format": "hex"}, 400),
        ({"model": "m", "input": "x", "dimensions": 0}, 400),
        ({"input": "x"}, 400),
        ({"model": "m", "input": "x", "mock": {"status": 503, "retry_after": 2}}, 503),
    ],
)
def test_errors_and_faults(http: httpx.Client, body: dict[str, object], status: int) -> None:
    response = http.post("/v1/embeddings", json=body)
    assert response.status_code == status
    assert "message" in response.json()["error"]


def test_queued_faults_apply_to_embeddings(http: httpx.Client) -> None:
    http.post("/_mock/faults", json={"fault": {"status": 500}, "count": 1})
    assert http.post("/v1/embeddings", json={"model": "m", "input": "x"}).status_code == 500
    assert http.post("/v1/embeddings", json={"model": "m", "input": "x"}).status_code == 200
    assert http.get("/_mock/stats").json()["routes"] == {"/v1/embeddings": 2}


@pytest.mark.parametrize(
    ("path", "query", "route"),
    [
        ("/openai/deployments/d1/chat/completions", "api-version=v", AzureRoute(CHAT, "d1", "v")),
        ("/openai/deployments/d1/embeddings", "", AzureRoute("embeddings", "d1", None)),
        ("/openai/v1/embeddings", "", AzureRoute("embeddings", None, None)),
        ("/openai/v1/chat/completions", "api-version=p", AzureRoute(CHAT, None, "p")),
        ("/openai/deployments//embeddings", "", None),
        ("/openai/deployments/d1/completions", "", None),
        ("/v1/embeddings", "", None),
    ],
)  # fmt: skip
def test_azure_routes(path: str, query: str, route: AzureRoute | None) -> None:
    assert azure_route(path, query) == route


def test_azure_paths_take_the_api_key_header() -> None:
    chat = {"model": "d", "messages": [{"role": "user", "content": "hi"}]}
    embed = {"model": "d", "input": "x"}
    deployment = "/openai/deployments/d/chat/completions"
    with running_mock_upstream(require_key="az") as url, httpx.Client(base_url=url) as http:

        def status(path: str, body: object, key: str = "az") -> int:
            return http.post(path, json=body, headers={"api-key": key}).status_code

        assert status(f"{deployment}?api-version=2024-10-21", chat) == 200
        assert status(deployment, chat) == 404  # Azure needs an api-version here
        assert status(f"{deployment}?api-version=x", chat, "wrong") == 401
        assert status("/openai/v1/embeddings", embed) == 200
        assert status("/v1/embeddings", embed) == 401  # OpenAI's own paths want a Bearer
        logged = http.get("/_mock/requests").json()
    assert [r["query"] for r in logged][:3] == ["api-version=2024-10-21", "", "api-version=x"]


def test_faults_can_target_one_api_key(mock_url: str) -> None:
    with httpx.Client(base_url=mock_url) as http:
        http.post("/_mock/faults", json={"fault": {"status": 503}, "count": 2, "key": "bad"})
        http.post("/_mock/faults", json={"fault": {"status": 429}, "count": 1})

        def status(key: str, header: str = "authorization") -> int:
            value = f"Bearer {key}" if header == "authorization" else key
            body = {"model": "m", "input": "x"}
            return http.post("/v1/embeddings", json=body, headers={header: value}).status_code

        # the keyed entry is passed over by other keys, which take the next entry
        assert [status("good"), status("good")] == [429, 200]
        assert [status("bad", "api-key"), status("bad"), status("bad")] == [503, 503, 200]
        assert http.get("/_mock/stats").json()["faults_queued"] == 0
