"""The official `openai` SDK through circuitd to the mock upstream's Anthropic dialect.

circuitd translates the OpenAI chat request into a Messages request (`x-api-key`,
`anthropic-version`) and the answers back, JSON and SSE, tool calls included; the Anthropic
faults (529 storms, error events) go through its retry and fallback like any other.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from circuitd.mockupstream.testing import running_mock_upstream
from tests.harness import Running, running_gateway

CLIENT_KEY = "client-secret-key"
ANTHROPIC_KEY = "sk-ant-upstream-key"
OPENAI_KEY = "sk-openai-upstream-key"
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Tell me about circuit breakers."},
]
WEATHER: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What's the weather in Paris?"}
]
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather at a place.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["location", "unit"],
            },
        },
    }
]

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


def control(root: str, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{root}/_mock/{path}", timeout=30, **kwargs)
    response.raise_for_status()
    return response.json()


def queue_fault(root: str, fault: dict[str, Any], count: int | None = 1) -> None:
    control(root, "POST", "faults", json={"fault": fault, "count": count})


def sdk(gateway: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def direct_openai_answer(root: str, messages: list[ChatCompletionMessageParam]) -> Any:
    """The mock's own OpenAI-dialect answer to `messages` (the same words, the same usage)."""
    answer = httpx.post(
        f"{root}/v1/chat/completions", json={"model": "m", "messages": messages}, timeout=30
    ).json()
    control(root, "POST", "reset")
    return answer


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
    headers = {name.lower(): value for name, value in seen["headers"]}
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

        def run(include_usage: bool) -> tuple[str, Any, list[str | None]]:
            options = {"include_usage": True} if include_usage else openai.omit
            stream = client.chat.completions.create(
                model="sonnet", messages=MESSAGES, stream=True, stream_options=options
            )
            text, usage, finishes = "", None, []
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    finishes.append(choice.finish_reason)
            return text, usage, finishes

        text, usage, finishes = await trio.to_thread.run_sync(run, True)
        plain_text, plain_usage, _ = await trio.to_thread.run_sync(run, False)
        await gateway.drain()
    assert text == plain_text == expected["choices"][0]["message"]["content"]
    assert [f for f in finishes if f is not None] == ["stop"]
    assert usage is not None
    assert usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert usage.completion_tokens == expected["usage"]["completion_tokens"]
    assert plain_usage is None  # Anthropic always reports usage; the gateway hid it
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
    claude, _ = mocks
    queue_fault(claude, {"error_event_after": 0})
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)

        def run() -> str:
            stream = client.chat.completions.create(model="sonnet", messages=MESSAGES, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        text = await trio.to_thread.run_sync(run)
        await gateway.drain()
    assert text
    assert control(claude, "GET", "stats")["requests"] == 2
    [row] = gateway.rows()
    assert (row["status"], row["attempts"]) == ("ok", 2)


async def test_error_event_mid_stream_ends_it_with_an_error(
    tmp_path: Path, mocks: tuple[str, str]
) -> None:
    claude, _ = mocks
    queue_fault(claude, {"error_event_after": 3, "chunks": 10})
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)

        def run() -> str:
            text = ""
            stream = client.chat.completions.create(model="pair", messages=MESSAGES, stream=True)
            for chunk in stream:
                for choice in chunk.choices:
                    text += choice.delta.content or ""
            return text

        with pytest.raises(openai.APIError):
            await trio.to_thread.run_sync(run)
        await gateway.drain()
    assert control(claude, "GET", "stats")["requests"] == 1  # bytes were relayed: no fallback
    [row] = gateway.rows()
    assert (row["status"], row["status_code"], row["usage_source"]) == (
        "partial",
        502,
        "estimated",
    )
    assert row["tokens_output"] > 0


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
    oai_headers = {name.lower(): value for name, value in seen["headers"]}
    assert oai_headers["authorization"] == f"Bearer {OPENAI_KEY}"
    [seen] = control(claude, "GET", "requests")
    claude_headers = {name.lower(): value for name, value in seen["headers"]}
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
        client = sdk(gateway)

        def run() -> str:
            stream = client.chat.completions.create(model="pair", messages=MESSAGES, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        text = await trio.to_thread.run_sync(run)
        await gateway.drain()
    assert text
    [row] = gateway.rows()
    assert (row["status"], row["attempts"]) == ("ok", 2)
