"""The official `openai` SDK through circuitd to the mock upstream's Gemini dialect.

circuitd translates the OpenAI chat request into a `generateContent` request
(`x-goog-api-key`, the model in the URL) and the answers back, JSON and SSE, tool calls
included; Gemini's faults (503 storms, 429s, error events) go through its retry and fallback
like any other provider's.
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
from openai.types.chat import ChatCompletionMessageParam

from circuitd.mockupstream.gemini_render import signature
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
GEMINI_KEY = "AIza-upstream-key"
OPENAI_KEY = "sk-openai-upstream-key"
FLASH = "/v1beta/models/gemini-2.5-flash:generateContent"
FLASH_STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"

CONFIG = """
[retry]
max_attempts = 3
base_s = 0.001
max_backoff_s = 0.002

[providers.gem]
kind = "gemini"
base_url = "{gem}"
api_key = "{gemini_key}"

[providers.oai]
kind = "openai"
base_url = "{oai}/v1"
api_key = "{openai_key}"

[models.flash]
deployments = [{{ provider = "gem", model = "gemini-2.5-flash" }}]

[models.pair]
deployments = [
  {{ provider = "gem", model = "gemini-2.5-flash" }},
  {{ provider = "gem", model = "gemini-2.5-pro" }},
]

[models.mixed]
deployments = [
  {{ provider = "gem", model = "gemini-2.5-flash" }},
  {{ provider = "oai", model = "gpt-4o-mini" }},
]

[[keys]]
id = "app"
key = "{client_key}"
"""


@pytest.fixture
def mocks() -> Iterator[tuple[str, str]]:
    """Root URLs of two mock upstreams: the one spoken to in Gemini's dialect, an OpenAI one."""
    with running_mock_upstream() as gem, running_mock_upstream() as oai:
        yield gem, oai


def config(mocks: tuple[str, str]) -> str:
    gem, oai = mocks
    return CONFIG.format(
        gem=gem, oai=oai, gemini_key=GEMINI_KEY, openai_key=OPENAI_KEY, client_key=CLIENT_KEY
    )


def sdk(gateway: Running) -> openai.OpenAI:
    return openai_sdk(gateway, CLIENT_KEY)


async def test_json_completion(tmp_path: Path, mocks: tuple[str, str]) -> None:
    gem, _ = mocks
    expected = direct_openai_answer(gem, MESSAGES)
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        raw = await trio.to_thread.run_sync(
            lambda: client.chat.completions.with_raw_response.create(
                model="flash", messages=MESSAGES, temperature=0.3, max_tokens=500
            )
        )
        completion = raw.parse()
        await gateway.drain()
    [choice] = completion.choices
    assert choice.message.content == expected["choices"][0]["message"]["content"]
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert completion.model == "gemini-2.5-flash" and completion.id.startswith("chatcmpl-mock")
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert usage.completion_tokens == expected["usage"]["completion_tokens"]
    meta = raw.http_response.json()["x_gateway"]
    assert (meta["provider"], meta["deployment"]) == ("gem", "gem/gemini-2.5-flash")
    assert meta["attempts"] == 1 and meta["cost_usd"] > 0

    [seen] = control(gem, "GET", "requests")
    assert seen["path"] == FLASH
    headers = headers_of(seen)
    assert headers["x-goog-api-key"] == GEMINI_KEY and "authorization" not in headers
    assert CLIENT_KEY not in json.dumps(seen)
    assert seen["body"] == {
        "contents": [{"parts": [{"text": "Tell me about circuit breakers."}], "role": "user"}],
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "generationConfig": {"maxOutputTokens": 500, "temperature": 0.3},
    }

    [row] = gateway.rows()
    assert (row["status"], row["status_code"], row["usage_source"]) == ("ok", 200, "provider")
    assert (row["provider"], row["deployment"]) == ("gem", "gem/gemini-2.5-flash")
    assert row["tokens_input"] == usage.prompt_tokens
    assert row["tokens_output"] == usage.completion_tokens
    assert row["cost_micro_usd"] > 0 and row["request_id"] == meta["request_id"]


async def test_stream_content_and_usage(tmp_path: Path, mocks: tuple[str, str]) -> None:
    gem, _ = mocks
    expected = direct_openai_answer(gem, MESSAGES)
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        read = await trio.to_thread.run_sync(
            partial(read_stream, client, "flash", MESSAGES, include_usage=True)
        )
        plain = await trio.to_thread.run_sync(read_stream, client, "flash", MESSAGES)
        await gateway.drain()
    assert read.text == plain.text == expected["choices"][0]["message"]["content"]
    assert read.finishes == ["stop"]
    usage = read.usage
    assert usage is not None
    assert usage.prompt_tokens == expected["usage"]["prompt_tokens"]
    assert usage.completion_tokens == expected["usage"]["completion_tokens"]
    assert plain.usage is None  # Gemini always reports usage; the gateway hid it
    assert {r["path"] for r in control(gem, "GET", "requests")} == {FLASH_STREAM}
    rows = gateway.rows()
    assert [(r["status"], r["stream"], r["usage_source"]) for r in rows] == [
        ("ok", 1, "provider")
    ] * 2
    assert rows[0]["tokens_output"] == rows[1]["tokens_output"] == usage.completion_tokens
    assert all(r["ttft_ms"] is not None for r in rows)


async def test_a_stream_without_usage_metadata_is_estimated(
    tmp_path: Path, mocks: tuple[str, str]
) -> None:
    gem, _ = mocks
    queue_fault(gem, {"omit_usage": True})
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        text = await trio.to_thread.run_sync(stream_text, sdk(gateway), "flash", MESSAGES)
        await gateway.drain()
    assert text
    [row] = gateway.rows()
    assert (row["status"], row["usage_source"]) == ("ok", "estimated")
    assert row["tokens_output"] > 0


async def test_tool_calls_json_and_streamed_then_the_result(
    tmp_path: Path, mocks: tuple[str, str]
) -> None:
    gem, _ = mocks
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        whole = await trio.to_thread.run_sync(
            lambda: client.chat.completions.create(model="flash", messages=WEATHER, tools=TOOLS)
        )

        def streamed() -> Any:
            with client.chat.completions.stream(
                model="flash", messages=WEATHER, tools=TOOLS
            ) as stream:
                return stream.get_final_completion()

        final = await trio.to_thread.run_sync(streamed)
        [call] = whole.choices[0].message.tool_calls or []
        history: list[ChatCompletionMessageParam] = [
            *WEATHER,
            whole.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "21C"},
        ]
        answer = await trio.to_thread.run_sync(
            lambda: client.chat.completions.create(model="flash", messages=history, tools=TOOLS)
        )
        await gateway.drain()
    for completion in (whole, final):
        [choice] = completion.choices
        assert choice.finish_reason == "tool_calls"
        [tool_call] = choice.message.tool_calls or []
        assert tool_call.type == "function" and tool_call.id.startswith("call_mock")
        assert tool_call.function.name == "get_weather"
        assert json.loads(tool_call.function.arguments) == {"location": "mock", "unit": "celsius"}
        extra = tool_call.model_dump()["extra_content"]
        assert extra == {"google": {"thought_signature": signature("get_weather")}}
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content
    last = control(gem, "GET", "requests")[-1]["body"]
    assert last["contents"][1:] == [
        {
            "parts": [
                {
                    "functionCall": {
                        "name": "get_weather",
                        "args": {"location": "mock", "unit": "celsius"},
                    },
                    # back as it came, through the OpenAI SDK's message (Gemini 3 checks it)
                    "thoughtSignature": signature("get_weather"),
                }
            ],
            "role": "model",
        },
        {
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "21C"}}}],
            "role": "user",
        },
    ]
    rows = gateway.rows()
    assert [(r["status"], r["usage_source"]) for r in rows] == [("ok", "provider")] * 3


async def test_unavailable_storm_is_retried_then_a_502(
    tmp_path: Path, mocks: tuple[str, str]
) -> None:
    gem, _ = mocks
    queue_fault(gem, {"status": 503}, count=None)
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        with pytest.raises(openai.APIStatusError) as caught:
            await trio.to_thread.run_sync(
                lambda: client.chat.completions.create(model="flash", messages=MESSAGES)
            )
        await gateway.drain()
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_error"
    assert "overloaded" in caught.value.message
    assert control(gem, "GET", "stats")["statuses"] == {"503": 3}
    [row] = gateway.rows()
    assert (row["status_code"], row["error_code"], row["attempts"]) == (502, "upstream_error", 3)


async def test_a_bad_request_is_not_retried(tmp_path: Path, mocks: tuple[str, str]) -> None:
    gem, _ = mocks
    queue_fault(gem, {"status": 400, "message": "* GenerationConfig.temperature: too hot"})
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        with pytest.raises(openai.BadRequestError) as caught:
            await trio.to_thread.run_sync(
                lambda: client.chat.completions.create(model="pair", messages=MESSAGES)
            )
        await gateway.drain()
    assert caught.value.code == "invalid_argument"
    assert "too hot" in caught.value.message
    assert control(gem, "GET", "stats")["requests"] == 1
    [row] = gateway.rows()
    assert (row["status_code"], row["attempts"]) == (400, 1)


async def test_error_event_at_the_start_is_retried(tmp_path: Path, mocks: tuple[str, str]) -> None:
    await error_event_at_the_start_is_retried(
        tmp_path, config(mocks), mocks[0], "flash", CLIENT_KEY
    )


async def test_error_event_mid_stream_ends_it_with_an_error(
    tmp_path: Path, mocks: tuple[str, str]
) -> None:
    await error_event_mid_stream_ends_it_with_an_error(
        tmp_path, config(mocks), mocks[0], CLIENT_KEY
    )


async def test_fallback_from_a_failing_gemini_upstream_to_an_openai_one(
    tmp_path: Path, mocks: tuple[str, str]
) -> None:
    gem, oai = mocks
    expected = direct_openai_answer(oai, MESSAGES)
    queue_fault(gem, {"status": 500}, count=None)
    async with running_gateway(tmp_path, config_text=config(mocks)) as gateway:
        client = sdk(gateway)
        raw = await trio.to_thread.run_sync(
            lambda: client.chat.completions.with_raw_response.create(
                model="mixed", messages=MESSAGES
            )
        )
        completion = raw.parse()
        text = await trio.to_thread.run_sync(stream_text, client, "mixed", MESSAGES)
        await gateway.drain()
    meta = raw.http_response.json()["x_gateway"]
    assert (meta["provider"], meta["deployment"]) == ("oai", "oai/gpt-4o-mini")
    assert meta["attempts"] == 4  # 3 on the Gemini upstream, then the OpenAI one
    assert completion.choices[0].message.content == expected["choices"][0]["message"]["content"]
    assert text == expected["choices"][0]["message"]["content"]
    assert set(control(gem, "GET", "stats")["statuses"]) == {"500"}
    [seen] = control(oai, "GET", "requests")[:1]
    headers = headers_of(seen)
    assert headers["authorization"] == f"Bearer {OPENAI_KEY}" and "x-goog-api-key" not in headers
    rows = gateway.rows()
    assert [(r["status"], r["provider"], r["usage_source"]) for r in rows] == [
        ("ok", "oai", "provider")
    ] * 2


async def test_env_only_gemini_with_an_openai_fallback(
    tmp_path: Path, mocks: tuple[str, str]
) -> None:
    gem, oai = mocks
    queue_fault(gem, {"status": 503}, count=None)
    env = {
        "PROVIDER": "GEMINI",
        "GEMINI_API_KEY": GEMINI_KEY,
        "GEMINI_BASE_URL": gem,
        "CIRCUIT_FALLBACK": "OPENAI",
        "CIRCUIT_FALLBACK_MODEL": "gpt-4o-mini",
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": oai + "/v1",
        "CIRCUIT_API_KEYS": CLIENT_KEY,
    }
    async with running_gateway(tmp_path, env=env) as gateway:
        client = sdk(gateway)
        raw = await trio.to_thread.run_sync(
            lambda: client.chat.completions.with_raw_response.create(
                model="gemini-2.5-flash", messages=MESSAGES
            )
        )
        await gateway.drain()
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-circuit-provider"] == "openai"
    first = control(gem, "GET", "requests")[0]
    assert first["path"] == FLASH
    assert headers_of(first)["x-goog-api-key"] == GEMINI_KEY
    assert control(oai, "GET", "requests")[0]["body"]["model"] == "gpt-4o-mini"
