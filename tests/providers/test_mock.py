"""The in-process mock provider honours the faults `circuitd mock-upstream` honours, the same way:
an in-stream error event after k content chunks, and a tool call answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import trio

from circuitd.config import MockConfig
from circuitd.mockupstream.openai_render import DONE
from circuitd.mockupstream.testing import running_mock_upstream
from circuitd.providers.base import Deployment, UpstreamCall
from circuitd.providers.mock import MockProvider

MOCK = MockProvider("mock", MockConfig())
DEPLOYMENT = Deployment("mock/m", MOCK, "m", None)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


def chat(text: str = "hello", *, stream: bool = False, **fields: Any) -> dict[str, Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": text}], **fields}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


async def answer(body: dict[str, Any]) -> tuple[int, bytes, list[str]]:
    """The provider's status, JSON body and (for a stream) its payloads, batches joined."""
    stream = bool(body.get("stream"))
    call = UpstreamCall("req_1", msgspec.json.encode(body), stream=stream)
    async with MOCK.open(DEPLOYMENT, call) as reply:
        payloads = [p async for batch in reply.batches() for p in batch] if stream else []
        return reply.status, await reply.read(), payloads


async def payloads(body: dict[str, Any]) -> list[str]:
    return (await answer(body))[2]


def content(payload: str) -> str | None:
    choices = json.loads(payload)["choices"]
    return choices[0]["delta"].get("content") if choices else None


async def test_an_error_event_ends_the_stream_after_k_content_chunks() -> None:
    mock = {"error_event_after": 2, "chunks": 5, "message": "overloaded now"}
    role, first, second, error = await payloads(chat(stream=True, mock=mock))
    assert content(role) == "" and content(first) and content(second)
    assert json.loads(error) == {
        "error": {
            "message": "overloaded now",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


async def test_an_error_event_after_zero_chunks_is_the_whole_stream() -> None:
    [error] = await payloads(chat(stream=True, mock={"error_event_after": 0}))
    assert json.loads(error)["error"]["type"] == "server_error"


async def test_an_error_event_past_the_last_chunk_is_never_sent() -> None:
    sent = await payloads(chat(stream=True, mock={"error_event_after": 4, "chunks": 3}))
    assert sent[-1] == DONE.decode() and not any('"error"' in p for p in sent)


async def test_a_weather_question_with_tools_is_answered_with_a_call() -> None:
    status, body, _ = await answer(chat("What's the weather in Paris?", tools=[WEATHER]))
    assert status == 200
    [choice] = json.loads(body)["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_mock")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "mock"}


async def test_a_streamed_call_sends_its_id_and_name_then_the_arguments() -> None:
    sent = await payloads(chat(stream=True, tools=[WEATHER], mock={"tool_call": True}))
    chunks = [json.loads(p) for p in sent[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    start = deltas[0]["tool_calls"][0]
    assert (start["index"], start["function"]) == (0, {"name": "get_weather", "arguments": ""})
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[1:-1])
    assert json.loads(arguments) == {"city": "mock"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == (len(arguments) + 3) // 4


@pytest.mark.parametrize(
    ("body", "calls"),
    [
        (chat("weather?", tools=[WEATHER], mock={"tool_call": False}), False),  # fault forbids
        (chat("weather?", tools=[WEATHER], tool_choice="none"), False),
        (chat("hello", tools=[WEATHER]), False),  # auto, and no mention of the weather
        (chat("hello", tools=[WEATHER], tool_choice="required"), True),
        (chat("hello", tools=[WEATHER], mock={"tool_call": True}), True),  # fault forces
        (chat("weather?", mock={"tool_call": True}), False),  # no tools: nothing to call
    ],
)
async def test_when_the_answer_is_a_call(body: dict[str, Any], calls: bool) -> None:
    [choice] = json.loads((await answer(body))[1])["choices"]
    assert (choice["finish_reason"] == "tool_calls") is calls


@pytest.fixture
def upstream() -> Iterator[str]:
    with running_mock_upstream() as url:
        yield url


def _comparable(body: bytes) -> Any:
    answer = json.loads(body)
    answer.pop("created")
    answer["id"] = "same"
    for call in answer["choices"][0]["message"].get("tool_calls") or ():
        call["id"] = "same"
    return answer


@pytest.mark.parametrize(
    "body",
    [
        chat("What's the weather?", tools=[WEATHER]),
        chat("hello", mock={"tokens": 7, "chunks": 3}),
    ],
)
async def test_the_answer_is_the_mock_upstreams(upstream: str, body: dict[str, Any]) -> None:
    def over_the_socket() -> bytes:
        return httpx.post(f"{upstream}/v1/chat/completions", json=body).content

    in_process = (await answer(body))[1]
    assert _comparable(in_process) == _comparable(await trio.to_thread.run_sync(over_the_socket))
