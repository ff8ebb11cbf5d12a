"""The Anthropic stream translation: recorded event sequences → exact OpenAI chunks.

Golden events are checked against the official `anthropic` SDK's stream event types, and the
chunks against the `openai` SDK's `ChatCompletionChunk`.
"""

from __future__ import annotations

import json

import anthropic.types as at
import msgspec
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuitd.core.sse import SSEDecoder, encode_event
from circuitd.wire.anthropic import AnthropicStreamTranslator, StreamError
from tests.providers.adapters import check_openai_chunks, split_at

CREATED = 1_700_000_000
_stream_event = pydantic.TypeAdapter(at.RawMessageStreamEvent)


# --- streams -------------------------------------------------------------------------------


def sse(events: list[tuple[str, str]]) -> bytes:
    return b"".join(encode_event(data, event=name) for name, data in events)


TEXT_STREAM: list[tuple[str, str]] = [
    (
        "message_start",
        '{"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",'
        '"type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929",'
        '"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,'
        '"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}',
    ),
    (
        "content_block_start",
        '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    ),
    ("ping", '{"type": "ping"}'),
    (
        "content_block_delta",
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}',
    ),
    (
        "content_block_delta",
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!\\n\\"Hi\\""}}',
    ),
    ("content_block_stop", '{"type":"content_block_stop","index":0}'),
    (
        "message_delta",
        '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        '"usage":{"output_tokens":15}}',
    ),
    ("message_stop", '{"type":"message_stop"}'),
]

TOOL_STREAM: list[tuple[str, str]] = [
    (
        "message_start",
        '{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message",'
        '"role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,'
        '"usage":{"input_tokens":472,"cache_read_input_tokens":1000,"output_tokens":2},'
        '"content":[],"stop_reason":null}}',
    ),
    (
        "content_block_start",
        '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    ),
    (
        "content_block_delta",
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}',
    ),
    ("content_block_stop", '{"type":"content_block_stop","index":0}'),
    (
        "content_block_start",
        '{"type":"content_block_start","index":1,"content_block":{"type":"tool_use",'
        '"id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}',
    ),
    (
        "content_block_delta",
        '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}',
    ),
    (
        "content_block_delta",
        '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
        '"partial_json":"{\\"location\\":"}}',
    ),
    (
        "content_block_delta",
        '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
        '"partial_json":" \\"SF\\"}"}}',
    ),
    ("content_block_stop", '{"type":"content_block_stop","index":1}'),
    (
        "content_block_start",
        '{"type":"content_block_start","index":2,"content_block":{"type":"tool_use",'
        '"id":"toolu_02","name":"get_time","input":{}}}',
    ),
    (
        "content_block_delta",
        '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}',
    ),
    ("content_block_stop", '{"type":"content_block_stop","index":2}'),
    (
        "message_delta",
        '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
        '"usage":{"output_tokens":89}}',
    ),
    ("message_stop", '{"type":"message_stop"}'),
]


def run_stream(raw_chunks: list[bytes], *, model: str = "fallback") -> list[str]:
    decoder = SSEDecoder()
    translator = AnthropicStreamTranslator(model, CREATED)
    out = [
        payload
        for chunk in raw_chunks
        for event in decoder.feed(chunk)
        for payload in translator.feed(event.event, event.data)
    ]
    decoder.end()
    return out


def check_realistic(events: list[tuple[str, str]]) -> None:
    for name, data in events:
        if name != "ping":
            assert _stream_event.validate_json(data).type == name


def head(message_id: str) -> str:
    return (
        f'{{"id":"chatcmpl-{message_id}","object":"chat.completion.chunk","created":{CREATED},'
        f'"model":"claude-sonnet-4-5-20250929","choices":['
    )


def choice(delta: str, finish: str = "null") -> str:
    return f'{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]}}'


def test_text_stream_exact_chunks() -> None:
    check_realistic(TEXT_STREAM)
    payloads = run_stream([sse(TEXT_STREAM)])
    h = head("msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY")
    assert payloads == [
        h + choice('{"role":"assistant","content":""}'),
        h + choice('{"content":"Hello"}'),
        h + choice('{"content":"!\\n\\"Hi\\""}'),
        h + choice("{}", '"stop"'),
        h + '],"usage":{"prompt_tokens":25,"completion_tokens":15,"total_tokens":40,'
        '"prompt_tokens_details":{"cached_tokens":0}}}',
        "[DONE]",
    ]
    check_openai_chunks(payloads)


def test_tool_stream_exact_chunks() -> None:
    check_realistic(TOOL_STREAM)
    payloads = run_stream([sse(TOOL_STREAM)])
    h = head("msg_014p7gG3wDgGV9EUtLvnow3U")
    assert payloads == [
        h + choice('{"role":"assistant","content":""}'),
        h + choice('{"content":"Okay"}'),
        h
        + choice(
            '{"tool_calls":[{"index":0,"id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","type":"function",'
            '"function":{"name":"get_weather","arguments":""}}]}'
        ),
        h + choice('{"tool_calls":[{"index":0,"function":{"arguments":"{\\"location\\":"}}]}'),
        h + choice('{"tool_calls":[{"index":0,"function":{"arguments":" \\"SF\\"}"}}]}'),
        h
        + choice(
            '{"tool_calls":[{"index":1,"id":"toolu_02","type":"function",'
            '"function":{"name":"get_time","arguments":""}}]}'
        ),
        h + choice('{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]}'),
        h + choice("{}", '"tool_calls"'),
        h + '],"usage":{"prompt_tokens":1472,"completion_tokens":89,"total_tokens":1561,'
        '"prompt_tokens_details":{"cached_tokens":1000}}}',
        "[DONE]",
    ]
    check_openai_chunks(payloads)


def test_error_event_mid_stream() -> None:
    error = '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    raw = sse([*TEXT_STREAM[:4], ("error", error)])
    with pytest.raises(StreamError) as info:
        run_stream([raw])
    assert info.value.error_type == "overloaded_error"
    assert info.value.message == "Overloaded"


def test_events_without_a_name_dispatch_on_their_type_and_unknown_ones_are_ignored() -> None:
    unnamed = b"".join(encode_event(data) for _, data in TEXT_STREAM)
    assert run_stream([unnamed]) == run_stream([sse(TEXT_STREAM)])
    extra = [
        *TEXT_STREAM[:2],
        ("brand_new_event", '{"type":"brand_new_event"}'),
        (
            "content_block_delta",
            '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}',
        ),
        *TEXT_STREAM[2:],
    ]
    assert run_stream([sse(extra)]) == run_stream([sse(TEXT_STREAM)])


def test_message_delta_usage_overrides_message_start() -> None:
    delta = (
        '{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":7,'
        '"input_tokens":30,"cache_creation_input_tokens":5,"cache_read_input_tokens":null}}'
    )
    payloads = run_stream([sse([TEXT_STREAM[0], ("message_delta", delta)])])
    assert json.loads(payloads[-2])["choices"][0]["finish_reason"] == "length"
    assert json.loads(payloads[-1])["usage"] == {
        "prompt_tokens": 35,
        "completion_tokens": 7,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("message_start", '{"type":"message_start"}'),
        ("content_block_delta", "not json"),
        ("message", '{"no_type": 1}'),
    ],
)
def test_malformed_events(name: str, data: str) -> None:
    with pytest.raises(StreamError, match="invalid_stream"):
        AnthropicStreamTranslator("m", CREATED).feed(name, data)


def test_content_before_message_start() -> None:
    with pytest.raises(StreamError, match="before message_start"):
        AnthropicStreamTranslator("m", CREATED).feed(*TEXT_STREAM[3])


@given(st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_chunks(cuts: list[int]) -> None:
    raw = sse(TOOL_STREAM)
    assert run_stream(split_at(raw, cuts)) == run_stream([raw])


@given(st.lists(st.text(), max_size=8))
def test_text_deltas_concatenate_to_the_same_content(texts: list[str]) -> None:
    translator = AnthropicStreamTranslator("m", CREATED)
    translator.feed(*TEXT_STREAM[0])
    content: list[str] = []
    for text in texts:
        data = msgspec.json.encode(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            }
        ).decode()
        payloads = translator.feed("content_block_delta", data)
        content.extend(json.loads(p)["choices"][0]["delta"]["content"] for p in payloads)
    assert "".join(content) == "".join(texts)
