"""Every call settles exactly once: bursts, drains, and disconnects at each point of a call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.conftest import upstream_requests
from tests.harness import running_gateway

AUTH = {"authorization": "Bearer k"}
MESSAGES = [{"role": "user", "content": "hello"}]


def env_for(upstream: str) -> dict[str, str]:
    return {
        "PROVIDER": "OPENAI",
        "OPENAI_BASE_URL": upstream,
        "OPENAI_API_KEY": "sk-up",
        "CIRCUIT_API_KEYS": "k",
    }


async def test_a_burst_then_drain_loses_no_row(tmp_path: Path) -> None:
    env = {"PROVIDER": "MOCK", "CIRCUIT_API_KEYS": "k"}
    calls = 200
    async with (
        running_gateway(tmp_path, env=env) as gateway,
        httpx.AsyncClient(
            base_url=gateway.url, limits=httpx.Limits(max_connections=50), timeout=60
        ) as client,
    ):
        statuses: list[int] = []

        async def one(i: int) -> None:
            body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": i % 2 == 0}
            response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
            statuses.append(response.status_code)

        async with trio.open_nursery() as nursery:
            for i in range(calls):
                nursery.start_soon(one, i)
        await gateway.drain()
    assert statuses == [200] * calls
    rows = gateway.rows()
    assert len(rows) == calls
    assert len({r["request_id"] for r in rows}) == calls
    assert {r["status"] for r in rows} == {"ok"}


@pytest.mark.parametrize(
    ("stream", "mock", "after_bytes"),
    [
        (False, {"latency_ms": 5000}, 0),  # waiting for the upstream's JSON answer
        (True, {"latency_ms": 5000}, 0),  # waiting for the upstream's first byte
        (True, {"stall_after": 3, "chunks": 10}, 4),  # mid-stream, content relayed
    ],
    ids=["json-waiting", "stream-before-first-byte", "stream-mid-content"],
)
# HTTP/1.1 is served by circuitd's own protocol, which cancels the call itself
# (`CANCEL_ON_DISCONNECT`); over HTTP/2 the app's watcher task sees `http.disconnect`.
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
async def test_disconnect_at_each_point_settles_once(
    tmp_path: Path,
    upstream: str,
    stream: bool,
    mock: dict[str, Any],
    after_bytes: int,
    http2: bool,
) -> None:
    root = upstream.removesuffix("/v1")

    def upstream_stats(**wait: int) -> Any:
        return httpx.get(f"{root}/_mock/stats", params=wait, timeout=30).json()

    async with running_gateway(tmp_path, env=env_for(upstream)) as gateway:
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream, "mock": mock}

        async def client_call(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                async with (
                    httpx.AsyncClient(base_url=gateway.url, http1=not http2, http2=http2) as client,
                    client.stream(
                        "POST", "/v1/chat/completions", json=body, headers=AUTH
                    ) as response,
                ):
                    seen = 0
                    async for data in response.aiter_raw():
                        seen += data.count(b"data: ")
                        if seen >= after_bytes:
                            return  # leaving closes the connection: the client goes away

        async with trio.open_nursery() as nursery:
            scope = await nursery.start(client_call)
            if after_bytes == 0:
                # The upstream holds the request (latency): then the client gives up.
                await trio.to_thread.run_sync(lambda: upstream_stats(wait_requests=1))
                scope.cancel()
        stats = await trio.to_thread.run_sync(lambda: upstream_stats(wait_disconnects=1))
        assert stats["disconnects"] == 1  # the upstream call was cancelled too
        await gateway.drain()
    [row] = gateway.rows()
    assert row["status"] == "disconnected"
    assert row["status_code"] == 499
    if after_bytes:
        assert row["usage_source"] == "estimated" and row["tokens_output"] > 0
    else:
        assert row["usage_source"] == "estimated"  # the prompt was sent: it is billed
        assert row["tokens_output"] == 0
    assert len(upstream_requests(upstream)) == 1
