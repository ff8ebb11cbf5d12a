"""The official `anthropic` SDK against circuitd's `POST /v1/messages`, over real sockets, to
the mock upstream: its OpenAI dialect (the translation at circuitd's edge) and its Anthropic
dialect (a full round trip: Messages in, canonical, Messages upstream, and back)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
import trio
from anthropic.types import MessageParam, ToolParam

from circuitd.mockupstream.testing import running_mock_upstream
from tests.e2e.dialects import (
    WEATHER_DESCRIPTION,
    WEATHER_SCHEMA,
    control,
    direct_openai_answer,
    queue_fault,
)
from tests.harness import Running, running_gateway

KEY = "client-secret-key"
LIMITED_KEY = "one-call-a-minute"
BROKE_KEY = "a-micro-dollar-a-day"
HELLO: list[MessageParam] = [{"role": "user", "content": "Tell me about circuit breakers."}]
SYSTEM = "You are terse."
WEATHER: list[MessageParam] = [{"role": "user", "content": "What's the weather in Paris?"}]
TOOLS: list[ToolParam] = [
    {"name": "get_weather", "description": WEATHER_DESCRIPTION, "input_schema": WEATHER_SCHEMA}
]

CONFIG = """
[retry]
max_attempts = 1

[breaker]
minimum_calls = 1
failure_rate = 0.5
open_s = 600.0
max_open_s = 600.0

[providers.oai]
kind = "openai"
base_url = "{oai}/v1"
api_key = "sk-upstream"

[providers.claude]
kind = "anthropic"
base_url = "{claude}"
api_key = "sk-ant-upstream"

[models.sonnet]
deployments = [{{ provider = "oai", model = "gpt-4o-mini" }}]

[models.flaky]
deployments = [{{ provider = "oai", model = "gpt-4.1-mini" }}]

[models.claude-round-trip]
deployments = [{{ provider = "claude", model = "claude-sonnet-4-5" }}]

[[keys]]
id = "app"
key = "{key}"

[[keys]]
id = "limited"
key = "{limited}"
rpm = 1

[[keys]]
id = "broke"
key = "{broke}"
daily_usd_limit = 0.000001
"""


@pytest.fixture
def mocks() -> Iterator[tuple[str, str]]:
    """Root URLs (no /v1) of two mock upstreams: an OpenAI one and an Anthropic one."""
    with running_mock_upstream() as oai, running_mock_upstream() as claude:
        yield oai, claude


def config(mocks: tuple[str, str]) -> str:
    oai, claude = mocks
    return CONFIG.format(oai=oai, claude=claude, key=KEY, limited=LIMITED_KEY, broke=BROKE_KEY)


def sdk(gateway: Running, key: str = KEY) -> anthropic.Anthropic:
    """A client sending its key in `x-api-key`, as the released SDKs send `api_key` (the one
    installed here sends it as a Bearer token, which circuitd accepts too: tested below)."""
    return anthropic.Anthropic(
        base_url=gateway.url, api_key=None, default_headers={"x-api-key": key}, max_retries=0
    )


async def test_json_message(tmp_path: Path, mocks: tuple[str, str]) -> None:
    oai, _ = mocks
    canonical = [{"role": "system", "content": SYSTEM}, *HELLO]
    expected = direct_openai_answer(oai, canonical)  # type: ignore[arg-type]
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        raw = await trio.to_thread.run_sync(
            lambda: client.messages.with_raw_response.create(
                model="sonnet",
                max_tokens=64,
                system=SYSTEM,
                messages=HELLO,
                metadata={"user_id": "user-7"},
                stop_sequences=["never-said"],
                extra_body={"temperature": 0.3, "top_k": 5},  # no longer SDK parameters
            )
        )
        message = raw.parse()
        await gateway.drain()
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.model.startswith("gpt-4o-mini")
    [block] = message.content
    assert block.type == "text" and block.text == expected["choices"][0]["message"]["content"]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == expected["usage"]["prompt_tokens"]
    assert message.usage.output_tokens == expected["usage"]["completion_tokens"]
    assert message.usage.cache_read_input_tokens == 0

    [seen] = control(oai, "GET", "requests")
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"] == {
        "model": "gpt-4o-mini",
        "messages": canonical,
        "max_tokens": 64,
        "stop": ["never-said"],
        "temperature": 0.3,
        "user": "user-7",
    }
    [row] = gateway.rows()
    assert message._request_id == raw.headers["x-circuit-request-id"] == row["request_id"]
    assert raw.headers["x-request-id"] == row["request_id"]
    assert raw.headers["x-circuit-provider"] == "oai"
    assert (row["status"], row["status_code"], row["stream"]) == ("ok", 200, 0)
    assert (row["model"], row["key_id"], row["usage_source"]) == ("sonnet", "app", "provider")
    assert row["tokens_input"] == message.usage.input_tokens
    assert row["tokens_output"] == message.usage.output_tokens


async def test_stream_text_and_final_message(tmp_path: Path, mocks: tuple[str, str]) -> None:
    oai, _ = mocks
    expected = direct_openai_answer(oai, HELLO)  # type: ignore[arg-type]
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)

        def run() -> tuple[str, anthropic.types.Message]:
            with client.messages.stream(model="sonnet", max_tokens=64, messages=HELLO) as stream:
                text = "".join(stream.text_stream)
                return text, stream.get_final_message()

        text, final = await trio.to_thread.run_sync(run)

        def raw_events() -> list[str]:
            body = {"model": "sonnet", "max_tokens": 64, "messages": HELLO, "stream": True}
            with httpx.stream(
                "POST", gateway.url + "/v1/messages", json=body, headers={"x-api-key": KEY}
            ) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = [line for line in response.iter_lines() if line.startswith("event: ")]
                return [line.removeprefix("event: ") for line in lines]

        names = await trio.to_thread.run_sync(raw_events)
        await gateway.drain()
    content = expected["choices"][0]["message"]["content"]
    assert text == content
    [block] = final.content
    assert block.type == "text" and block.text == content
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == expected["usage"]["prompt_tokens"]
    assert final.usage.output_tokens == expected["usage"]["completion_tokens"]
    deltas = names.count("content_block_delta")
    assert deltas > 1  # relayed chunk by chunk
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    rows = gateway.rows()
    assert [(r["status"], r["stream"], r["usage_source"]) for r in rows] == [
        ("ok", 1, "provider")
    ] * 2
    assert rows[0]["tokens_output"] == final.usage.output_tokens
    assert all(r["ttft_ms"] is not None for r in rows)


async def test_tool_use_round_trip(tmp_path: Path, mocks: tuple[str, str]) -> None:
    """Tools through an Anthropic upstream: JSON, streamed, then the tool result turn."""
    _, claude = mocks
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        whole = await trio.to_thread.run_sync(
            lambda: client.messages.create(
                model="claude-round-trip", max_tokens=128, messages=WEATHER, tools=TOOLS
            )
        )

        def streamed() -> anthropic.types.Message:
            with client.messages.stream(
                model="claude-round-trip", max_tokens=128, messages=WEATHER, tools=TOOLS
            ) as stream:
                return stream.get_final_message()

        final = await trio.to_thread.run_sync(streamed)
        [call] = [b for b in whole.content if b.type == "tool_use"]
        followup: list[Any] = [
            *WEATHER,
            {"role": "assistant", "content": [call.model_dump()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}],
            },
        ]
        answer = await trio.to_thread.run_sync(
            lambda: client.messages.create(
                model="claude-round-trip", max_tokens=128, messages=followup, tools=TOOLS
            )
        )
        await gateway.drain()
    for message in (whole, final):
        [tool] = [b for b in message.content if b.type == "tool_use"]
        assert tool.name == "get_weather" and tool.id.startswith("toolu_")
        assert tool.input == {"location": "mock", "unit": "celsius"}
        assert message.stop_reason == "tool_use" and message.id.startswith("msg_")
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"
    third = control(claude, "GET", "requests")[-1]["body"]
    assert third["tools"] == [dict(TOOLS[0])]
    assert third["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": call.id, "name": "get_weather", "input": call.input}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}],
        },
    ]
    rows = gateway.rows()
    assert [(r["status"], r["provider"]) for r in rows] == [("ok", "claude")] * 3


async def test_client_errors_are_anthropic_shaped(tmp_path: Path, mocks: tuple[str, str]) -> None:
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)

        def call(client: anthropic.Anthropic, model: str = "sonnet") -> Any:
            return client.messages.create(model=model, max_tokens=8, messages=HELLO)

        with pytest.raises(anthropic.NotFoundError) as not_found:
            await trio.to_thread.run_sync(call, client, "no-such-model")
        with pytest.raises(anthropic.AuthenticationError) as bad_key:
            await trio.to_thread.run_sync(call, sdk(gateway, "wrong-key"))
        bearer = anthropic.Anthropic(base_url=gateway.url, auth_token=KEY, max_retries=0)
        by_bearer = await trio.to_thread.run_sync(call, bearer)
        by_api_key = await trio.to_thread.run_sync(
            call, anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0)
        )

        def plain(method: str, headers: dict[str, str], body: Any = None) -> httpx.Response:
            return httpx.request(
                method, gateway.url + "/v1/messages", json=body, headers=headers, timeout=30
            )

        no_max = {"model": "sonnet", "messages": HELLO}
        missing_max = await trio.to_thread.run_sync(plain, "POST", {"x-api-key": KEY}, no_max)
        no_key = await trio.to_thread.run_sync(plain, "POST", {}, no_max)
        wrong_method = await trio.to_thread.run_sync(plain, "GET", {"x-api-key": KEY})
        await gateway.drain()
    assert not_found.value.status_code == 404
    assert not_found.value.body == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": "The model `no-such-model` does not exist.",
        },
        "request_id": not_found.value.request_id,
    }
    assert bad_key.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert by_bearer.content[0].type == by_api_key.content[0].type == "text"
    assert missing_max.status_code == 400
    assert missing_max.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    assert no_key.status_code == 401 and "x-api-key" in no_key.json()["error"]["message"]
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    rows = gateway.rows()  # one row per call, refusals included; the GET is no call
    assert [(r["status"], r["status_code"]) for r in rows] == [
        ("refused", 404),
        ("refused", 401),
        ("ok", 200),
        ("ok", 200),
        ("refused", 400),
        ("refused", 401),
    ]
    assert KEY not in json.dumps(rows)


async def test_rate_limit_and_open_breaker(tmp_path: Path, mocks: tuple[str, str]) -> None:
    oai, _ = mocks
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        limited = sdk(gateway, LIMITED_KEY)

        def call(client: anthropic.Anthropic, model: str) -> Any:
            return client.messages.with_raw_response.create(
                model=model, max_tokens=8, messages=HELLO
            )

        await trio.to_thread.run_sync(call, limited, "sonnet")
        with pytest.raises(anthropic.RateLimitError) as limited_out:
            await trio.to_thread.run_sync(call, limited, "sonnet")
        with pytest.raises(anthropic.RateLimitError) as over_budget:
            await trio.to_thread.run_sync(call, sdk(gateway, BROKE_KEY), "sonnet")
        queue_fault(oai, {"status": 500})
        client = sdk(gateway)
        with pytest.raises(anthropic.InternalServerError) as failed:
            await trio.to_thread.run_sync(call, client, "flaky")
        with pytest.raises(anthropic.APIStatusError) as open_breaker:
            await trio.to_thread.run_sync(call, client, "flaky")
        await gateway.drain()
    refusal = limited_out.value
    assert refusal.status_code == 429 and refusal.response.headers["retry-after"]
    assert refusal.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    broke = over_budget.value
    assert broke.status_code == 429 and broke.response.headers["retry-after"]
    assert broke.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert "budget" in broke.body["error"]["message"]  # type: ignore[index]
    assert failed.value.status_code == 502
    assert failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    # Every deployment's breaker open: the OpenAI route's 503, as Anthropic's "overloaded".
    assert isinstance(open_breaker.value, anthropic.ServiceUnavailableError)
    assert open_breaker.value.body == {
        "type": "error",
        "error": {
            "type": "overloaded_error",
            "message": "Upstream provider temporarily unavailable",
        },
        "request_id": open_breaker.value.request_id,
    }
    assert control(oai, "GET", "stats")["statuses"] == {"200": 1, "500": 1}
    rows = gateway.rows()
    assert [(r["status"], r["status_code"]) for r in rows] == [
        ("ok", 200),
        ("refused", 429),
        ("refused", 429),
        ("error", 502),
        ("error", 503),
    ]


async def test_mid_stream_cut_ends_with_an_error_event(
    tmp_path: Path, mocks: tuple[str, str]
) -> None:
    oai, _ = mocks
    queue_fault(oai, {"cut_after": 2, "chunks": 6})
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        received: list[str] = []

        def run() -> None:
            with client.messages.stream(model="sonnet", max_tokens=64, messages=HELLO) as stream:
                received.extend(stream.text_stream)

        with pytest.raises(anthropic.APIStatusError) as caught:
            await trio.to_thread.run_sync(run)
        await gateway.drain()
    assert len(received) == 2  # the two chunks before the cut were relayed
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert body["error"]["message"].startswith("Upstream failed")
    [row] = gateway.rows()
    assert (row["status"], row["stream"], row["error_code"]) == ("partial", 1, "upstream_error")
    assert row["usage_source"] == "estimated" and row["tokens_output"] != 0


async def test_count_tokens_and_metrics(tmp_path: Path, mocks: tuple[str, str]) -> None:
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)

        def count(messages: list[MessageParam], **extra: Any) -> int:
            return client.messages.count_tokens(
                model="sonnet", messages=messages, **extra
            ).input_tokens

        short = await trio.to_thread.run_sync(count, HELLO)
        longer = await trio.to_thread.run_sync(lambda: count(HELLO, system=SYSTEM * 20))
        with_tools = await trio.to_thread.run_sync(lambda: count(HELLO, tools=TOOLS))
        await trio.to_thread.run_sync(
            lambda: client.messages.create(model="sonnet", max_tokens=8, messages=HELLO)
        )
        metrics = await trio.to_thread.run_sync(lambda: httpx.get(gateway.url + "/metrics").text)
        await gateway.drain()
    assert 0 < short < longer and short < with_tools
    assert 'circuitd_requests_total{route="/v1/messages",status_class="2xx"} 1.0' in metrics
    assert (
        'circuitd_requests_total{route="/v1/messages/count_tokens",status_class="2xx"} 3.0'
        in metrics
    )
    assert len(gateway.rows()) == 1  # counting is no call


async def test_client_leaving_mid_stream_cancels_upstream(
    tmp_path: Path, mocks: tuple[str, str]
) -> None:
    oai, _ = mocks
    queue_fault(oai, {"stall_after": 2})

    def upstream_stats(**wait: int) -> Any:
        return httpx.get(f"{oai}/_mock/stats", params=wait, timeout=30).json()

    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        body = {"model": "sonnet", "max_tokens": 64, "messages": HELLO, "stream": True}
        async with (
            httpx.AsyncClient(base_url=gateway.url) as client,
            client.stream("POST", "/v1/messages", json=body, headers={"x-api-key": KEY}) as answer,
        ):
            seen = b""
            async for data in answer.aiter_raw():
                seen += data
                if seen.count(b"event: content_block_delta") >= 2:
                    break  # leaving closes the connection while the upstream stalls
        stats = await trio.to_thread.run_sync(lambda: upstream_stats(wait_disconnects=1))
        assert stats["disconnects"] == 1  # the upstream call was cancelled too
        await gateway.drain()
    [row] = gateway.rows()
    assert (row["status"], row["status_code"], row["stream"]) == ("disconnected", 499, 1)
    assert row["usage_source"] == "estimated" and row["tokens_output"] != 0
