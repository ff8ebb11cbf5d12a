"""Anthropic Messages answers → OpenAI `chat.completion` bodies and error bodies (sans-I/O).

- Text blocks are joined into `message.content`; `tool_use` blocks become `tool_calls`
  (`arguments` is the input object's JSON, byte for byte as Anthropic sent it). Other blocks
  (`thinking`, `redacted_thinking`, server tool blocks) are dropped. `content` is null when
  the answer is only tool calls, as OpenAI does.
- `stop_reason` → `finish_reason`: end_turn, stop_sequence, pause_turn → stop; max_tokens,
  model_context_window_exceeded → length; tool_use → tool_calls; refusal → content_filter.
- Usage follows OpenAI's semantics, where cached tokens are a *subset* of the prompt:
  `prompt_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens`
  (Anthropic's `input_tokens` counts only the uncached rest), `completion_tokens =
  output_tokens`, `prompt_tokens_details.cached_tokens = cache_read_input_tokens`. Cache
  *writes* are counted as ordinary prompt tokens (Anthropic bills them at 1.25x input; the
  price table does not model that either).
- The answer's `model` is the one Anthropic reports (e.g. the dated snapshot), as an
  OpenAI-compatible upstream's would be; `model` given by the caller is the fallback.
- Errors `{"type":"error","error":{"type","message"}}` become OpenAI's
  `{"error":{"message","type","code","param"}}`: `code` is Anthropic's error type verbatim,
  `type` the nearest OpenAI/gateway family (table below). A body that is not Anthropic's
  error shape (a proxy's HTML page) keeps its first 300 characters as the message.
"""

from __future__ import annotations

import msgspec

from circuitd.errors import ErrorBody, ErrorEnvelope
from circuitd.wire.openai_chat import (
    AssistantMessage,
    Choice,
    Completion,
    Function,
    OpenAIUsage,
    PromptTokensDetails,
    ToolCall,
    error_family,
)

__all__ = [
    "AnthropicUsage",
    "OpenAIUsage",
    "PromptTokensDetails",
    "anthropic_error_to_openai",
    "anthropic_response_to_openai",
    "error_fields",
    "finish_reason",
    "openai_usage",
]

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error type → OpenAI error `type` (the gateway's own names where it has them).
ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "not_found_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "billing_error": "insufficient_quota",
    "rate_limit_error": "rate_limit_exceeded",
    "api_error": "server_error",
    "overloaded_error": "service_unavailable",
    "timeout_error": "upstream_timeout",
}


def finish_reason(stop_reason: str | None) -> str | None:
    """OpenAI's `finish_reason` for an Anthropic `stop_reason` (unknown reasons: "stop")."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


class AnthropicUsage(msgspec.Struct, frozen=True):
    """`usage` of a message, `message_start` or `message_delta` (every field may be absent
    or null in a delta)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


def openai_usage(
    *, input_tokens: int, output_tokens: int, cache_read: int, cache_creation: int
) -> OpenAIUsage:
    prompt = input_tokens + cache_read + cache_creation
    return OpenAIUsage(
        prompt, output_tokens, prompt + output_tokens, PromptTokensDetails(cache_read)
    )


class _Block(msgspec.Struct, frozen=True):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: msgspec.Raw = msgspec.Raw()  # kept as sent: it becomes `arguments` verbatim


class _Message(msgspec.Struct, frozen=True):
    id: str
    content: list[_Block]
    model: str | None = None
    stop_reason: str | None = None
    usage: AnthropicUsage | None = None


class _ErrorObject(msgspec.Struct, frozen=True):
    type: str = "api_error"
    message: str = ""


class _ErrorResponse(msgspec.Struct, frozen=True):
    error: _ErrorObject


_message_decoder = msgspec.json.Decoder(_Message)
_error_decoder = msgspec.json.Decoder(_ErrorResponse)
_encoder = msgspec.json.Encoder()


def anthropic_response_to_openai(body: bytes, *, model: str, created: int) -> bytes:
    """Translates a successful Messages answer. Raises `msgspec.DecodeError` if `body` is not
    one (the caller treats that as a broken upstream)."""
    message = _message_decoder.decode(body)
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            if block.text:
                texts.append(block.text)
        elif block.type == "tool_use":
            raw = bytes(block.input)
            arguments = raw.decode() if raw and raw != b"null" else "{}"
            calls.append(
                ToolCall(id=block.id or "", function=Function(block.name or "", arguments))
            )
    content = "".join(texts) if texts or not calls else None
    usage = message.usage or AnthropicUsage()
    completion = Completion(
        id="chatcmpl-" + message.id,
        created=created,
        model=message.model or model,
        choices=[
            Choice(
                message=AssistantMessage(
                    role="assistant", content=content, refusal=None, tool_calls=calls or None
                ),
                finish_reason=finish_reason(message.stop_reason) or "stop",
            )
        ],
        usage=openai_usage(
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_read=usage.cache_read_input_tokens or 0,
            cache_creation=usage.cache_creation_input_tokens or 0,
        ),
    )
    return _encoder.encode(completion)


def error_fields(status: int, body: bytes) -> tuple[str, str, str | None]:
    """(message, OpenAI type, code) for an Anthropic error answer or error event body."""
    try:
        error = _error_decoder.decode(body).error
    except msgspec.DecodeError:
        summary = body[:300].decode("utf-8", "replace").strip()
        message = f"Anthropic answered {status}" + (f": {summary}" if summary else "")
        return message, error_family(status), None
    kind = error.type
    return error.message or kind, ERROR_TYPES.get(kind) or error_family(status), kind


def anthropic_error_to_openai(status: int, body: bytes) -> bytes:
    """An Anthropic error answer (any non-2xx body) as an OpenAI error body."""
    message, kind, code = error_fields(status, body)
    return _encoder.encode(ErrorEnvelope(ErrorBody(message, kind, code)))
