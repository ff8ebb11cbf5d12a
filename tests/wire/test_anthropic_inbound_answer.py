"""Inbound Anthropic translation, answer side: OpenAI completions, chunk streams and errors →
Messages answers, as golden tables checked against the official `anthropic` SDK's types (and
its own stream accumulator), without an event loop."""

from __future__ import annotations

import json
from typing import Any

import anthropic.types as at
import msgspec
import pydantic
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import given
from hypothesis import strategies as st

from circuitd.core.sse import SSEDecoder
from circuitd.wire.anthropic import AnthropicStreamTranslator
from circuitd.wire.anthropic_inbound_answer import error_body, openai_completion_to_anthropic
from circuitd.wire.anthropic_inbound_stream import ChunkTranslator
from tests.providers.test_anthropic_stream import TEXT_STREAM, TOOL_STREAM, sse

_event = pydantic.TypeAdapter(at.RawMessageStreamEvent)


def completion(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> bytes:
    body = {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        "usage": {
            "prompt_tokens": 30,
            "completion_tokens": 7,
            "total_tokens": 37,
            "prompt_tokens_details": {"cached_tokens": 10},
        },
        **extra,
    }
    return json.dumps(body).encode()


def answer(body: bytes, stops: tuple[str, ...] = ()) -> dict[str, Any]:
    out = openai_completion_to_anthropic(
        body, model="asked", fallback_id="req_1", stop_sequences=stops
    )
    at.Message.model_validate_json(out)  # what the Anthropic SDK parses
    result: dict[str, Any] = json.loads(out)
    return result


def test_text_answer_exact() -> None:
    assert answer(completion({"content": "Hello."})) == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o-mini-2024-07-18",
        "content": [{"type": "text", "text": "Hello."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 20,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 10,
            "output_tokens": 7,
        },
    }


def test_tool_calls_answer() -> None:
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "noop", "arguments": ""}},
        {
            "id": "call_3",
            "type": "function",
            "function": {"name": "broken", "arguments": "{not json"},
        },
    ]
    out = answer(completion({"content": None, "tool_calls": calls}, "tool_calls"))
    assert out["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "noop", "input": {}},
        {"type": "tool_use", "id": "call_3", "name": "broken", "input": {}},
    ]
    assert out["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish", "extra", "stops", "expected"),
    [
        ("stop", {}, (), ("end_turn", None)),
        (None, {}, (), ("end_turn", None)),
        ("length", {}, (), ("max_tokens", None)),
        ("tool_calls", {}, (), ("tool_use", None)),
        ("function_call", {}, (), ("tool_use", None)),
        ("content_filter", {}, (), ("refusal", None)),
        ("stop", {"stop_reason": "END"}, ("END",), ("stop_sequence", "END")),
        ("stop", {"stop_reason": "END"}, (), ("end_turn", None)),  # not one the client asked for
        ("stop", {"stop_reason": 128001}, ("END",), ("end_turn", None)),  # vLLM: a stop token id
    ],
)
def test_stop_reasons(
    finish: str | None,
    extra: dict[str, Any],
    stops: tuple[str, ...],
    expected: tuple[str, str | None],
) -> None:
    body = json.loads(completion({"content": "x"}, finish))
    body["choices"][0].update(extra)
    out = answer(json.dumps(body).encode(), stops)
    assert (out["stop_reason"], out["stop_sequence"]) == expected


def test_ids_refusal_meta_and_missing_pieces() -> None:
    body = completion(
        {"content": "", "refusal": "I can't."}, "stop", x_gateway={"request_id": "req_9"}
    )
    body = body.replace(b'"chatcmpl-abc"', b'"chatcmpl-msg_01XY"')
    out = answer(body)
    assert out["id"] == "msg_01XY"  # an Anthropic upstream's id comes back unchanged
    assert out["content"] == [{"type": "text", "text": "I can't."}]
    assert out["x_gateway"] == {"request_id": "req_9"}
    bare = answer(b'{"choices":[]}')
    assert bare["id"] == "msg_req_1" and bare["model"] == "asked" and bare["content"] == []
    assert bare["usage"]["input_tokens"] == 0 and bare["stop_reason"] == "end_turn"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (405, "invalid_request_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_types_follow_the_status(status: int, kind: str) -> None:
    openai = b'{"error":{"message":"Nope.","type":"x","code":"y","param":null}}'
    out = json.loads(error_body(status, openai, request_id="req_1"))
    assert out == {
        "type": "error",
        "error": {"type": kind, "message": "Nope."},
        "request_id": "req_1",
    }
    if kind != "request_too_large":  # the API's own type for 413, not in the SDK's union
        pydantic.TypeAdapter(at.ErrorResponse).validate_python(out)


def test_error_bodies_already_anthropic_or_not_json() -> None:
    anthropic_body = b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}'
    assert error_body(400, anthropic_body) == anthropic_body
    out = json.loads(error_body(502, b"<html>Bad Gateway</html>"))
    assert out["error"] == {
        "type": "api_error",
        "message": "Request failed with status 502: <html>Bad Gateway</html>",
    }


# --- streams -------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> str:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return json.dumps(
        {
            "id": "chatcmpl-s1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-x",
            "choices": choices,
            **extra,
        }
    )


USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
TEXT_CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo"}),
    chunk({}, "stop"),
    chunk(None, usage=USAGE),
]


def events(payloads: list[str], stops: tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """Translated events as (name, data), each checked against the SDK's event types."""
    translator = ChunkTranslator(model="asked", fallback_id="req_1", stop_sequences=stops)
    raw = b"".join(translator.feed(p) for p in payloads) + translator.end()
    out = []
    for event in SSEDecoder().feed(raw):
        data = json.loads(event.data)
        assert data["type"] == event.event
        if event.event != "ping":  # not in the SDK's event union: its stream skips pings
            _event.validate_python(data)
        out.append((event.event, data))
    return out


def accumulate(items: list[tuple[str, dict[str, Any]]]) -> at.Message:
    snapshot = None
    bufs: dict[int, bytes] = {}
    for name, data in items:
        if name == "ping":
            continue
        snapshot = accumulate_event(
            event=_event.validate_python(data), current_snapshot=snapshot, json_bufs=bufs
        )
    assert snapshot is not None
    return snapshot


def test_text_stream_exact_sequence() -> None:
    assert events(TEXT_CHUNKS) == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_s1",
                    "type": "message",
                    "role": "assistant",
                    "model": "gpt-x",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 0,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 0,
                    },
                },
            },
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hel"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "lo"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {
                    "input_tokens": 12,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 3,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_each_chunk_is_translated_when_it_arrives() -> None:
    translator = ChunkTranslator(model="m", fallback_id="r", stop_sequences=())
    assert b"event: message_start" in translator.feed(TEXT_CHUNKS[0])
    assert translator.feed(TEXT_CHUNKS[1]).count(b"event: content_block_delta") == 1
    assert translator.feed(TEXT_CHUNKS[4]) == b""  # usage waits for message_delta


def test_tool_stream_text_then_two_calls() -> None:
    payloads = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Checking."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "Paris"}'}}]}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "noop", "arguments": "{}"},
                    }
                ]
            }
        ),
        chunk({}, "tool_calls"),
        chunk(None, usage=USAGE),
    ]
    items = events(payloads)
    names = [name for name, _ in items]
    assert names == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert items[5][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "get_weather",
        "input": {},
    }
    message = accumulate(items)
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"location": "Paris"}  # type: ignore[union-attr]
    assert message.content[2].input == {}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use" and message.usage.output_tokens == 3


def test_stream_stop_sequence_and_missing_usage() -> None:
    payloads = [
        chunk({"content": "a"}),
        chunk(
            {},
            "stop",
        ),
    ]
    body = json.loads(payloads[1])
    body["choices"][0]["stop_reason"] = "END"
    items = events([payloads[0], json.dumps(body)], stops=("END",))
    assert items[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert items[-2][1]["usage"]["output_tokens"] == 0  # the upstream reported none


def test_empty_complete_stream() -> None:
    translator = ChunkTranslator(model="m", fallback_id="req_7", stop_sequences=())
    names = [e.event for e in SSEDecoder().feed(translator.end())]
    assert names == ["message_start", "ping", "message_delta", "message_stop"]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("upstream_error", "api_error"),
        ("upstream_timeout", "api_error"),
        ("service_unavailable", "overloaded_error"),
    ],
)
def test_error_frame_becomes_an_error_event(code: str, kind: str) -> None:
    translator = ChunkTranslator(model="m", fallback_id="r", stop_sequences=())
    translator.feed(TEXT_CHUNKS[1])
    frame = json.dumps(
        {
            "error": {
                "message": "Upstream stream ended before completion.",
                "type": code,
                "code": code,
            }
        }
    )
    [event] = SSEDecoder().feed(translator.feed(frame))
    assert event.event == "error"
    data = json.loads(event.data)
    assert data == {
        "type": "error",
        "error": {"type": kind, "message": "Upstream stream ended before completion."},
    }
    pydantic.TypeAdapter(at.ErrorResponse).validate_python(data)


@pytest.mark.parametrize("recorded", [TEXT_STREAM, TOOL_STREAM], ids=["text", "tools"])
def test_round_trip_anthropic_stream_through_canonical_chunks(
    recorded: list[tuple[str, str]],
) -> None:
    """An Anthropic upstream's stream → canonical chunks (the outbound translator) → Anthropic
    events again: the SDK accumulates the same message."""
    outbound = AnthropicStreamTranslator("fallback", 1)
    payloads = [p for e in SSEDecoder().feed(sse(recorded)) for p in outbound.feed(e.event, e.data)]
    assert payloads[-1] == "[DONE]"
    back = accumulate(events(payloads[:-1]))
    original = accumulate([(name, json.loads(data)) for name, data in recorded])
    assert back.id == original.id and back.model == original.model
    assert [b.to_dict() for b in back.content] == [b.to_dict() for b in original.content]
    assert back.stop_reason == original.stop_reason
    assert back.usage.input_tokens == original.usage.input_tokens
    assert back.usage.output_tokens == original.usage.output_tokens
    assert (back.usage.cache_read_input_tokens or 0) == (
        original.usage.cache_read_input_tokens or 0
    )


@given(st.lists(st.text(min_size=1, max_size=8), max_size=6), st.integers(0, 5))
def test_text_survives_any_chunking(pieces: list[str], extra_roles: int) -> None:
    payloads = [chunk({"role": "assistant", "content": ""})] * extra_roles
    payloads += [chunk({"content": p}) for p in pieces] + [chunk({}, "stop")]
    message = accumulate(events(payloads))
    text = "".join(pieces)
    assert [b.text for b in message.content if b.type == "text"] == ([text] if text else [])


def test_chunks_the_relay_accepts_never_fail() -> None:
    odd = chunk(
        {"content": "x", "tool_calls": ["garbage", {"index": "zero", "function": {"arguments": 5}}]}
    )
    translator = ChunkTranslator(model="m", fallback_id="r", stop_sequences=())
    assert b"text_delta" in translator.feed(odd)
    with pytest.raises(msgspec.DecodeError):
        translator.feed("{not json")
