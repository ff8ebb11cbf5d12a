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

from circuitd.core.sse import encode_event
from circuitd.mockupstream.anthropic import Reply
from circuitd.mockupstream.faults import Frames
from circuitd.wire.anthropic_events import (
    BlockDelta,
    BlockStart,
    BlockStop,
    JsonDelta,
    MessageDelta,
    MessageStart,
    MessageStop,
    OutputUsage,
    StopDelta,
    TextDelta,
    frame,
)
from circuitd.wire.anthropic_inbound_answer import ErrorEvent, ErrorObject, Message, MessageUsage
from circuitd.wire.anthropic_request import TextBlock, ToolUseBlock

__all__ = [
    "MODELS",
    "error_body",
    "error_type",
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
# Anthropic's own ping, its space included (the other events are written as msgspec does).
_PING = encode_event(b'{"type": "ping"}', event="ping")


def _usage(input_tokens: int, output_tokens: int) -> MessageUsage:
    return MessageUsage(input_tokens, 0, 0, output_tokens, service_tier="standard")


def _block(reply: Reply, tool_id: str, *, whole: bool) -> TextBlock | ToolUseBlock:
    if reply.tool is not None:
        arguments = msgspec.json.decode(reply.tool.arguments) if whole else {}
        return ToolUseBlock(tool_id, reply.tool.name, arguments)
    assert reply.text is not None
    return TextBlock(reply.text.text if whole else "")


def render_message(
    reply: Reply, *, id: str, model: str, tool_id: str, omit_usage: bool = False
) -> bytes:
    """The JSON answer: a `message` object."""
    scale = 0 if omit_usage else 1
    message = Message(
        id=id,
        model=model,
        content=[_block(reply, tool_id, whole=True)],
        stop_reason=reply.stop_reason,
        usage=_usage(reply.input_tokens * scale, reply.output_tokens * scale),
    )
    return _encode(message)


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
    start = Message(
        id=id,
        model=model,
        content=[],
        stop_reason=None,
        usage=_usage(reply.input_tokens * scale, scale),
    )
    head = [
        frame("message_start", MessageStart(start)),
        frame("content_block_start", BlockStart(0, _block(reply, tool_id, whole=False))),
        _PING,
    ]
    tool = reply.tool is not None
    content = [
        frame("content_block_delta", BlockDelta(0, JsonDelta(piece) if tool else TextDelta(piece)))
        for piece in reply.deltas
    ]
    finish = MessageDelta(StopDelta(reply.stop_reason), OutputUsage(reply.output_tokens * scale))
    tail = [
        frame("content_block_stop", BlockStop(0)),
        frame("message_delta", finish),
        frame("message_stop", MessageStop()),
    ]
    overloaded = ErrorEvent(ErrorObject("overloaded_error", error_message or "Overloaded"))
    return Frames(
        head=head,
        content=content,
        tail=tail,
        malformed=encode_event(b"{not json", event="content_block_delta"),
        error=frame("error", overloaded),
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
    return _encode(ErrorEvent(ErrorObject(kind, message or default), request_id))


def models_body(created_at: str = "2025-01-01T00:00:00Z") -> bytes:
    """`GET /v1/models` in Anthropic's shape (one page)."""
    data = [{"type": "model", "id": m, "display_name": m, "created_at": created_at} for m in MODELS]
    return _encode({"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
