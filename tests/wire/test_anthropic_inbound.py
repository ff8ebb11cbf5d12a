"""Inbound Anthropic translation (Messages request → canonical OpenAI request), as golden
tables: no event loop, no I/O. Requests use the `anthropic` SDK's param types where they fit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from circuitd.core.tokens import HeuristicTokenizer
from circuitd.wire.anthropic import openai_request_to_anthropic
from circuitd.wire.anthropic_inbound import (
    TranslationError,
    anthropic_request_to_openai,
    count_tokens_request,
    uncounted_text,
)


def translate(**request: Any) -> dict[str, Any]:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 256, **request}
    result: dict[str, Any] = json.loads(anthropic_request_to_openai(json.dumps(body).encode()).body)
    return result


def expect(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "messages": messages, "max_tokens": 256, **fields}


HI = [{"role": "user", "content": "Hi"}]
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The current weather at a place.",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}
OPENAI_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather at a place.",
        "parameters": WEATHER_TOOL["input_schema"],
    },
}


def test_minimal_request_exact_bytes() -> None:
    body = b'{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}'
    request = anthropic_request_to_openai(body)
    assert request.body == (
        b'{"model":"claude-x","messages":[{"role":"user","content":"Hi"}],"max_tokens":5}'
    )
    assert request.model == "claude-x" and request.stop_sequences == ()


CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "system string",
        {"system": "Be terse.", "messages": HI},
        expect([{"role": "system", "content": "Be terse."}, *HI]),
    ),
    (
        "system blocks keep cache_control as text parts",
        {
            "system": [
                {"type": "text", "text": "Rules."},
                {"type": "text", "text": "Docs.", "cache_control": {"type": "ephemeral"}},
            ],
            "messages": HI,
        },
        expect(
            [
                {
                    "role": "system",
                    "content": [
                        {"type": "text", "text": "Rules."},
                        {"type": "text", "text": "Docs.", "cache_control": {"type": "ephemeral"}},
                    ],
                },
                *HI,
            ]
        ),
    ),
    (
        "multi-turn; one plain text block becomes a string",
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
                {"role": "user", "content": "And?"},
            ]
        },
        expect(
            [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "And?"},
            ]
        ),
    ),
    (
        "images: base64 → data URL, url → url",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": PNG},
                        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                        {"type": "text", "text": "Compare."},
                    ],
                }
            ]
        },
        expect(
            [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                        },
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                        {"type": "text", "text": "Compare."},
                    ],
                }
            ]
        ),
    ),
    (
        "tools, tool_use, tool_result (results first, then the rest of the turn)",
        {
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "auto"},
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"location": "Paris"},
                        },
                        {
                            "type": "tool_use",
                            "id": "toolu_2",
                            "name": "get_weather",
                            "input": {"location": "Rome"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "content": [{"type": "text", "text": "21C"}],
                            "is_error": False,
                        },
                        {"type": "text", "text": "Which is warmer?"},
                    ],
                },
            ],
        },
        expect(
            [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"location":"Paris"}',
                            },
                        },
                        {
                            "id": "toolu_2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location":"Rome"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "21C"},
                {"role": "user", "content": "Which is warmer?"},
            ],
            tools=[OPENAI_WEATHER_TOOL],
            tool_choice="auto",
        ),
    ),
    (
        "assistant turn of tool calls only has null content; empty tool result is ''",
        {
            "messages": [
                {"role": "user", "content": "Go"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "noop", "input": {}}],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
            ]
        },
        expect(
            [
                {"role": "user", "content": "Go"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "t",
                            "type": "function",
                            "function": {"name": "noop", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "t", "content": ""},
            ]
        ),
    ),
    (
        "tool_choice any + disable_parallel_tool_use",
        {
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "messages": HI,
        },
        expect(HI, tools=[OPENAI_WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False),
    ),
    (
        "tool_choice tool",
        {
            "tools": [WEATHER_TOOL],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "messages": HI,
        },
        expect(
            HI,
            tools=[OPENAI_WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        ),
    ),
    (
        "tool_choice none",
        {"tools": [WEATHER_TOOL], "tool_choice": {"type": "none"}, "messages": HI},
        expect(HI, tools=[OPENAI_WEATHER_TOOL], tool_choice="none"),
    ),
    (
        "sampling, stops and user; top_k and unknown fields dropped",
        {
            "messages": HI,
            "stop_sequences": ["END", "\n\nHuman:"],
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "metadata": {"user_id": "user-7"},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "service_tier": "auto",
        },
        expect(HI, stop=["END", "\n\nHuman:"], temperature=0.2, top_p=0.9, user="user-7"),
    ),
    (
        "streams ask for usage",
        {"messages": HI, "stream": True},
        expect(HI, stream=True, stream_options={"include_usage": True}),
    ),
    (
        "empty metadata",
        {"messages": HI, "metadata": {}},
        expect(HI),
    ),
]


@pytest.mark.parametrize(
    ("request_", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_request_translation(request_: dict[str, Any], expected: dict[str, Any]) -> None:
    assert translate(**request_) == expected


def test_stop_sequences_are_remembered_for_the_answer() -> None:
    body = {"model": "m", "max_tokens": 9, "messages": HI, "stop_sequences": ["END"]}
    assert anthropic_request_to_openai(json.dumps(body).encode()).stop_sequences == ("END",)


def test_round_trip_through_the_outbound_translator_keeps_the_request() -> None:
    """Messages → canonical → Messages (an Anthropic upstream) gives back what was sent."""
    original = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "system": [{"type": "text", "text": "Docs.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "source": PNG}, {"type": "text", "text": "What?"}],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}],
            },
        ],
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u1"},
    }
    canonical = anthropic_request_to_openai(json.dumps(original).encode()).body
    back = openai_request_to_anthropic(
        canonical, upstream_model="claude-sonnet-4-5", default_max_tokens=1
    )
    assert json.loads(back) == original


ERRORS: list[tuple[str, bytes, str]] = [
    (
        "missing max_tokens",
        b'{"model":"m","messages":[{"role":"user","content":"Hi"}]}',
        "max_tokens: Field required",
    ),
    ("not JSON", b"{nope", "not valid JSON"),
    ("not an object", b"[]", "Invalid request"),
    ("no messages", b'{"model":"m","max_tokens":1,"messages":[]}', "at least one message"),
    (
        "empty model",
        b'{"model":"","max_tokens":1,"messages":[{"role":"user","content":"x"}]}',
        "model",
    ),
    (
        "max_tokens 0",
        b'{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}',
        "max_tokens",
    ),
    (
        "bad role",
        b'{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}',
        "role 'system'",
    ),
    (
        "document block",
        b'{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"document",'
        b'"source":{"type":"text","media_type":"text/plain","data":"x"}}]}]}',
        "'document'",
    ),
    (
        "tool_use in a user turn",
        b'{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_use",'
        b'"id":"t","name":"f","input":{}}]}]}',
        "assistant messages",
    ),
    (
        "image in an assistant turn",
        b'{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"image",'
        b'"source":{"type":"url","url":"https://x.test/a.png"}}]}]}',
        "user messages",
    ),
    (
        "a server tool",
        b'{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],'
        b'"tools":[{"type":"web_search_20250305","name":"web_search"}]}',
        "input_schema",
    ),
    (
        "tool_choice tool without a name",
        b'{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],'
        b'"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool"}}',
        "needs a name",
    ),
]


@pytest.mark.parametrize(("body", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_request_errors(body: bytes, message: str) -> None:
    with pytest.raises(TranslationError) as caught:
        anthropic_request_to_openai(body)
    assert message in str(caught.value)


def test_count_tokens_request_needs_no_max_tokens_and_counts_tools() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}],
            },
        ],
        "tools": [WEATHER_TOOL],
        "stream": True,
    }
    request = count_tokens_request(json.dumps(body).encode())
    canonical = json.loads(request.body)
    assert "stream" not in canonical and canonical["max_tokens"] == 1
    text = uncounted_text(request)
    assert '"get_weather"' in text and 'f {"a":1}' in text
    assert HeuristicTokenizer().count(text) > 0
    with pytest.raises(TranslationError):
        count_tokens_request(b"[1]")
