"""The Anthropic dialect's pure parts and the faults both dialects share, without a socket
(but for the OpenAI error event, checked with its SDK)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import openai
import pytest

from circuitd.mockupstream.anthropic import (
    Turn,
    decode_request,
    example_input,
    plan_reply,
    prompt_view,
)
from circuitd.mockupstream.anthropic_render import error_body, render_events, render_message
from circuitd.mockupstream.faults import CUT, DELAY, NO_FAULT, STALL, Fault, Frames, stream_steps
from circuitd.mockupstream.script import plan_completion
from tests.mockupstream.conftest import MESSAGES

FRAMES = Frames(
    head=[b"H"], content=[b"c0", b"c1", b"c2"], tail=[b"T", b"D"], malformed=b"M", error=b"E"
)


def request(**fields: Any) -> bytes:
    base = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    return json.dumps({**base, **fields}).encode()


@pytest.mark.parametrize(
    ("fault", "steps"),
    [
        (NO_FAULT, [b"H", b"c0", b"c1", b"c2", b"T", b"D"]),
        (Fault(error_event_after=0), [b"E"]),
        (Fault(error_event_after=2), [b"H", b"c0", b"c1", b"E"]),
        (Fault(error_event_after=3), [b"H", b"c0", b"c1", b"c2", b"E"]),
        (Fault(error_event_after=4), [b"H", b"c0", b"c1", b"c2", b"T", b"D"]),  # never reached
        (Fault(cut_after=0), [b"H", CUT]),
        (Fault(stall_after=1), [b"H", b"c0", STALL]),
        (Fault(malformed_after=1, error_event_after=1), [b"H", b"c0", b"M", b"E"]),
        (Fault(chunk_delay_ms=1, cut_after=1), [b"H", DELAY, b"c0", CUT]),
    ],
)
def test_stream_steps(fault: Fault, steps: list[object]) -> None:
    assert list(stream_steps(FRAMES, fault)) == steps


def test_new_fault_fields_validate() -> None:
    assert msgspec.convert({"error_event_after": 0, "tool_call": True}, Fault).tool_call
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"error_event_after": -1}, Fault)
    assert not Fault(error_event_after=1, tool_call=True).timed


def test_prompt_view_is_the_openai_conversation() -> None:
    messages = decode_request(
        request(
            system=[{"type": "text", "text": "Be terse."}],
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
                        {"type": "text", "text": "Thanks."},
                    ],
                },
            ],
        )
    )
    view = prompt_view(messages)
    assert [t.role for t in view.messages] == ["system", "user", "assistant", "tool", "user"]
    assert view.messages[3] == Turn("tool", "sunny")
    assert (view.max_tokens, view.max_completion_tokens) == (100, None)


def test_same_words_as_the_openai_plan() -> None:
    class Chat(msgspec.Struct):
        messages: list[Turn]
        max_tokens: int | None = None
        max_completion_tokens: int | None = None

    openai_like = Chat([Turn(m["role"], m["content"]) for m in MESSAGES])
    system, user = MESSAGES
    body = request(system=system["content"], messages=[user])
    reply = plan_reply(decode_request(body), NO_FAULT)
    plan = plan_completion(openai_like)
    assert reply.text == plan and reply.tool is None and reply.stop_reason == "end_turn"
    assert (reply.input_tokens, reply.output_tokens) == (plan.prompt_tokens, plan.completion_tokens)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (None, {}),
        ({"type": "object"}, {}),
        (
            {
                "type": "object",
                "properties": {
                    "s": {"type": "string"},
                    "n": {"type": "number"},
                    "i": {"type": ["integer", "null"]},
                    "b": {"type": "boolean"},
                    "a": {"type": "array"},
                    "e": {"enum": ["x", "y"]},
                    "d": {"type": "string", "default": "dflt"},
                    "o": {"type": "object", "properties": {"inner": {"type": "string"}}},
                },
            },
            {
                "s": "mock",
                "n": 1,
                "i": 1,
                "b": True,
                "a": [],
                "e": "x",
                "d": "dflt",
                "o": {"inner": "mock"},
            },
        ),
        (
            {"properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["b"]},
            {"b": 1},
        ),
    ],
)
def test_example_input(schema: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    assert example_input(schema) == expected


def test_tool_input_pieces_follow_chunks() -> None:
    tools = [{"name": "w", "input_schema": {"properties": {"location": {"type": "string"}}}}]
    body = decode_request(request(tools=tools, tool_choice={"type": "any"}))
    reply = plan_reply(body, Fault(chunks=2))
    assert reply.tool is not None and reply.tool.arguments == b'{"location":"mock"}'
    assert reply.tool.pieces[0] == "" and len(reply.tool.pieces) == 3
    assert "".join(reply.tool.pieces) == reply.tool.arguments.decode()
    assert reply.output_tokens == (len(reply.tool.arguments) + 3) // 4
    frames = render_events(reply, id="msg_1", model="m", tool_id="toolu_1")
    assert len(frames.content) == 3
    message = json.loads(render_message(reply, id="msg_1", model="m", tool_id="toolu_1"))
    assert message["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"location": "mock"}}
    ]


def test_error_bodies() -> None:
    assert json.loads(error_body(529)) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert json.loads(error_body(503, "busy"))["error"] == {"type": "api_error", "message": "busy"}
    assert json.loads(error_body(422))["error"]["type"] == "invalid_request_error"
    assert json.loads(error_body(429, request_id="req_1"))["request_id"] == "req_1"


def test_openai_error_event_raises_in_the_sdk(sdk: openai.OpenAI) -> None:
    seen: list[object] = []
    with pytest.raises(openai.APIError, match="overloaded now"):
        for chunk in sdk.chat.completions.create(
            model="m",
            messages=MESSAGES,
            stream=True,
            extra_body={"mock": {"error_event_after": 2, "chunks": 5, "message": "overloaded now"}},
        ):
            seen.append(chunk)  # noqa: PERF402 - keep what came before the error
    assert len(seen) == 3  # the role chunk and 2 content chunks
    with pytest.raises(openai.APIError):
        list(
            sdk.chat.completions.create(
                model="m",
                messages=MESSAGES,
                stream=True,
                extra_body={"mock": {"error_event_after": 0}},
            )
        )


def test_openai_tool_call_json_and_streamed_in_the_sdk(sdk: openai.OpenAI) -> None:
    tool: Any = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"properties": {"q": {"type": "string"}}}},
    }
    ask: Any = [{"role": "user", "content": "hi"}]
    forced = {"mock": {"tool_call": True, "chunks": 2}}
    whole = sdk.chat.completions.create(model="m", messages=ask, tools=[tool], extra_body=forced)
    [call] = whole.choices[0].message.tool_calls or []
    assert whole.choices[0].finish_reason == "tool_calls"
    assert call.type == "function" and call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"q": "mock"}
    pieces = [
        delta.function.arguments
        for chunk in sdk.chat.completions.create(
            model="m", messages=ask, tools=[tool], stream=True, extra_body=forced
        )
        for choice in chunk.choices
        for delta in choice.delta.tool_calls or ()
        if delta.function is not None and delta.function.arguments
    ]
    assert len(pieces) == 2 and "".join(pieces) == call.function.arguments
