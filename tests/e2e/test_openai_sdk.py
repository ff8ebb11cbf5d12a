"""The official `openai` SDK through circuitd to `circuitd mock-upstream`, over real sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio

from tests.e2e.conftest import upstream_requests, upstream_stats
from tests.harness import Running, running_gateway

CLIENT_KEY = "client-secret-key"
UPSTREAM_KEY = "upstream-provider-key"
MESSAGES: list[Any] = [{"role": "user", "content": "Tell me about circuit breakers."}]


def env_for(upstream: str) -> dict[str, str]:
    return {
        "PROVIDER": "OPENAI",
        "OPENAI_BASE_URL": upstream,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "CIRCUIT_API_KEYS": CLIENT_KEY,
    }


def sdk(gateway: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


async def test_json_completion_with_usage_and_fidelity(tmp_path: Path, upstream: str) -> None:
    async with running_gateway(tmp_path, env=env_for(upstream)) as gateway:
        client = sdk(gateway)
        raw = await trio.to_thread.run_sync(
            lambda: client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                extra_body={"vendor_extension": {"keep": [1, 2]}, "seed": 7},
            )
        )
        completion = raw.parse()
        assert completion.choices[0].message.content
        assert completion.usage is not None and completion.usage.completion_tokens > 0
        meta = raw.http_response.json()["x_gateway"]
        assert meta["provider"] == "openai"
        assert meta["attempts"] == 1
        assert meta["request_id"] == raw.headers["x-request-id"]  # no client id: ours
        assert meta["request_id"] == raw.headers["x-circuit-request-id"]
        assert meta["cost_usd"] > 0
        assert raw.headers["x-circuit-provider"] == "openai"
        await gateway.drain()
    seen = upstream_requests(upstream)[-1]
    body = seen["body"]
    assert isinstance(body, dict)
    assert body["vendor_extension"] == {"keep": [1, 2]} and body["seed"] == 7
    headers = {k.lower(): v for k, v in seen["headers"]}  # type: ignore[union-attr]
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert CLIENT_KEY not in repr(seen)
    [row] = gateway.rows()
    assert row["status"] == "ok" and row["usage_source"] == "provider"
    assert row["tokens_output"] == completion.usage.completion_tokens
    assert row["tokens_input"] == completion.usage.prompt_tokens
    assert row["cost_micro_usd"] > 0
    assert row["request_id"] == meta["request_id"]


async def test_stream_content_and_usage(tmp_path: Path, upstream: str) -> None:
    async with running_gateway(tmp_path, env=env_for(upstream)) as gateway:
        client = sdk(gateway)

        def run(include_usage: bool) -> tuple[str, Any, int]:
            options = {"include_usage": True} if include_usage else openai.NOT_GIVEN
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options=options
            )
            text, usage, chunks = "", None, 0
            for chunk in stream:
                chunks += 1
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    text += choice.delta.content or ""
            return text, usage, chunks

        text, usage, _ = await trio.to_thread.run_sync(run, True)
        plain_text, plain_usage, _ = await trio.to_thread.run_sync(run, False)
        whole = await trio.to_thread.run_sync(
            lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        )
        await gateway.drain()
    # Each upstream body read to its end, its chunked end after [DONE] included: the three
    # calls went over one upstream connection (the other: this request for the counts).
    assert upstream_stats(upstream)["connections"] == 2
    assert text == plain_text == whole.choices[0].message.content
    assert usage is not None and usage.completion_tokens > 0
    assert plain_usage is None  # the gateway asked upstream for usage, but hid it
    bodies = [r["body"] for r in upstream_requests(upstream)]
    assert all(b["stream_options"]["include_usage"] is True for b in bodies if b.get("stream"))
    rows = gateway.rows("stream = 1")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert {r["usage_source"] for r in rows} == {"provider"}
    assert rows[0]["tokens_output"] == rows[1]["tokens_output"] == usage.completion_tokens
    assert all(r["ttft_ms"] is not None for r in rows)


async def test_cut_stream_raises_in_sdk_and_settles_partial(tmp_path: Path, upstream: str) -> None:
    async with running_gateway(tmp_path, env=env_for(upstream)) as gateway:
        client = sdk(gateway)

        def run() -> str:
            text = ""
            stream = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                extra_body={"mock": {"cut_after": 3, "chunks": 10}},
            )
            for chunk in stream:
                for choice in chunk.choices:
                    text += choice.delta.content or ""
            return text

        with pytest.raises(openai.APIError):
            await trio.to_thread.run_sync(run)
        await gateway.drain()
    [row] = gateway.rows()
    assert row["status"] == "partial"
    assert row["status_code"] == 502 and row["error_code"] == "upstream_error"
    assert row["usage_source"] == "estimated"
    assert row["tokens_output"] > 0 and row["cost_micro_usd"] > 0


async def test_client_disconnect_cancels_upstream_and_settles_once(
    tmp_path: Path, upstream: str
) -> None:
    async with running_gateway(tmp_path, env=env_for(upstream)) as gateway:
        body = {
            "model": "gpt-4o-mini",
            "messages": MESSAGES,
            "stream": True,
            "mock": {"stall_after": 2, "chunks": 10},
        }
        headers = {"authorization": f"Bearer {CLIENT_KEY}"}
        async with (
            httpx.AsyncClient() as client,
            client.stream(
                "POST", gateway.url + "/v1/chat/completions", json=body, headers=headers
            ) as response,
        ):
            assert response.status_code == 200
            received = b""
            async for data in response.aiter_raw():
                received += data
                if received.count(b"data: ") >= 3:  # role chunk + 2 content chunks
                    break
        # The client is gone: the upstream must see its request cancelled.
        root = upstream.removesuffix("/v1")
        stats = await trio.to_thread.run_sync(
            lambda: httpx.get(f"{root}/_mock/stats", params={"wait_disconnects": 1}).json()
        )
        assert stats["disconnects"] >= 1
        await gateway.drain()
    [row] = gateway.rows()
    assert row["status"] == "disconnected"
    assert row["usage_source"] == "estimated"
    assert row["tokens_output"] > 0
