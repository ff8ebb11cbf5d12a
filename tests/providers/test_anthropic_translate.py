"""The Anthropic translations, as golden tables: no event loop, no I/O.

Golden Anthropic inputs are checked against the official `anthropic` SDK's types (so they are
what Anthropic sends), and translated outputs against the `openai` SDK's (so OpenAI clients
can read them).
"""

from __future__ import annotations

import json
from typing import Any

import anthropic.types as at
import msgspec
import openai.types.chat as oc
import pytest

from circuitd.wire.anthropic import (
    TranslationError,
    anthropic_error_to_openai,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
)

CREATED = 1_700_000_000


def translate(request: dict[str, Any], *, default_max_tokens: int = 1024) -> dict[str, Any]:
    body = {"model": "gpt-4o", **request}
    out = openai_request_to_anthropic(
        json.dumps(body).encode(),
        upstream_model="claude-sonnet-4-5",
        default_max_tokens=default_max_tokens,
    )
    result: dict[str, Any] = json.loads(out)
    return result


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def expect(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1024, **fields, "messages": messages}


# --- requests ------------------------------------------------------------------------------


def test_minimal_request_exact_bytes() -> None:
    body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}'
    out = openai_request_to_anthropic(body, upstream_model="claude-x", default_max_tokens=4096)
    assert out == (
        b'{"model":"claude-x","max_tokens":4096,"messages":[{"role":"user","content":"Hi"}]}'
    )


TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ANTHROPIC_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}

REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "one system message is a string",
        {"messages": [{"role": "system", "content": "Be brief."}, user("Hi")]},
        expect([user("Hi")], system="Be brief."),
    ),
    (
        "system and developer messages, anywhere, become text blocks in order",
        {
            "messages": [
                {"role": "system", "content": "One."},
                user("Hi"),
                {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
                {"role": "system", "content": ""},
            ]
        },
        expect(
            [user("Hi")],
            system=[{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}],
        ),
    ),
    (
        "multi-turn keeps its order",
        {
            "messages": [
                user("Hi"),
                {"role": "assistant", "content": "Hello!"},
                user("How are you?"),
            ]
        },
        expect([user("Hi"), {"role": "assistant", "content": "Hello!"}, user("How are you?")]),
    ),
    (
        "consecutive same-role messages are merged, empty ones dropped",
        {"messages": [user("a"), user(""), user([{"type": "text", "text": "b"}])]},
        expect([user([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])]),
    ),
    (
        "images: base64 data URL and https URL; detail dropped",
        {
            "messages": [
                user(
                    [
                        {"type": "text", "text": "Compare"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "low"},
                        },
                        {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                    ]
                )
            ]
        },
        expect(
            [
                user(
                    [
                        {"type": "text", "text": "Compare"},
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": "iVBORw0K",
                            },
                        },
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "https://x.test/cat.jpg"},
                        },
                    ]
                )
            ]
        ),
    ),
    (
        "cache_control on text parts is kept (system too)",
        {
            "messages": [
                {
                    "role": "system",
                    "content": [
                        {"type": "text", "text": "Long", "cache_control": {"type": "ephemeral"}}
                    ],
                },
                user([{"type": "text", "text": "Q", "cache_control": {"type": "ephemeral"}}]),
            ]
        },
        expect(
            [user([{"type": "text", "text": "Q", "cache_control": {"type": "ephemeral"}}])],
            system=[{"type": "text", "text": "Long", "cache_control": {"type": "ephemeral"}}],
        ),
    ),
    (
        "tool calls become tool_use; consecutive tool results merge, before the user's text",
        {
            "messages": [
                user("Weather in Paris and Oslo?"),
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {
                    "role": "tool",
                    "tool_call_id": "call_2",
                    "content": [{"type": "text", "text": "9C"}],
                },
                user("Thanks"),
            ],
            "tools": [TOOL],
        },
        expect(
            [
                user("Weather in Paris and Oslo?"),
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": "call_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
                    ],
                },
                user(
                    [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "call_2",
                            "content": [{"type": "text", "text": "9C"}],
                        },
                        {"type": "text", "text": "Thanks"},
                    ]
                ),
            ],
            tools=[ANTHROPIC_TOOL],
        ),
    ),
    (
        "a user text before tool results is moved after them",
        {
            "messages": [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                user("note"),
                {"role": "tool", "tool_call_id": "c", "content": ""},
            ]
        },
        expect(
            [
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "c", "name": "f", "input": {}}],
                },
                user(
                    [{"type": "tool_result", "tool_use_id": "c"}, {"type": "text", "text": "note"}]
                ),
            ]
        ),
    ),
    (
        "stop string, sampling, stream, user",
        {
            "messages": [user("Hi")],
            "stop": "END",
            "temperature": 0.2,
            "top_p": 0.9,
            "stream": True,
            "user": "user-42",
        },
        expect(
            [user("Hi")],
            stop_sequences=["END"],
            temperature=0.2,
            top_p=0.9,
            stream=True,
            metadata={"user_id": "user-42"},
        ),
    ),
    (
        "stop list, metadata.user, stream false omitted",
        {
            "messages": [user("Hi")],
            "stop": ["a", "b"],
            "stream": False,
            "metadata": {"user": "u", "team": "x"},
        },
        expect([user("Hi")], stop_sequences=["a", "b"], metadata={"user_id": "u"}),
    ),
    (
        "max_completion_tokens wins over max_tokens",
        {"messages": [user("Hi")], "max_tokens": 10, "max_completion_tokens": 20},
        {**expect([user("Hi")]), "max_tokens": 20},
    ),
    (
        "max_tokens",
        {"messages": [user("Hi")], "max_tokens": 10, "stop": []},
        {**expect([user("Hi")]), "max_tokens": 10},
    ),
    (
        "OpenAI-only fields are dropped",
        {
            "messages": [user("Hi")],
            "n": 1,
            "logprobs": True,
            "top_logprobs": 3,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.5,
            "logit_bias": {"50256": -100},
            "seed": 7,
            "response_format": {"type": "json_object"},
            "stream_options": {"include_usage": True},
            "store": True,
            "service_tier": "auto",
            "reasoning_effort": "low",
            "mock": {"status": 500},
        },
        expect([user("Hi")]),
    ),
]


@pytest.mark.parametrize(
    ("request_body", "expected"), [(r, e) for _, r, e in REQUESTS], ids=[n for n, _, _ in REQUESTS]
)
def test_request_translation(request_body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert translate(request_body) == expected


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
def test_tool_choice(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    request: dict[str, Any] = {"messages": [user("Hi")], "tools": [TOOL]}
    if choice is not None:
        request["tool_choice"] = choice
    if parallel is not None:
        request["parallel_tool_calls"] = parallel
    out = translate(request)
    assert out["tools"] == [ANTHROPIC_TOOL]
    assert out.get("tool_choice") == expected


def test_tool_without_parameters_gets_an_empty_schema_and_choice_without_tools_is_dropped() -> None:
    bare = {"type": "function", "function": {"name": "now"}}
    assert translate({"messages": [user("Hi")], "tools": [bare]})["tools"] == [
        {"name": "now", "input_schema": {"type": "object", "properties": {}}}
    ]
    assert "tool_choice" not in translate({"messages": [user("Hi")], "tool_choice": "none"})


def test_max_tokens_default_comes_from_the_caller() -> None:
    assert translate({"messages": [user("Hi")]}, default_max_tokens=333)["max_tokens"] == 333


FUNCTION_CALL = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"messages": [user("Hi")], "n": 2}, "n > 1"),
        ({"messages": [{"role": "system", "content": "only"}]}, "at least one"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "role 'function'"),
        ({"messages": [user([{"type": "input_audio", "input_audio": {}}])]}, "input_audio"),
        (
            {
                "messages": [
                    user([{"type": "image_url", "image_url": {"url": "data:image/png,xx"}}])
                ]
            },
            "base64",
        ),
        ({"messages": [user([{"type": "image_url", "image_url": {"url": "ftp://x/y"}}])]}, "http"),
        ({"messages": [{"role": "assistant", "tool_calls": [FUNCTION_CALL]}]}, "JSON object"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
        ({"messages": [user("Hi")], "tools": [{"type": "custom", "custom": {}}]}, "'custom'"),
        ({"messages": [user("Hi")], "tools": [TOOL], "tool_choice": "sometimes"}, "sometimes"),
        ({"messages": "Hi"}, "Invalid chat request"),
        ({}, "Invalid chat request"),
    ],
)
def test_untranslatable_requests(request_body: dict[str, Any], message: str) -> None:
    with pytest.raises(TranslationError, match=message.replace("(", r"\(")) as info:
        translate(request_body)
    assert isinstance(info.value, ValueError)


def test_invalid_json_is_a_translation_error() -> None:
    with pytest.raises(TranslationError):
        openai_request_to_anthropic(b"{nope", upstream_model="m", default_max_tokens=1)


# --- responses -----------------------------------------------------------------------------

TEXT_MESSAGE = (
    b'{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant",'
    b'"model":"claude-sonnet-4-5-20250929",'
    b'"content":[{"type":"text","text":"Hello! How can I help"},{"type":"text","text":" you?"}],'
    b'"stop_reason":"end_turn","stop_sequence":null,'
    b'"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
    b'"output_tokens":10,"service_tier":"standard"}}'
)
TOOL_MESSAGE = (
    b'{"id":"msg_01Aq9w938a90dw8q","type":"message","role":"assistant",'
    b'"model":"claude-sonnet-4-5-20250929","content":['
    b'{"type":"thinking","thinking":"The user wants weather.","signature":"EqQBCgIYAhIM"},'
    b'{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather",'
    b'"input": {"location": "San Francisco, CA", "unit": "celsius"}}],'
    b'"stop_reason":"tool_use","stop_sequence":null,'
    b'"usage":{"input_tokens":100,"cache_creation_input_tokens":2000,'
    b'"cache_read_input_tokens":30000,"output_tokens":50}}'
)


def completion(body: bytes) -> dict[str, Any]:
    at.Message.model_validate_json(body)  # the golden input is a real Messages answer
    out = anthropic_response_to_openai(body, model="fallback", created=CREATED)
    oc.ChatCompletion.model_validate_json(out)  # and the output a real chat.completion
    result: dict[str, Any] = json.loads(out)
    return result


def test_text_response() -> None:
    assert completion(TEXT_MESSAGE) == {
        "id": "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": CREATED,
        "model": "claude-sonnet-4-5-20250929",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! How can I help you?",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 10,
            "total_tokens": 22,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def test_tool_use_response_with_cache_usage() -> None:
    out = completion(TOOL_MESSAGE)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "toolu_01A09q90qw90lq917835lq9",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": '{"location": "San Francisco, CA", "unit": "celsius"}',
                },
            }
        ],
    }
    # input 100 + cache read 30000 + cache write 2000; cached = the reads only
    assert out["usage"] == {
        "prompt_tokens": 32100,
        "completion_tokens": 50,
        "total_tokens": 32150,
        "prompt_tokens_details": {"cached_tokens": 30000},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons(stop_reason: str, finish: str) -> None:
    body = TEXT_MESSAGE.replace(b'"end_turn"', json.dumps(stop_reason).encode())
    assert completion(body)["choices"][0]["finish_reason"] == finish


def test_response_fallbacks_and_garbage() -> None:
    bare = b'{"id":"msg_1","content":[]}'
    out = json.loads(anthropic_response_to_openai(bare, model="claude-x", created=1))
    assert out["model"] == "claude-x"
    assert out["choices"][0]["message"]["content"] == ""
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["total_tokens"] == 0
    with pytest.raises(msgspec.DecodeError):
        anthropic_response_to_openai(b"<html>", model="m", created=1)


# --- errors --------------------------------------------------------------------------------


def anthropic_error(kind: str, message: str) -> bytes:
    body = json.dumps(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011"}
    ).encode()
    at.shared.ErrorResponse.model_validate_json(body)
    return body


@pytest.mark.parametrize(
    ("status", "kind", "openai_type"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "authentication_error"),
        (403, "permission_error", "permission_error"),
        (404, "not_found_error", "invalid_request_error"),
        (429, "rate_limit_error", "rate_limit_exceeded"),
        (500, "api_error", "server_error"),
        (504, "timeout_error", "upstream_timeout"),
        (529, "overloaded_error", "service_unavailable"),
    ],
)
def test_error_bodies(status: int, kind: str, openai_type: str) -> None:
    out = anthropic_error_to_openai(status, anthropic_error(kind, "Something went wrong"))
    assert json.loads(out) == {
        "error": {
            "message": "Something went wrong",
            "type": openai_type,
            "code": kind,
            "param": None,
        }
    }


def test_overloaded_exact_bytes() -> None:
    out = anthropic_error_to_openai(529, anthropic_error("overloaded_error", "Overloaded"))
    assert out == (
        b'{"error":{"message":"Overloaded","type":"service_unavailable",'
        b'"code":"overloaded_error","param":null}}'
    )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            502,
            b"<html>Bad Gateway</html>",
            ("Anthropic answered 502: <html>Bad Gateway</html>", "server_error"),
        ),
        (413, b"", ("Anthropic answered 413", "invalid_request_error")),
        (429, b"{}", ("Anthropic answered 429: {}", "rate_limit_exceeded")),
        (
            418,
            b'{"type":"error","error":{"type":"teapot_error","message":""}}',
            ("teapot_error", "invalid_request_error"),
        ),
    ],
)
def test_error_bodies_that_are_not_anthropic_errors(
    status: int, body: bytes, expected: tuple[str, str]
) -> None:
    error = json.loads(anthropic_error_to_openai(status, body))["error"]
    assert (error["message"], error["type"]) == expected
