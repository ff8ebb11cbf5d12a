"""/metrics after known traffic, in one process and across two workers."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from circuitd.obs.metrics import LABEL_CAP
from tests.harness import running_gateway
from tests.processes import KEY, reaped, start

AUTH = {"authorization": "Bearer k"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "pid"))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_after_known_traffic(tmp_path: Path) -> None:
    env = {"PROVIDER": "MOCK", "CIRCUIT_API_KEYS": "k"}
    async with (
        running_gateway(tmp_path, env=env) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        for _ in range(2):
            assert (await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)).is_success
        streamed = await client.post(
            "/v1/chat/completions", json={**CHAT, "stream": True}, headers=AUTH
        )
        assert streamed.is_success
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 401
        assert (await client.get("/nowhere")).status_code == 404
        await trio.testing.wait_all_tasks_blocked()  # calls settle after their responses
        response = await client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
    found = samples(text)
    chat = "/v1/chat/completions"
    assert value(found, "circuitd_requests_total", route=chat, status_class="2xx") == 3
    assert value(found, "circuitd_requests_total", route=chat, status_class="4xx") == 1
    assert value(found, "circuitd_requests_total", route="other", status_class="4xx") == 1
    assert (
        value(found, "circuitd_calls_total", provider="mock", model="gpt-4o-mini", status="ok") == 3
    )
    # Refused before its model was read: no client-chosen name reaches a label.
    assert value(found, "circuitd_calls_total", provider="", model="other", status="refused") == 1
    output = value(
        found, "circuitd_tokens_total", provider="mock", model="gpt-4o-mini", direction="output"
    )
    assert output == sum(r["tokens_output"] for r in gateway.rows()) > 0
    cost = value(found, "circuitd_cost_usd_total", provider="mock", model="gpt-4o-mini")
    assert cost == pytest.approx(sum(r["cost_micro_usd"] for r in gateway.rows()) / 1e6)
    assert (
        value(
            found,
            "circuitd_time_to_first_token_seconds_count",
            provider="mock",
            model="gpt-4o-mini",
        )
        == 1
    )
    assert (
        value(
            found,
            "circuitd_upstream_attempts_total",
            provider="mock",
            deployment="mock/gpt-4o-mini",
            result="success",
        )
        == 3
    )
    assert value(found, "circuitd_breaker_state", deployment="mock/gpt-4o-mini") == 0
    assert value(found, "circuitd_active_streams") == 0
    assert value(found, "circuitd_overhead_seconds_count") == 4
    assert value(found, "circuitd_rows_dropped_total") == 0
    promtool = shutil.which("promtool")
    if promtool is not None:  # Debian's `prometheus` package; CI installs it when it can
        checked = await trio.run_process(
            [promtool, "check", "metrics"],
            stdin=text.encode(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_metrics_add_up_across_two_workers(tmp_path: Path) -> None:
    process, url = start(tmp_path, "--workers", "2", PROVIDER="MOCK")
    with reaped(process):
        pids = set()
        for _ in range(20):
            # A fresh connection each time: SO_REUSEPORT spreads them over both workers.
            async with httpx.AsyncClient(base_url=url) as client:
                pids.add((await client.get("/health")).json()["pid"])
                ok = await client.post(
                    "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {KEY}"}
                )
                assert ok.status_code == 200
        async with httpx.AsyncClient(base_url=url) as client:
            text = (await client.get("/metrics")).text
        found = samples(text)
        chat = "/v1/chat/completions"
        assert value(found, "circuitd_requests_total", route=chat, status_class="2xx") == 20
        assert value(found, "circuitd_requests_total", route="/health", status_class="2xx") == 20
        assert len(pids) == 2  # both workers served (the chance of one alone is 2 ** -19)
        process.terminate()
        assert await trio.to_thread.run_sync(process.wait) == 0


async def test_client_chosen_model_names_do_not_grow_the_labels(tmp_path: Path) -> None:
    """Unknown models are `other`; in env-only mode (every name passes through) the model
    and deployment labels are capped per process, so a client cannot grow the series."""
    env = {"PROVIDER": "MOCK", "CIRCUIT_API_KEYS": "k"}
    names = [f"model-{i}" for i in range(LABEL_CAP + 20)]
    async with (
        running_gateway(tmp_path, env=env) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        for name in names:
            answer = await client.post(
                "/v1/chat/completions", json={**CHAT, "model": name}, headers=AUTH
            )
            assert answer.is_success
        await trio.testing.wait_all_tasks_blocked()
        text = (await client.get("/metrics")).text
    found = samples(text)
    calls = {dict(labels)["model"] for name, labels in found if name == "circuitd_calls_total"}
    assert calls == {*names[:LABEL_CAP], "other"}
    assert value(found, "circuitd_calls_total", provider="mock", model="other", status="ok") == 20
    attempts = {
        dict(labels)["deployment"]
        for name, labels in found
        if name == "circuitd_upstream_attempts_total"
    }
    assert len(attempts) == LABEL_CAP + 1 and "other" in attempts
    breakers = {
        dict(labels)["deployment"] for name, labels in found if name == "circuitd_breaker_state"
    }
    assert len(breakers) == LABEL_CAP + 1


async def test_an_undeclared_model_is_labelled_other(tmp_path: Path) -> None:
    config = """
[providers.mock]
kind = "mock"

[models."gpt-4o-mini"]
deployments = [{ provider = "mock", model = "gpt-4o-mini" }]

[[keys]]
id = "dev"
key = "k"
"""
    async with (
        running_gateway(tmp_path, config_text=config) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        for i in range(3):
            missing = {**CHAT, "model": f"no-such-model-{i}"}
            answer = await client.post("/v1/chat/completions", json=missing, headers=AUTH)
            assert answer.status_code == 404
        await trio.testing.wait_all_tasks_blocked()
        found = samples((await client.get("/metrics")).text)
    assert value(found, "circuitd_calls_total", provider="", model="other", status="refused") == 3
    models = {dict(labels)["model"] for name, labels in found if name == "circuitd_calls_total"}
    assert models == {"other"}
