"""The Gemini translations, as golden tables: no event loop, no I/O.

Translated requests are checked against the official `google-genai` SDK's types (which
forbid unknown fields, so a misspelt field fails), golden Gemini answers against its
`GenerateContentResponse`, and translated answers against the `openai` SDK's types.
Hypothesis checks that conversations keep their texts and turns and tool arguments survive
the trip there and back.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import msgspec
import openai.types.chat as oc
import pytest
from google.genai import types as gt
from hypothesis import given
from hypothesis import strategies as st

from circuitd.wire.gemini import (
    TranslationError,
    gemini_error_to_openai,
    gemini_response_to_openai,
    openai_request_to_gemini,
    retry_delay,
)

CREATED = 1_700_000_000


def check_gemini_request(body: dict[str, Any]) -> None:
    """Every part of a translated body is a valid Gemini REST object."""
    assert set(body) <= {
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "generationConfig",
    }
    for content in body["contents"]:
        gt.Content.model_validate(content)
    if "systemInstruction" in body:
        gt.Content.model_validate(body["systemInstruction"])
    for tool in body.get("tools", ()):
        gt.Tool.model_validate(tool)
    if "toolConfig" in body:
        gt.ToolConfig.model_validate(body["toolConfig"])
    if "generationConfig" in body:
        gt.GenerationConfig.model_validate(body["generationConfig"])


def translate(request: dict[str, Any]) -> dict[str, Any]:
    out = openai_request_to_gemini(json.dumps({"model": "gpt-4o", **request}).encode())
    result: dict[str, Any] = json.loads(out)
    check_gemini_request(result)
    return result


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def text(value: str) -> dict[str, Any]:
    return {"text": value}


def turn(role: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {"parts": list(parts), "role": role}


# --- requests ------------------------------------------------------------------------------


def test_minimal_request_exact_bytes() -> None:
    body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}'
    assert openai_request_to_gemini(body) == (
        b'{"contents":[{"parts":[{"text":"Hi"}],"role":"user"}]}'
    )


TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "additionalProperties": False,
        },
    },
}
GEMINI_TOOL = {
    "functionDeclarations": [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "parametersJsonSchema": TOOL["function"]["parameters"],  # type: ignore[index]
        }
    ]
}


def call(id: str, name: str, arguments: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
        **extra,
    }


REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "system and developer messages, anywhere, become systemInstruction parts in order",
        {
            "messages": [
                {"role": "system", "content": "One."},
                user("Hi"),
                {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
                {"role": "system", "content": ""},
            ]
        },
        {
            "contents": [turn("user", text("Hi"))],
            "systemInstruction": {"parts": [text("One."), text("Two.")]},
        },
    ),
    (
        "multi-turn: assistant is model; same-role turns merge; empty ones are dropped",
        {
            "messages": [
                user("Hi"),
                {"role": "assistant", "content": "Hello!"},
                user(""),
                user("How are you?"),
                user([{"type": "text", "text": "And?"}]),
            ]
        },
        {
            "contents": [
                turn("user", text("Hi")),
                turn("model", text("Hello!")),
                turn("user", text("How are you?"), text("And?")),
            ]
        },
    ),
    (
        "images: base64 data URL → inlineData, https URL → fileData; audio → inlineData",
        {
            "messages": [
                user(
                    [
                        {"type": "text", "text": "Compare"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/PNG;base64,iVBORw0K", "detail": "low"},
                        },
                        {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg?s=1"}},
                        {"type": "image_url", "image_url": "https://x.test/render"},
                        {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
                    ]
                )
            ]
        },
        {
            "contents": [
                turn(
                    "user",
                    text("Compare"),
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
                    {
                        "fileData": {
                            "fileUri": "https://x.test/cat.jpg?s=1",
                            "mimeType": "image/jpeg",
                        }
                    },
                    {"fileData": {"fileUri": "https://x.test/render"}},
                    {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}},
                )
            ]
        },
    ),
    (
        "tool calls → functionCall (thought signature kept); results → functionResponse",
        {
            "messages": [
                user("Weather in Paris and Oslo?"),
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        call(
                            "call_1",
                            "get_weather",
                            '{"city":"Paris"}',
                            extra_content={"google": {"thought_signature": "c2lnbmF0dXJl"}},
                        ),
                        call("call_2", "get_time", ""),
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {
                    "role": "tool",
                    "tool_call_id": "call_2",
                    "content": [{"type": "text", "text": "9"}, {"type": "text", "text": "am"}],
                },
                user("Thanks"),
            ],
            "tools": [TOOL],
        },
        {
            "contents": [
                turn("user", text("Weather in Paris and Oslo?")),
                turn(
                    "model",
                    text("Checking."),
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "c2lnbmF0dXJl",
                    },
                    {"functionCall": {"name": "get_time", "args": {}}},
                ),
                turn(
                    "user",
                    {"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}},
                    {"functionResponse": {"name": "get_time", "response": {"output": "9am"}}},
                    text("Thanks"),
                ),
            ],
            "tools": [GEMINI_TOOL],
        },
    ),
    (
        "a tool message's own name stands in for an unknown call id",
        {
            "messages": [
                user("Go"),
                {"role": "tool", "tool_call_id": "lost", "name": "f", "content": None},
            ]
        },
        {
            "contents": [
                turn(
                    "user",
                    text("Go"),
                    {"functionResponse": {"name": "f", "response": {"output": ""}}},
                )
            ]
        },
    ),
    (
        "generation config: every sampling field, stop string, n, max_completion_tokens wins",
        {
            "messages": [user("Hi")],
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "stop": "END",
            "n": 2,
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
        },
        {
            "contents": [turn("user", text("Hi"))],
            "generationConfig": {
                "stopSequences": ["END"],
                "candidateCount": 2,
                "maxOutputTokens": 20,
                "temperature": 0.2,
                "topP": 0.9,
                "topK": 40,
                "seed": 7,
                "presencePenalty": 0.5,
                "frequencyPenalty": -0.5,
            },
        },
    ),
    (
        "JSON mode",
        {"messages": [user("Hi")], "max_tokens": 10, "response_format": {"type": "json_object"}},
        {
            "contents": [turn("user", text("Hi"))],
            "generationConfig": {"responseMimeType": "application/json", "maxOutputTokens": 10},
        },
    ),
    (
        "JSON schema",
        {
            "messages": [user("Hi")],
            "stop": ["a", "b"],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "strict": True, "schema": {"type": "object"}},
            },
        },
        {
            "contents": [turn("user", text("Hi"))],
            "generationConfig": {
                "stopSequences": ["a", "b"],
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object"},
            },
        },
    ),
    (
        "OpenAI-only fields are dropped; text response_format and empty stop add nothing",
        {
            "messages": [user("Hi")],
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": True,
            "top_logprobs": 3,
            "logit_bias": {"50256": -100},
            "response_format": {"type": "text"},
            "stop": [],
            "parallel_tool_calls": False,
            "user": "u",
            "metadata": {"user": "u"},
            "store": True,
            "service_tier": "auto",
            "reasoning_effort": "low",
            "mock": {"status": 500},
        },
        {"contents": [turn("user", text("Hi"))]},
    ),
]


@pytest.mark.parametrize(
    ("request_body", "expected"), [(r, e) for _, r, e in REQUESTS], ids=[n for n, _, _ in REQUESTS]
)
def test_request_translation(request_body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert translate(request_body) == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", {"functionCallingConfig": {"mode": "AUTO"}}),
        ("none", {"functionCallingConfig": {"mode": "NONE"}}),
        ("required", {"functionCallingConfig": {"mode": "ANY"}}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any] | None) -> None:
    request: dict[str, Any] = {"messages": [user("Hi")], "tools": [TOOL]}
    if choice is not None:
        request["tool_choice"] = choice
    out = translate(request)
    assert out["tools"] == [GEMINI_TOOL]
    assert out.get("toolConfig") == expected


def test_tool_without_parameters_and_choice_without_tools() -> None:
    bare = {"type": "function", "function": {"name": "now"}}
    assert translate({"messages": [user("Hi")], "tools": [bare]})["tools"] == [
        {"functionDeclarations": [{"name": "now"}]}
    ]
    assert "toolConfig" not in translate({"messages": [user("Hi")], "tool_choice": "required"})


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"messages": [{"role": "system", "content": "only"}]}, "at least one"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "role 'function'"),
        ({"messages": [user([{"type": "file", "file": {}}])]}, "'file'"),
        ({"messages": [user([{"type": "input_audio", "input_audio": {}}])]}, "data and format"),
        (
            {"messages": [user([{"type": "image_url", "image_url": {"url": "data:a,xx"}}])]},
            "base64",
        ),
        ({"messages": [user([{"type": "image_url", "image_url": {"url": "ftp://x/y"}}])]}, "http"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [call("c", "f", "[1]")]}]},
            "JSON object",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
        ({"messages": [{"role": "tool", "tool_call_id": "c9", "content": "x"}]}, "no earlier"),
        (
            {
                "messages": [
                    {"role": "system", "content": [{"type": "image_url", "image_url": "x"}]}
                ]
            },
            "only contain text",
        ),
        ({"messages": [user("Hi")], "tools": [{"type": "custom", "custom": {}}]}, "'custom'"),
        ({"messages": [user("Hi")], "tools": [TOOL], "tool_choice": "sometimes"}, "sometimes"),
        ({"messages": [user("Hi")], "response_format": {"type": "xml"}}, "'xml'"),
        ({"messages": [user("Hi")], "response_format": {"type": "json_schema"}}, "schema"),
        ({"messages": "Hi"}, "Invalid chat request"),
    ],
)
def test_untranslatable_requests(request_body: dict[str, Any], message: str) -> None:
    with pytest.raises(TranslationError, match=message) as info:
        translate(request_body)
    assert isinstance(info.value, ValueError)


# --- responses -----------------------------------------------------------------------------

TEXT_RESPONSE = (
    b'{"candidates":[{"content":{"parts":[{"text":"Hello! How can I help"},'
    b'{"text":"Let me think.","thought":true},{"text":" you?"}],"role":"model"},'
    b'"finishReason":"STOP","index":0,"safetyRatings":[{"category":"HARM_CATEGORY_HARASSMENT",'
    b'"probability":"NEGLIGIBLE"}]}],'
    b'"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":10,"totalTokenCount":42,'
    b'"thoughtsTokenCount":20,"promptTokensDetails":[{"modality":"TEXT","tokenCount":12}]},'
    b'"modelVersion":"gemini-2.5-flash","responseId":"mRZ3aL6dJcOb1dkP4Y2x2Qg"}'
)
TOOL_RESPONSE = (
    b'{"candidates":[{"content":{"parts":[{"functionCall":{"name":"get_weather",'
    b'"args":{"location": "San Francisco, CA", "unit": "celsius"}},'
    b'"thoughtSignature":"CiQBVKhc7vB+"},'
    b'{"functionCall":{"name":"get_time","args":{},"id":"fc_given"}}],"role":"model"},'
    b'"finishReason":"STOP","index":0}],'
    b'"usageMetadata":{"promptTokenCount":32100,"candidatesTokenCount":50,'
    b'"cachedContentTokenCount":30000,"toolUsePromptTokenCount":7,"totalTokenCount":32157},'
    b'"modelVersion":"gemini-2.5-pro","responseId":"resp1"}'
)


def completion(body: bytes, **kw: Any) -> dict[str, Any]:
    gt.GenerateContentResponse.model_validate_json(body)  # the golden input is Gemini's shape
    out = gemini_response_to_openai(body, model="fallback", created=CREATED, request_id="req_9")
    oc.ChatCompletion.model_validate_json(out)  # and the output a real chat.completion
    result: dict[str, Any] = json.loads(out)
    return result


def test_text_response() -> None:
    assert completion(TEXT_RESPONSE) == {
        "id": "chatcmpl-mRZ3aL6dJcOb1dkP4Y2x2Qg",
        "object": "chat.completion",
        "created": CREATED,
        "model": "gemini-2.5-flash",
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
            "completion_tokens": 30,  # 10 answer + 20 thinking
            "total_tokens": 42,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 20},
        },
    }


def test_tool_call_response_with_cached_and_tool_use_prompt_tokens() -> None:
    out = completion(TOOL_RESPONSE)
    [choice] = out["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_resp1_0_0",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": '{"location": "San Francisco, CA", "unit": "celsius"}',
                },
                "extra_content": {"google": {"thought_signature": "CiQBVKhc7vB+"}},
            },
            {
                "id": "fc_given",
                "type": "function",
                "function": {"name": "get_time", "arguments": "{}"},
            },
        ],
    }
    assert out["usage"] == {
        "prompt_tokens": 32107,
        "completion_tokens": 50,
        "total_tokens": 32157,
        "prompt_tokens_details": {"cached_tokens": 30000},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_the_thought_signature_goes_back_as_it_came() -> None:
    first = completion(TOOL_RESPONSE)["choices"][0]["message"]
    history = [user("Weather?"), {**first, "content": None}]
    history += [
        {"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in first["tool_calls"]
    ]
    sent = translate({"messages": history})
    assert sent["contents"][1]["parts"][0]["thoughtSignature"] == "CiQBVKhc7vB+"
    assert [p["functionResponse"]["name"] for p in sent["contents"][2]["parts"]] == [
        "get_weather",
        "get_time",
    ]


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("LANGUAGE", "stop"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
    ],
)
def test_finish_reasons(reason: str, finish: str) -> None:
    body = TEXT_RESPONSE.replace(b'"STOP"', json.dumps(reason).encode())
    assert completion(body)["choices"][0]["finish_reason"] == finish


def test_several_candidates_are_choices() -> None:
    body = (
        b'{"candidates":[{"content":{"parts":[{"text":"A"}],"role":"model"},"finishReason":"STOP",'
        b'"index":0},{"content":{"parts":[{"text":"B"}],"role":"model"},'
        b'"finishReason":"MAX_TOKENS","index":1}],"responseId":"r"}'
    )
    out = completion(body)
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in out["choices"]] == [
        (0, "A", "stop"),
        (1, "B", "length"),
    ]
    assert out["usage"] is None  # no usageMetadata: the gateway estimates


def test_blocked_prompt_is_a_content_filter_answer() -> None:
    body = (
        b'{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[{"category":'
        b'"HARM_CATEGORY_DANGEROUS_CONTENT","probability":"HIGH","blocked":true}]},'
        b'"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9},"modelVersion":"gemini-2.5-flash"}'
    )
    out = completion(body)
    assert out["id"] == "chatcmpl-req_9"  # no responseId: the gateway's request id
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None, "refusal": None},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert out["usage"]["prompt_tokens"] == 9 and out["usage"]["completion_tokens"] == 0


def test_response_fallbacks_and_garbage() -> None:
    out = json.loads(gemini_response_to_openai(b"{}", model="gemini-x", created=1, request_id="r"))
    assert out["model"] == "gemini-x"
    assert out["choices"][0]["message"]["content"] == ""
    assert out["choices"][0]["finish_reason"] == "stop"
    with pytest.raises(msgspec.DecodeError):
        gemini_response_to_openai(b"<html>", model="m", created=1, request_id="r")


# --- errors --------------------------------------------------------------------------------


def google_error(code: int, status: str, message: str, details: list[Any] | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    ("status", "name", "openai_type"),
    [
        (400, "INVALID_ARGUMENT", "invalid_request_error"),
        (400, "FAILED_PRECONDITION", "invalid_request_error"),
        (401, "UNAUTHENTICATED", "authentication_error"),
        (403, "PERMISSION_DENIED", "permission_error"),
        (404, "NOT_FOUND", "invalid_request_error"),
        (429, "RESOURCE_EXHAUSTED", "rate_limit_exceeded"),
        (500, "INTERNAL", "server_error"),
        (503, "UNAVAILABLE", "service_unavailable"),
        (504, "DEADLINE_EXCEEDED", "upstream_timeout"),
    ],
)
def test_error_bodies(status: int, name: str, openai_type: str) -> None:
    out = gemini_error_to_openai(status, google_error(status, name, "Something went wrong"))
    assert json.loads(out) == {
        "error": {
            "message": "Something went wrong",
            "type": openai_type,
            "code": name.lower(),
            "param": None,
        }
    }


def test_invalid_api_key_exact_bytes() -> None:
    info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
    body = google_error(400, "INVALID_ARGUMENT", "API key not valid.", [info])
    assert gemini_error_to_openai(400, body) == (
        b'{"error":{"message":"API key not valid.","type":"authentication_error",'
        b'"code":"invalid_api_key","param":null}}'
    )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            502,
            b"<html>Bad Gateway</html>",
            ("Gemini answered 502: <html>Bad Gateway</html>", "server_error"),
        ),
        (413, b"", ("Gemini answered 413", "invalid_request_error")),
        (429, b"[]", ("Gemini answered 429: []", "rate_limit_exceeded")),
        (  # streaming endpoints wrap the error in a list
            503,
            b'[{"error":{"code":503,"message":"Overloaded","status":"UNAVAILABLE"}}]',
            ("Overloaded", "service_unavailable"),
        ),
        (418, b'{"error":{"code":418}}', ("Gemini answered 418", "invalid_request_error")),
    ],
)
def test_error_bodies_that_are_not_plain_google_errors(
    status: int, body: bytes, expected: tuple[str, str]
) -> None:
    error = json.loads(gemini_error_to_openai(status, body))["error"]
    assert (error["message"], error["type"]) == expected


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}], "37"),
        ([{"@type": "x.QuotaFailure"}, {"retryDelay": "0.5s"}], "0.5"),
        ([{"retryDelay": "soon"}], None),
        ([{"retryDelay": "-1s"}], None),
        ([], None),
    ],
)
def test_retry_delay_from_the_body(details: list[Any], expected: str | None) -> None:
    assert retry_delay(google_error(429, "RESOURCE_EXHAUSTED", "quota", details)) == expected
    assert retry_delay(b"not json") is None


# --- round trips ---------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=10,
)
JSON_OBJECTS = st.dictionaries(st.text(), JSON_VALUES, max_size=4)


@given(st.lists(st.tuples(st.sampled_from(["user", "assistant"]), st.text()), min_size=1))
def test_a_conversation_keeps_its_texts_and_turns(turns: list[tuple[str, str]]) -> None:
    messages = [{"role": role, "content": text} for role, text in turns]
    if not any(text for _, text in turns):
        with pytest.raises(TranslationError):
            translate({"messages": messages})
        return
    contents = translate({"messages": messages})["contents"]
    kept = [(role, text) for role, text in turns if text]
    assert [(c["role"], p["text"]) for c in contents for p in c["parts"]] == [
        ("model" if role == "assistant" else "user", text) for role, text in kept
    ]
    roles = [c["role"] for c in contents]
    assert all(a != b for a, b in itertools.pairwise(roles))  # merged, alternating


@given(JSON_OBJECTS)
def test_tool_arguments_round_trip(arguments: dict[str, Any]) -> None:
    sent = translate(
        {"messages": [{"role": "assistant", "tool_calls": [call("c", "f", json.dumps(arguments))]}]}
    )
    args = sent["contents"][0]["parts"][0]["functionCall"]["args"]
    assert args == arguments
    answer = {
        "candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": args}}]}}]
    }
    out = gemini_response_to_openai(
        json.dumps(answer).encode(), model="m", created=CREATED, request_id="r"
    )
    [tool_call] = json.loads(out)["choices"][0]["message"]["tool_calls"]
    assert json.loads(tool_call["function"]["arguments"]) == arguments
