"""The Gemini stream translation: recorded event sequences → exact OpenAI chunks.

Golden events are checked against the `google-genai` SDK's `GenerateContentResponse`, and
the chunks against the `openai` SDK's `ChatCompletionChunk`.
"""

from __future__ import annotations

import json

import msgspec
import pytest
from google.genai import types as gt
from hypothesis import given
from hypothesis import strategies as st

from circuitd.core.sse import SSEDecoder
from circuitd.wire.gemini import GeminiStreamTranslator, StreamError
from tests.providers.adapters import check_openai_chunks, split_at

CREATED = 1_700_000_000
USAGE_SO_FAR = '"usageMetadata":{"promptTokenCount":25,"totalTokenCount":25}'
TAIL = ',"modelVersion":"gemini-2.5-flash","responseId":"r1"}'

TEXT_STREAM = [
    '{"candidates":[{"content":{"parts":[{"text":"Hello"}],"role":"model"},"index":0}],'
    + USAGE_SO_FAR
    + TAIL,
    '{"candidates":[{"content":{"parts":[{"text":"thinking...","thought":true},'
    '{"text":"!\\n\\"Hi\\""}],"role":"model"},"index":0}],' + USAGE_SO_FAR + TAIL,
    '{"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},"finishReason":"STOP",'
    '"index":0}],"usageMetadata":{"promptTokenCount":25,"candidatesTokenCount":15,'
    '"thoughtsTokenCount":4,"cachedContentTokenCount":10,"totalTokenCount":44}' + TAIL,
]

TOOL_STREAM = [
    '{"candidates":[{"content":{"parts":[{"text":"Okay"}],"role":"model"},"index":0}]' + TAIL,
    '{"candidates":[{"content":{"parts":[{"functionCall":{"name":"get_weather",'
    '"args":{"location":"SF"}},"thoughtSignature":"c2ln"},{"functionCall":{"name":"get_time",'
    '"args":{}}}],"role":"model"},"index":0}]' + TAIL,
    '{"candidates":[{"content":{"parts":[{"functionCall":{"name":"get_date"}}],"role":"model"},'
    '"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":472,'
    '"candidatesTokenCount":89,"totalTokenCount":561}' + TAIL,
]


def sse(events: list[str]) -> bytes:
    return b"".join(b"data: " + e.encode() + b"\r\n\r\n" for e in events)


def run_stream(raw_chunks: list[bytes], *, model: str = "fallback") -> list[str]:
    decoder = SSEDecoder()
    translator = GeminiStreamTranslator(model, CREATED, "req_1")
    out = [
        payload
        for chunk in raw_chunks
        for event in decoder.feed(chunk)
        for payload in translator.feed(event.data)
    ]
    decoder.end()
    return out + translator.end()


def check_realistic(events: list[str]) -> None:
    for data in events:
        gt.GenerateContentResponse.model_validate_json(data)


HEAD = (
    f'{{"id":"chatcmpl-r1","object":"chat.completion.chunk","created":{CREATED},'
    f'"model":"gemini-2.5-flash","choices":['
)


def choice(delta: str, finish: str = "null", index: int = 0) -> str:
    return f'{{"index":{index},"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]}}'


def test_text_stream_exact_chunks() -> None:
    check_realistic(TEXT_STREAM)
    payloads = run_stream([sse(TEXT_STREAM)])
    assert payloads == [
        HEAD + choice('{"role":"assistant","content":""}'),
        HEAD + choice('{"content":"Hello"}'),
        HEAD + choice('{"content":"!\\n\\"Hi\\""}'),
        HEAD + choice("{}", '"stop"'),
        HEAD + '],"usage":{"prompt_tokens":25,"completion_tokens":19,"total_tokens":44,'
        '"prompt_tokens_details":{"cached_tokens":10},'
        '"completion_tokens_details":{"reasoning_tokens":4}}}',
        "[DONE]",
    ]
    check_openai_chunks(payloads)


def test_tool_stream_exact_chunks() -> None:
    check_realistic(TOOL_STREAM)
    payloads = run_stream([sse(TOOL_STREAM)])
    assert payloads == [
        HEAD + choice('{"role":"assistant","content":""}'),
        HEAD + choice('{"content":"Okay"}'),
        HEAD
        + choice(
            '{"tool_calls":[{"index":0,"id":"call_r1_0_0","type":"function",'
            '"function":{"name":"get_weather","arguments":"{\\"location\\":\\"SF\\"}"},'
            '"extra_content":{"google":{"thought_signature":"c2ln"}}},'
            '{"index":1,"id":"call_r1_0_1","type":"function",'
            '"function":{"name":"get_time","arguments":"{}"}}]}'
        ),
        HEAD
        + choice(
            '{"tool_calls":[{"index":2,"id":"call_r1_0_2","type":"function",'
            '"function":{"name":"get_date","arguments":"{}"}}]}'
        ),
        HEAD + choice("{}", '"tool_calls"'),
        HEAD + '],"usage":{"prompt_tokens":472,"completion_tokens":89,"total_tokens":561,'
        '"prompt_tokens_details":{"cached_tokens":0},'
        '"completion_tokens_details":{"reasoning_tokens":0}}}',
        "[DONE]",
    ]
    check_openai_chunks(payloads)


def test_two_candidates_are_two_choices() -> None:
    events = [
        '{"candidates":[{"content":{"parts":[{"text":"A"}],"role":"model"},"index":0},'
        '{"content":{"parts":[{"text":"B"}],"role":"model"},"index":1}]' + TAIL,
        '{"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},"finishReason":"STOP",'
        '"index":0},{"content":{"parts":[{"text":"!"}],"role":"model"},'
        '"finishReason":"MAX_TOKENS","index":1}]' + TAIL,
    ]
    check_realistic(events)
    payloads = run_stream([sse(events)])
    assert payloads == [
        HEAD + choice('{"role":"assistant","content":""}'),
        HEAD + choice('{"content":"A"}'),
        HEAD + choice('{"role":"assistant","content":""}', index=1),
        HEAD + choice('{"content":"B"}', index=1),
        HEAD + choice("{}", '"stop"'),
        HEAD + choice('{"content":"!"}', index=1),
        HEAD + choice("{}", '"length"', index=1),
        "[DONE]",  # no usageMetadata anywhere: no usage chunk, the gateway estimates
    ]
    check_openai_chunks(payloads)


def test_blocked_prompt_stream() -> None:
    blocked = (
        '{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},'
        '"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9},"modelVersion":"gemini-2.5-flash"}'
    )
    check_realistic([blocked])
    payloads = run_stream([sse([blocked])])
    head = HEAD.replace("chatcmpl-r1", "chatcmpl-req_1")
    assert payloads[:2] == [
        head + choice('{"role":"assistant","content":""}'),
        head + choice("{}", '"content_filter"'),
    ]
    assert json.loads(payloads[2])["usage"]["prompt_tokens"] == 9
    check_openai_chunks(payloads)


@pytest.mark.parametrize(
    ("error", "status", "error_type"),
    [
        (
            '{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}',
            503,
            "unavailable",
        ),
        ('{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED"}', 429, "resource_exhausted"),
        ('{"message":"Odd"}', 500, "unknown"),
    ],
)
def test_error_event_mid_stream(error: str, status: int, error_type: str) -> None:
    raw = sse([*TEXT_STREAM[:1], '{"error":' + error + "}"])
    with pytest.raises(StreamError) as info:
        run_stream([raw])
    assert (info.value.status, info.value.error_type) == (status, error_type)


def test_a_stream_that_ends_without_a_finish_gives_no_done() -> None:
    payloads = run_stream([sse(TEXT_STREAM[:2])])
    assert payloads[-1] != "[DONE]" and len(payloads) == 3


@pytest.mark.parametrize(
    "data", ["not json", '{"candidates":{}}', '{"candidates":[{"index":"x"}]}']
)
def test_malformed_events(data: str) -> None:
    with pytest.raises(StreamError, match="invalid_stream"):
        GeminiStreamTranslator("m", CREATED, "r").feed(data)


@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_chunks(cuts: list[int]) -> None:
    raw = sse(TOOL_STREAM)
    assert run_stream(split_at(raw, cuts)) == run_stream([raw])


@given(st.lists(st.text(), max_size=8))
def test_text_parts_concatenate_to_the_same_content(texts: list[str]) -> None:
    translator = GeminiStreamTranslator("m", CREATED, "r")
    content: list[str] = []
    for text in texts:
        data = msgspec.json.encode(
            {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}}]}
        ).decode()
        for payload in translator.feed(data):
            content.append(json.loads(payload)["choices"][0]["delta"]["content"])  # noqa: PERF401
    assert "".join(content) == "".join(texts)
