"""Breaker, retries and fallback against real mock upstreams with injected faults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest
import trio
import trio.testing

from circuitd.mockupstream.testing import running_mock_upstream
from tests.harness import running_gateway

AUTH = {"authorization": "Bearer k"}
MESSAGES = [{"role": "user", "content": "hello"}]

CONFIG = """
[breaker]
minimum_calls = 5
failure_rate = 0.5
open_s = 10.0
open_jitter = 0.0     # the test crosses the exact wait
half_open_probes = 1
half_open_calls = 2   # at failure_rate 0.5: the first failed probe re-opens, 2 successes close

[retry]
max_attempts = {attempts}
base_s = 0.001
max_backoff_s = 0.002

[providers.primary]
kind = "openai"
base_url = "{primary}/v1"
api_key = "p"

[providers.backup]
kind = "openai"
base_url = "{backup}/v1"
api_key = "b"

[models.m]
deployments = [
  {{ provider = "primary", model = "m1" }},
  {{ provider = "backup", model = "m2" }},
]

[models.solo]
deployments = [{{ provider = "primary", model = "m1" }}]

[models.spare]
deployments = [{{ provider = "backup", model = "m2" }}]

[[keys]]
id = "k"
key = "k"
"""


@pytest.fixture
def upstreams() -> Iterator[tuple[str, str]]:
    with running_mock_upstream() as primary, running_mock_upstream() as backup:
        yield primary, backup


def control(root: str, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{root}/_mock/{path}", **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def storm(root: str, status: int, count: int | None = None) -> None:
    control(root, "POST", "faults", json={"fault": {"status": status}, "count": count})


def chat(client: httpx.AsyncClient, model: str, **extra: Any) -> Any:
    return client.post(
        "/v1/chat/completions", json={"model": model, "messages": MESSAGES, **extra}, headers=AUTH
    )


async def test_storm_trips_the_breaker_then_probes_recover_it(
    tmp_path: Path, upstreams: tuple[str, str], mock_clock: trio.testing.MockClock
) -> None:
    # The clock stands still unless the test moves it: the open wait is crossed by a jump.
    primary, backup = upstreams
    storm(primary, 500)
    text = CONFIG.format(attempts=1, primary=primary, backup=backup)
    async with (
        running_gateway(tmp_path, config_text=text) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        statuses = [(await chat(client, "solo")).status_code for _ in range(12)]
        # minimum_calls failures reach the upstream; then the breaker answers by itself.
        assert statuses == [502] * 5 + [503] * 7
        refused = await chat(client, "solo")
        assert refused.json() == {
            "error": {
                "message": "Upstream provider temporarily unavailable",
                "type": "service_unavailable",
                "code": "service_unavailable",
                "param": None,
            }
        }
        assert control(primary, "GET", "stats")["requests"] == 5
        health = (await client.get("/health")).json()
        assert health["circuit_breakers"]["primary/m1"]["state"] == "open"

        control(primary, "DELETE", "faults")  # the upstream heals
        mock_clock.jump(9.999)
        assert (await chat(client, "solo")).status_code == 503  # wait - 1 ms: still open
        mock_clock.jump(0.001)
        assert (await chat(client, "solo")).status_code == 200  # probe 1
        assert (await chat(client, "solo")).status_code == 200  # probe 2 closes it
        health = (await client.get("/health")).json()
        assert health["circuit_breakers"]["primary/m1"]["state"] == "closed"
        assert control(primary, "GET", "stats")["requests"] == 7
        await gateway.drain()
    rows = gateway.rows()
    assert [r["status_code"] for r in rows] == [502] * 5 + [503] * 9 + [200] * 2
    assert [r["attempts"] for r in rows] == [1] * 5 + [0] * 9 + [1] * 2


async def test_transient_503_is_retried(tmp_path: Path, upstreams: tuple[str, str]) -> None:
    primary, backup = upstreams
    storm(primary, 503, count=1)
    text = CONFIG.format(attempts=3, primary=primary, backup=backup)
    async with (
        running_gateway(tmp_path, config_text=text) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        response = await chat(client, "solo")
        assert response.status_code == 200
        assert response.headers["x-circuit-attempts"] == "2"
        assert response.json()["x_gateway"]["attempts"] == 2
        await gateway.drain()
    [row] = gateway.rows()
    assert (row["status"], row["attempts"]) == ("ok", 2)
    connection = apsw.Connection(str(gateway.db_path))
    attempts = connection.execute(
        "SELECT attempt, deployment, status_code, error FROM provider_attempts ORDER BY attempt"
    ).fetchall()
    assert attempts == [
        (1, "primary/m1", 503, "upstream answered 503"),
        (2, "primary/m1", 200, None),
    ]


async def test_request_error_is_relayed_once(tmp_path: Path, upstreams: tuple[str, str]) -> None:
    primary, backup = upstreams
    storm(primary, 400, count=1)
    text = CONFIG.format(attempts=3, primary=primary, backup=backup)
    async with (
        running_gateway(tmp_path, config_text=text) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        response = await chat(client, "m")  # a fallback exists, but a 400 is the request's fault
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert control(primary, "GET", "stats")["requests"] == 1
    assert control(backup, "GET", "stats")["requests"] == 0


async def test_fallback_to_the_next_deployment(tmp_path: Path, upstreams: tuple[str, str]) -> None:
    primary, backup = upstreams
    storm(primary, 500)
    text = CONFIG.format(attempts=2, primary=primary, backup=backup)
    async with (
        running_gateway(tmp_path, config_text=text) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        response = await chat(client, "m")
        assert response.status_code == 200
        assert response.headers["x-circuit-provider"] == "backup"
        meta = response.json()["x_gateway"]
        assert (meta["deployment"], meta["attempts"]) == ("backup/m2", 3)
        # The request extension names fallbacks too, and never reaches an upstream.
        extended = await chat(client, "solo", circuit_breaker={"fallback_models": ["spare"]})
        assert extended.status_code == 200
        assert extended.headers["x-circuit-provider"] == "backup"
        streamed = await chat(client, "m", stream=True)
        assert streamed.status_code == 200
        assert streamed.text.endswith("data: [DONE]\n\n")
        await gateway.drain()
    seen = control(backup, "GET", "requests")
    assert [r["body"]["model"] for r in seen] == ["m2", "m2", "m2"]
    assert all("circuit_breaker" not in r["body"] for r in seen)
    rows = gateway.rows()
    assert [(r["provider"], r["deployment"]) for r in rows] == [("backup", "backup/m2")] * 3


async def test_unknown_fallback_model_is_a_404(tmp_path: Path, upstreams: tuple[str, str]) -> None:
    primary, backup = upstreams
    text = CONFIG.format(attempts=1, primary=primary, backup=backup)
    async with (
        running_gateway(tmp_path, config_text=text) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        response = await chat(client, "solo", circuit_breaker={"fallback_models": ["nope"]})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "model_not_found"


async def test_env_only_fallback_after_connect_errors(tmp_path: Path) -> None:
    # Nothing listens on the primary's port: connect errors, retried, then the mock answers.
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    env = {
        "PROVIDER": "OPENAI",
        "OPENAI_API_KEY": "sk-x",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{dead_port}/v1",
        "CIRCUIT_FALLBACK": "MOCK",
        "CIRCUIT_FALLBACK_MODEL": "mock-model",
        "CIRCUIT_API_KEYS": "k",
    }
    async with (
        running_gateway(tmp_path, env=env) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        response = await chat(client, "gpt-4o-mini")
        assert response.status_code == 200, response.text
        meta = response.json()["x_gateway"]
        assert (meta["provider"], meta["deployment"], meta["attempts"]) == (
            "mock",
            "mock/mock-model",
            4,
        )
        await gateway.drain()
    connection = apsw.Connection(str(gateway.db_path))
    errors = [e for (e,) in connection.execute("SELECT error FROM provider_attempts")]
    assert errors == ["connect error"] * 3 + [None]
