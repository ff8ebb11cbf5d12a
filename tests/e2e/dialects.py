"""What the e2e tests of the provider dialects share (test_anthropic, test_gemini,
test_messages): the conversations, the weather tool, the mock upstream's control API,
reading a stream through the official `openai` SDK, and the fault scenarios every translated
dialect meets alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from openai.types.completion_usage import CompletionUsage

from tests.harness import Running, running_gateway

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Tell me about circuit breakers."},
]
WEATHER: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What's the weather in Paris?"}
]
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "location": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location", "unit"],
}
WEATHER_DESCRIPTION = "The current weather at a place."
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": WEATHER_DESCRIPTION,
            "parameters": WEATHER_SCHEMA,
        },
    }
]


def control(root: str, method: str, path: str, **kwargs: Any) -> Any:
    """A call of the mock upstream's control API (`/_mock/...`) at `root`."""
    response = httpx.request(method, f"{root}/_mock/{path}", timeout=30, **kwargs)
    response.raise_for_status()
    return response.json()


def queue_fault(root: str, fault: dict[str, Any], count: int | None = 1) -> None:
    control(root, "POST", "faults", json={"fault": fault, "count": count})


def direct_openai_answer(root: str, messages: list[ChatCompletionMessageParam]) -> Any:
    """The mock's own OpenAI-dialect answer to `messages` (the same words, the same usage)."""
    answer = httpx.post(
        f"{root}/v1/chat/completions", json={"model": "m", "messages": messages}, timeout=30
    ).json()
    control(root, "POST", "reset")
    return answer


def headers_of(seen: Any) -> dict[str, str]:
    """A logged request's headers (`/_mock/requests`), names lower-cased."""
    return {name.lower(): value for name, value in seen["headers"]}


@dataclass
class StreamRead:
    text: str
    usage: CompletionUsage | None
    finishes: list[str]  # the finish reasons seen, in order


def read_stream(
    client: openai.OpenAI,
    model: str,
    messages: list[ChatCompletionMessageParam],
    *,
    include_usage: bool = False,
) -> StreamRead:
    """A streamed completion read to its end (blocking: run it in a thread)."""
    options: Any = {"include_usage": True} if include_usage else openai.omit
    stream = client.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options=options
    )
    read = StreamRead("", None, [])
    for chunk in stream:
        if chunk.usage is not None:
            read.usage = chunk.usage
        for choice in chunk.choices:
            read.text += choice.delta.content or ""
            if choice.finish_reason is not None:
                read.finishes.append(choice.finish_reason)
    return read


def stream_text(
    client: openai.OpenAI, model: str, messages: list[ChatCompletionMessageParam]
) -> str:
    """A streamed completion's text (blocking: run it in a thread)."""
    return read_stream(client, model, messages).text


def openai_sdk(gateway: Running, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


# Fault scenarios that every translated dialect must meet alike. `config_text` routes `model`
# to the deployment at `root` (a mock upstream) and `pair` to two deployments there; `key`
# is a client key it knows.


async def error_event_at_the_start_is_retried(
    tmp_path: Path, config_text: str, root: str, model: str, key: str
) -> None:
    queue_fault(root, {"error_event_after": 0})
    async with running_gateway(tmp_path, config_text=config_text) as gateway:
        text = await trio.to_thread.run_sync(stream_text, openai_sdk(gateway, key), model, MESSAGES)
        await gateway.drain()
    assert text
    assert control(root, "GET", "stats")["requests"] == 2
    [row] = gateway.rows()
    assert (row["status"], row["attempts"]) == ("ok", 2)


async def error_event_mid_stream_ends_it_with_an_error(
    tmp_path: Path, config_text: str, root: str, key: str
) -> None:
    queue_fault(root, {"error_event_after": 3, "chunks": 10})
    async with running_gateway(tmp_path, config_text=config_text) as gateway:
        with pytest.raises(openai.APIError):
            await trio.to_thread.run_sync(stream_text, openai_sdk(gateway, key), "pair", MESSAGES)
        await gateway.drain()
    assert control(root, "GET", "stats")["requests"] == 1  # content was relayed: no fallback
    [row] = gateway.rows()
    assert (row["status"], row["status_code"], row["usage_source"]) == (
        "partial",
        502,
        "estimated",
    )
    assert row["tokens_output"] > 0
