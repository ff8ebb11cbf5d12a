"""The canonical OpenAI answer → an Anthropic Messages answer (sans-I/O): JSON and errors.

The answer side of the inbound Anthropic dialect (`anthropic_inbound` is the request side,
`anthropic_inbound_stream` the streams). Content blocks reuse `anthropic_request`'s Structs.

- `chat.completion` → `message`: `content` text → a text block, `refusal` → a text block,
  `tool_calls` → `tool_use` blocks (the arguments JSON as `input`; arguments that are not a
  JSON object become `{}`, since Anthropic's `input` is always an object). The `id` keeps
  an Anthropic id (`chatcmpl-msg_…` → `msg_…`, others get `msg_` in front); `model` is the one
  the upstream reports. The gateway's `x_gateway` object is kept (SDKs ignore extra fields).
- `finish_reason` → `stop_reason`: stop → end_turn, or stop_sequence when the upstream names
  the sequence that matched (vLLM's `stop_reason`) and the request asked for it; length →
  max_tokens; tool_calls/function_call → tool_use; content_filter → refusal.
- Usage, inverse of `anthropic_response.openai_usage`: `input_tokens = prompt_tokens -
  cached_tokens`, `cache_read_input_tokens = cached_tokens`, `cache_creation_input_tokens =
  0` (OpenAI reports no cache writes), `output_tokens = completion_tokens`.
- Errors: `{"type":"error","error":{"type","message"},"request_id"}` with the answer's status
  kept; the type follows the status (`ERROR_TYPES`). A 503 (every breaker open, or the
  gateway draining) is `overloaded_error`: Anthropic's "temporarily unable to serve, retry"
  — while the status stays the one the OpenAI route, the ledger and the metrics report.
  The message comes from the OpenAI error body; a body already in Anthropic's shape passes
  through; any other body is summarised.

The OpenAI views here are no stricter than the relay's (`wire.openai`): whatever the relay
accepted translates.
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec

from circuitd.wire.anthropic_request import TextBlock, ToolUseBlock
from circuitd.wire.openai import Usage

__all__ = [
    "ERROR_TYPES",
    "ErrorEvent",
    "ErrorObject",
    "Message",
    "MessageUsage",
    "error_body",
    "error_type",
    "message_id",
    "message_usage",
    "openai_completion_to_anthropic",
    "stop_reason",
    "tool_input",
]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_STOP_REASONS = {
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def error_type(status: int) -> str:
    """Anthropic's error type for a status (other 4xx: invalid request; other 5xx: api)."""
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


# --- the Anthropic side --------------------------------------------------------------------


class MessageUsage(msgspec.Struct):  # Anthropic's field order
    input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int = 0
    service_tier: str | msgspec.UnsetType = msgspec.UNSET  # the mock upstream names its tier


class Message(msgspec.Struct, kw_only=True, tag="message", tag_field="type"):
    id: str
    role: str = "assistant"
    model: str
    content: list[TextBlock | ToolUseBlock]
    stop_reason: str | None
    stop_sequence: str | None = None
    usage: MessageUsage
    x_gateway: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class ErrorObject(msgspec.Struct):
    type: str
    message: str


class ErrorEvent(msgspec.Struct, tag="error", tag_field="type", omit_defaults=True):
    """An error answer's body, and the data of a stream's `error` event."""

    error: ErrorObject
    request_id: str | None = None


# --- the OpenAI side: the fields that are read ---------------------------------------------


class _Function(msgspec.Struct, frozen=True):
    name: Any = ""
    arguments: Any = ""


class _ToolCall(msgspec.Struct, frozen=True):
    id: Any = ""
    function: _Function = _Function()


class _AssistantMessage(msgspec.Struct, frozen=True):
    content: str | None = None
    refusal: Any = None
    tool_calls: Any = None


class _Choice(msgspec.Struct, frozen=True):
    message: _AssistantMessage | None = None
    finish_reason: Any = None
    stop_reason: Any = None  # vLLM: the stop string that matched


class _Completion(msgspec.Struct, frozen=True):
    id: Any = ""
    model: Any = ""
    choices: list[_Choice] = []
    usage: Usage | None = None
    x_gateway: msgspec.Raw = msgspec.Raw()


class _OpenAIError(msgspec.Struct, frozen=True):
    message: Any = None


class _OpenAIErrorEnvelope(msgspec.Struct, frozen=True):
    error: _OpenAIError


class _Type(msgspec.Struct, frozen=True):
    type: Any = None


_completion_decoder = msgspec.json.Decoder(_Completion)
_error_decoder = msgspec.json.Decoder(_OpenAIErrorEnvelope)
_type_decoder = msgspec.json.Decoder(_Type)
_input_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()


def message_id(openai_id: object, fallback: str) -> str:
    text = openai_id if isinstance(openai_id, str) and openai_id else fallback
    text = text.removeprefix("chatcmpl-")
    return text if text.startswith("msg_") else "msg_" + text


def stop_reason(
    finish_reason: object, matched: object, stop_sequences: tuple[str, ...]
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for an OpenAI choice's end."""
    if isinstance(finish_reason, str) and finish_reason in _STOP_REASONS:
        return _STOP_REASONS[finish_reason], None
    if isinstance(matched, str) and matched in stop_sequences:
        return "stop_sequence", matched
    return "end_turn", None


def message_usage(usage: Usage | None) -> MessageUsage:
    if usage is None:
        return MessageUsage()
    cached = usage.cached_tokens
    return MessageUsage(
        input_tokens=max(0, usage.prompt_tokens - cached),
        cache_read_input_tokens=cached,
        output_tokens=usage.completion_tokens,
    )


def tool_input(arguments: object) -> dict[str, Any]:
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        return _input_decoder.decode(arguments)
    except msgspec.DecodeError:
        return {}


def _tool_uses(raw: object) -> list[ToolUseBlock]:
    try:
        calls = msgspec.convert(raw, list[_ToolCall]) if raw else []
    except msgspec.ValidationError:
        return []
    return [
        ToolUseBlock(
            str(call.id or ""), str(call.function.name or ""), tool_input(call.function.arguments)
        )
        for call in calls
    ]


def openai_completion_to_anthropic(
    body: bytes, *, model: str, fallback_id: str, stop_sequences: tuple[str, ...] = ()
) -> bytes:
    """Translates a `chat.completion` body (the first choice). Raises `msgspec.DecodeError`
    only for a body the relay would not have accepted either."""
    completion = _completion_decoder.decode(body)
    content: list[TextBlock | ToolUseBlock] = []
    finish: object = None
    matched: object = None
    if completion.choices:
        choice = completion.choices[0]
        finish, matched = choice.finish_reason, choice.stop_reason
        message = choice.message
        if message is not None:
            if message.content:
                content.append(TextBlock(message.content))
            if isinstance(message.refusal, str) and message.refusal:
                content.append(TextBlock(message.refusal))
            content.extend(_tool_uses(message.tool_calls))
    reason, sequence = stop_reason(finish, matched, stop_sequences)
    answer = Message(
        id=message_id(completion.id, fallback_id),
        model=completion.model if isinstance(completion.model, str) and completion.model else model,
        content=content,
        stop_reason=reason,
        stop_sequence=sequence,
        usage=message_usage(completion.usage),
        x_gateway=completion.x_gateway if bytes(completion.x_gateway) else msgspec.UNSET,
    )
    return _encoder.encode(answer)


def error_body(status: int, body: bytes, *, request_id: str | None = None) -> bytes:
    """An error answer (an OpenAI error body, or any other) in Anthropic's shape."""
    message: object = None
    with contextlib.suppress(msgspec.DecodeError):
        if _type_decoder.decode(body).type == "error":
            return body  # already Anthropic's (an upstream's, relayed)
    with contextlib.suppress(msgspec.DecodeError):
        message = _error_decoder.decode(body).error.message
    if not isinstance(message, str) or not message:
        summary = body[:300].decode("utf-8", "replace").strip()
        message = f"Request failed with status {status}" + (f": {summary}" if summary else "")
    return _encoder.encode(ErrorEvent(ErrorObject(error_type(status), message), request_id))
