"""The official `openai` SDK through circuitd to the mock upstream's Anthropic dialect.

circuitd translates the OpenAI chat request into a Messages request (`x-api-key`,
`anthropic-version`) and the answers back, JSON and SSE, tool calls included; the Anthropic
faults (529 storms, error events) go through its retry and fallback like any other.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import openai
import pytest
import trio

from circuitd.mockupstream.testing import running_mock_upstream
from tests.e2e.dialects import (
    MESSAGES,
    TOOLS,
    WEATHER,
    control,
    direct_openai_answer,
    error_event_at_the_start_is_retried,
    error_event_mid_stream_ends_it_with_an_error,
    headers_of,
    openai_sdk,
    queue_fault,
    read_stream,
    stream_text,
)
from tests.harness import Running, running_gateway

CLIENT_KEY = "client-secret-key"
ANTHROPIC_KEY = "sk-ant-upstream-key"
OPENAI_KEY = "sk-openai-upstream-key"

CONFIG = """
[retry]
max_attempts = 3
base_s = 0.001
max_backoff_s = 0.002

[providers.claude]
kind = "anthropic"
base_url = "{claude}"
api_key = "{anthropic_key}"

[providers.oai]
kind = "openai"
base_url = "{oai}/v1"
api_key = "{openai_key}"

[models.sonnet]
deployments = [{{ provider = "claude", model = "claude-sonnet-4-5" }}]

[models.pair]
deployments = [
  {{ provider = "claude", model = "claude-sonnet-4-5" }},
  {{ provider = "claude", model = "claude-haiku-4-5" }},
]

[models.mixed]
deployments = [
  {{ provider = "oai", model = "gpt-4o-mini" }},
  {{ provider = "claude", model = "claude-sonnet-4-5" }},
]

[[keys]]
id = "app"
key = "{client_key}"
"""


@pytest.fixture
def mocks() -> Iterator[tuple[str, str]]:
    """Root URLs (no /v1) of two mock upstreams: the Anthropic one and an OpenAI one."""
    with running_mock_upstream() as claude, running_mock_upstream() as oai:
        yield claude, oai


def config(mocks: tuple[str, str]) -> str:
    claude, oai = mocks
    return CONFIG.format(
        claude=claude,
        oai=oai,
        anthropic_key=ANTHROPIC_KEY,
        openai_key=OPENAI_KEY,
        client_key=CLIENT_KEY,
    )


def sdk(gateway: Running) -> openai.OpenAI:
    return openai_sdk(gateway, CLIENT_KEY)


async def test_json_completion(tmp_path: Path, mocks: tuple[str, str]) -> None:
    claude, _ = mocks
    expected = direct_openai_answer(claude, MESSAGES)
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        raw = await trio.to_thread.run_sync(
            lambda: client.chat.completions.with_raw_response.create(
                model="sonnet", messages=MESSAGES, user="user-7"
            )
        )
        completion = raw.parse()
        await gateway.drain()
    [choice] = completion.choices
    assert choice.message.content == expected["choices"][0]["message"]["content"]
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert completion.model == "claude-sonnet-4-5" and completion.id.startswith("chatcmpl-msg_")
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert usage.completion_tokens == expected["usage"]["completion_tokens"]
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    meta = raw.http_response.json()["x_gateway"]
    assert (meta["provider"], meta["deployment"]) == ("claude", "claude/claude-sonnet-4-5")
    assert meta["attempts"] == 1 and meta["cost_usd"] > 0
    assert raw.headers["x-circuit-provider"] == "claude"

    [seen] = control(claude, "GET", "requests")
    assert seen["path"] == "/v1/messages"
    headers = headers_of(seen)
    assert headers["x-api-key"] == ANTHROPIC_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert CLIENT_KEY not in json.dumps(seen)
    assert seen["body"] == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Tell me about circuit breakers."}],
        "metadata": {"user_id": "user-7"},
    }

    [row] = gateway.rows()
    assert (row["status"], row["status_code"], row["usage_source"]) == ("ok", 200, "provider")
    assert (row["provider"], row["deployment"]) == ("claude", "claude/claude-sonnet-4-5")
    assert row["tokens_input"] == usage.prompt_tokens
    assert row["tokens_output"] == usage.completion_tokens
    assert row["cost_micro_usd"] > 0 and row["request_id"] == meta["request_id"]


async def test_stream_content_and_usage(tmp_path: Path, mocks: tuple[str, str]) -> None:
    claude, _ = mocks
    expected = direct_openai_answer(claude, MESSAGES)
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        read = await trio.to_thread.run_sync(
            partial(read_stream, client, "sonnet", MESSAGES, include_usage=True)
        )
        plain = await trio.to_thread.run_sync(read_stream, client, "sonnet", MESSAGES)
        await gateway.drain()
    assert read.text == plain.text == expected["choices"][0]["message"]["content"]
    assert read.finishes == ["stop"]
    usage = read.usage
    assert usage is not None
    assert usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert usage.completion_tokens == expected["usage"]["completion_tokens"]
    assert plain.usage is None  # Anthropic always reports usage; the gateway hid it
    assert all(r["body"]["stream"] is True for r in control(claude, "GET", "requests"))
    rows = gateway.rows()
    assert [(r["status"], r["stream"], r["usage_source"]) for r in rows] == [
        ("ok", 1, "provider")
    ] * 2
    assert rows[0]["tokens_output"] == rows[1]["tokens_output"] == usage.completion_tokens
    assert rows[0]["tokens_input"] == usage.prompt_tokens
    assert all(r["ttft_ms"] is not None for r in rows)


async def test_tool_calls_json_and_streamed(tmp_path: Path, mocks: tuple[str, str]) -> None:
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        whole = await trio.to_thread.run_sync(
            lambda: client.chat.completions.create(model="sonnet", messages=WEATHER, tools=TOOLS)
        )

        def streamed() -> Any:
            with client.chat.completions.stream(
                model="sonnet", messages=WEATHER, tools=TOOLS
            ) as stream:
                return stream.get_final_completion()

        final = await trio.to_thread.run_sync(streamed)
        await gateway.drain()
    for completion in (whole, final):
        [choice] = completion.choices
        assert choice.finish_reason == "tool_calls"
        [call] = choice.message.tool_calls or []
        assert call.type == "function" and call.id.startswith("toolu_")
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"location": "mock", "unit": "celsius"}
    rows = gateway.rows()
    assert [(r["status"], r["usage_source"]) for r in rows] == [("ok", "provider")] * 2
    assert all(r["tokens_output"] > 0 for r in rows)


async def test_overloaded_storm_is_retried_then_a_502(
    tmp_path: Path, mocks: tuple[str, str]
) -> None:
    claude, _ = mocks
    queue_fault(claude, {"status": 529}, count=None)
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        with pytest.raises(openai.APIStatusError) as caught:
            await trio.to_thread.run_sync(
                lambda: client.chat.completions.create(model="sonnet", messages=MESSAGES)
            )
        await gateway.drain()
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_error"
    assert "Overloaded" in caught.value.message
    assert control(claude, "GET", "stats")["statuses"] == {"529": 3}
    [row] = gateway.rows()
    assert (row["status_code"], row["error_code"], row["attempts"]) == (502, "upstream_error", 3)


async def test_error_event_at_the_start_falls_back(tmp_path: Path, mocks: tuple[str, str]) -> None:
    # The upstream answers 200, then `event: error` before message_start, on every attempt the
    # retry policy allows: nothing has reached the client, so the next deployment answers.
    claude, _ = mocks
    queue_fault(claude, {"error_event_after": 0}, count=3)
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)

        def run() -> tuple[str, Any]:
            response = client.chat.completions.with_raw_response.create(
                model="pair", messages=MESSAGES, stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
            return text, response.headers

        text, headers = await trio.to_thread.run_sync(run)
        await gateway.drain()
    assert text
    assert headers["x-circuit-attempts"] == "4"
    assert headers["x-circuit-deployment"] == "claude/claude-haiku-4-5"
    models = [r["body"]["model"] for r in control(claude, "GET", "requests")]
    assert models == ["claude-sonnet-4-5"] * 3 + ["claude-haiku-4-5"]
    [row] = gateway.rows()
    assert (row["status"], row["attempts"], row["usage_source"]) == ("ok", 4, "provider")


async def test_error_event_at_the_start_is_retried(tmp_path: Path, mocks: tuple[str, str]) -> None:
    await error_event_at_the_start_is_retried(
        tmp_path, config(mocks), mocks[0], "sonnet", CLIENT_KEY
    )


async def test_error_event_mid_stream_ends_it_with_an_error(
    tmp_path: Path, mocks: tuple[str, str]
) -> None:
    await error_event_mid_stream_ends_it_with_an_error(
        tmp_path, config(mocks), mocks[0], CLIENT_KEY
    )


async def test_fallback_from_a_failing_openai_upstream(
    tmp_path: Path, mocks: tuple[str, str]
) -> None:
    claude, oai = mocks
    expected = direct_openai_answer(claude, MESSAGES)
    queue_fault(oai, {"status": 500}, count=None)
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        raw = await trio.to_thread.run_sync(
            lambda: client.chat.completions.with_raw_response.create(
                model="mixed", messages=MESSAGES
            )
        )
        completion = raw.parse()
        await gateway.drain()
    meta = raw.http_response.json()["x_gateway"]
    assert (meta["provider"], meta["deployment"]) == ("claude", "claude/claude-sonnet-4-5")
    assert meta["attempts"] == 4  # 3 on the OpenAI upstream, then the Anthropic one
    assert completion.choices[0].message.content == expected["choices"][0]["message"]["content"]
    assert control(oai, "GET", "stats")["statuses"] == {"500": 3}
    [seen] = control(oai, "GET", "requests")[:1]
    oai_headers = headers_of(seen)
    assert oai_headers["authorization"] == f"Bearer {OPENAI_KEY}"
    [seen] = control(claude, "GET", "requests")
    claude_headers = headers_of(seen)
    assert claude_headers["x-api-key"] == ANTHROPIC_KEY and "authorization" not in claude_headers
    [row] = gateway.rows()
    assert (row["status"], row["provider"], row["usage_source"]) == ("ok", "claude", "provider")
    assert row["attempts"] == 4
    assert row["tokens_input"] == expected["usage"]["prompt_tokens"]
    assert row["tokens_output"] == expected["usage"]["completion_tokens"]


async def test_failure_between_message_start_and_the_first_delta_falls_back(
    tmp_path: Path, mocks: tuple[str, str]
) -> None:
    claude, _ = mocks
    queue_fault(claude, {"cut_after": 0})  # message_start, content_block_start, ping, then cut
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        text = await trio.to_thread.run_sync(stream_text, sdk(gateway), "pair", MESSAGES)
        await gateway.drain()
    assert text
    [row] = gateway.rows()
    assert (row["status"], row["attempts"]) == ("ok", 2)
