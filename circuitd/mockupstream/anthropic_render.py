"""The mock's Anthropic Messages dialect, answer side (sans-I/O): JSON, SSE, errors.

- JSON (`render_message`): a `message` object in Anthropic's field order, `usage` with zero
  cache tokens and `service_tier` "standard".
- Streams (`render_events`): `message_start` (usage: the input tokens, output_tokens 1),
  `content_block_start`, `ping`, then the content chunks that faults count (`text_delta`s, one
  per plan piece, or the tool input's `input_json_delta`s), then `content_block_stop`,
  `message_delta` (stop_reason, usage `{"output_tokens": N}` as Anthropic documents it) and
  `message_stop`. Every frame is `event: <type>` + `data: <json with the same type>`.
- `omit_usage`: the real API always sends usage and its SDK requires it, so here it means
  "every count is 0": the JSON usage, `message_start` and `message_delta` report 0 tokens.
- Errors (`error_body`): `{"type":"error","error":{"type","message"},"request_id"}` with
  Anthropic's type for the status (table below; other 4xx: invalid_request_error, other 5xx:
  api_error). The stream's error event is `overloaded_error` "Overloaded" (or the fault's
  message); its malformed event is a `content_block_delta` whose data is not JSON.
"""

from __future__ import annotations

import msgspec

from circuitd.mockupstream.anthropic import Reply
from circuitd.mockupstream.faults import Frames

__all__ = [
    "MODELS",
    "error_body",
    "error_type",
    "event",
    "models_body",
    "render_events",
    "render_message",
]

MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "mock-1")

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}


_encode = msgspec.json.Encoder().encode


class _Usage(msgspec.Struct):  # Anthropic's field order
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    output_tokens: int
    service_tier: str = "standard"


class _TextBlock(msgspec.Struct, tag="text", tag_field="type"):
    text: str


class _ToolUseBlock(msgspec.Struct, tag="tool_use", tag_field="type"):
    id: str
    name: str
    input: msgspec.Raw


class _Message(msgspec.Struct, kw_only=True, tag="message", tag_field="type"):
    id: str
    role: str = "assistant"
    model: str
    content: list[_TextBlock | _ToolUseBlock]
    stop_reason: str | None
    stop_sequence: None = None
    usage: _Usage


class _MessageStart(msgspec.Struct, tag="message_start", tag_field="type"):
    message: _Message


class _BlockStart(msgspec.Struct, tag="content_block_start", tag_field="type"):
    index: int
    content_block: _TextBlock | _ToolUseBlock


class _TextDelta(msgspec.Struct, tag="text_delta", tag_field="type"):
    text: str


class _JsonDelta(msgspec.Struct, tag="input_json_delta", tag_field="type"):
    partial_json: str


class _BlockDelta(msgspec.Struct, tag="content_block_delta", tag_field="type"):
    index: int
    delta: _TextDelta | _JsonDelta


class _StopReason(msgspec.Struct):
    stop_reason: str
    stop_sequence: None = None


class _OutputUsage(msgspec.Struct):
    output_tokens: int


class _MessageDelta(msgspec.Struct, tag="message_delta", tag_field="type"):
    delta: _StopReason
    usage: _OutputUsage


class _ErrorObject(msgspec.Struct):
    type: str
    message: str


class _Error(msgspec.Struct, tag="error", tag_field="type", omit_defaults=True):
    error: _ErrorObject
    request_id: str | None = None


def _usage(input_tokens: int, output_tokens: int) -> _Usage:
    return _Usage(input_tokens, 0, 0, output_tokens)


def _block(reply: Reply, tool_id: str, *, whole: bool) -> _TextBlock | _ToolUseBlock:
    if reply.tool is not None:
        arguments = reply.tool.arguments if whole else b"{}"
        return _ToolUseBlock(tool_id, reply.tool.name, msgspec.Raw(arguments))
    assert reply.text is not None
    return _TextBlock(reply.text.text if whole else "")


def render_message(
    reply: Reply, *, id: str, model: str, tool_id: str, omit_usage: bool = False
) -> bytes:
    """The JSON answer: a `message` object."""
    scale = 0 if omit_usage else 1
    message = _Message(
        id=id,
        model=model,
        content=[_block(reply, tool_id, whole=True)],
        stop_reason=reply.stop_reason,
        usage=_usage(reply.input_tokens * scale, reply.output_tokens * scale),
    )
    return _encode(message)


def event(name: str, payload: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


def render_events(
    reply: Reply,
    *,
    id: str,
    model: str,
    tool_id: str,
    omit_usage: bool = False,
    error_message: str | None = None,
) -> Frames:
    """The SSE answer, split for fault injection (see the module's rules)."""
    scale = 0 if omit_usage else 1
    start = _Message(
        id=id,
        model=model,
        content=[],
        stop_reason=None,
        usage=_usage(reply.input_tokens * scale, scale),
    )
    head = [
        event("message_start", _encode(_MessageStart(start))),
        event("content_block_start", _encode(_BlockStart(0, _block(reply, tool_id, whole=False)))),
        event("ping", b'{"type": "ping"}'),
    ]
    tool = reply.tool is not None
    content = [
        event(
            "content_block_delta",
            _encode(_BlockDelta(0, _JsonDelta(piece) if tool else _TextDelta(piece))),
        )
        for piece in reply.deltas
    ]
    finish = _MessageDelta(
        _StopReason(reply.stop_reason), _OutputUsage(reply.output_tokens * scale)
    )
    tail = [
        event("content_block_stop", b'{"type":"content_block_stop","index":0}'),
        event("message_delta", _encode(finish)),
        event("message_stop", b'{"type":"message_stop"}'),
    ]
    overloaded = _Error(_ErrorObject("overloaded_error", error_message or "Overloaded"))
    return Frames(
        head=head,
        content=content,
        tail=tail,
        malformed=event("content_block_delta", b"{not json"),
        error=event("error", _encode(overloaded)),
    )


def error_type(status: int) -> tuple[str, str]:
    """Anthropic's (error type, default message) for an error status."""
    if status in _ERRORS:
        return _ERRORS[status]
    if status >= 500:
        return _ERRORS[500]
    return ("invalid_request_error", f"Request failed with status {status}.")


def error_body(status: int, message: str | None = None, *, request_id: str | None = None) -> bytes:
    kind, default = error_type(status)
    return _encode(_Error(_ErrorObject(kind, message or default), request_id))


def models_body(created_at: str = "2025-01-01T00:00:00Z") -> bytes:
    """`GET /v1/models` in Anthropic's shape (one page)."""
    data = [{"type": "model", "id": m, "display_name": m, "created_at": created_at} for m in MODELS]
    return _encode({"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
