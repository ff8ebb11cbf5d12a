"""Fault injection: what a request asks the mock to do wrong, and where that choice comes from.

A request's effective fault is layered: the body's `"mock"` object over the head of the
server's fault queue (set through `POST /_mock/faults`) over the server's command-line
defaults. A field left unset (None) in a higher layer falls through to the one below, so a
test can add `{"status": 500}` to a server started with `--chunk-delay-ms 5` and get both.

"After k chunks" always counts *content* chunks (OpenAI content deltas, Anthropic
`content_block_delta` events, Gemini's content events): the stream's head (OpenAI's role chunk;
Anthropic's `message_start`, `content_block_start` and `ping`; nothing for Gemini) is sent
first regardless. The one exception
is `error_event_after: 0`: the error event is then the stream's very first event, as an
overloaded API answers a stream it could not start (`stream_steps` below).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

__all__ = [
    "CUT",
    "DELAY",
    "STALL",
    "Fault",
    "FaultQueue",
    "Frames",
    "Step",
    "error_body",
    "error_kind",
    "stream_steps",
]

NonNegative = Annotated[int, Meta(ge=0)]
Positive = Annotated[int, Meta(ge=1)]
Millis = Annotated[float, Meta(ge=0)]


class Fault(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    status: Annotated[int, Meta(ge=100, le=599)] | None = None  # >= 400: answer with this error
    retry_after: Annotated[float, Meta(ge=0)] | None = None  # seconds, sent as Retry-After
    latency_ms: Millis | None = None  # before the response headers
    chunk_delay_ms: Millis | None = None  # before each content chunk and the finish chunk
    stall_after: NonNegative | None = None  # then send nothing until the client goes away
    cut_after: NonNegative | None = None  # then close the connection, no end, no [DONE]
    malformed_after: NonNegative | None = None  # then one `data: {not json` event
    omit_usage: bool | None = None  # no usage even if asked for (Anthropic: all counts 0)
    chunks: Positive | None = None  # number of content chunks
    tokens: NonNegative | None = None  # completion length in tokens (words)
    message: str | None = None  # the error message, with `status` or `error_event_after`
    # Then one error event (OpenAI: `data: {"error": ...}`; Anthropic: `event: error`,
    # overloaded_error; Gemini: `data: {"error": ...}` 503 UNAVAILABLE) and the end of the
    # response; 0: the error is the first event.
    error_event_after: NonNegative | None = None
    # Every dialect (and the in-process mock provider): true forces a tool call answer (when
    # the request has tools), false forbids it; unset: as the request asks (tool_choice /
    # toolConfig, or "weather" in the last turn).
    tool_call: bool | None = None

    def over(self, base: Fault | None) -> Fault:
        """This fault's set fields, the rest from `base`."""
        if base is None:
            return self
        if self == NO_FAULT:  # the common case, kept cheap
            return base
        fields = {f: getattr(self, f) for f in self.__struct_fields__}
        return msgspec.structs.replace(base, **{f: v for f, v in fields.items() if v is not None})

    @property
    def failing(self) -> bool:
        """Whether to answer with an error (`status` below 400 answers normally, so a request
        can override a server started with `--status`)."""
        return self.status is not None and self.status >= 400

    @property
    def timed(self) -> bool:
        """Whether answering needs the event loop's clock (or the client's departure)."""
        return bool(self.latency_ms or self.chunk_delay_ms) or self.stall_after is not None


NO_FAULT = Fault()


class Step:
    """Markers between the SSE frames of a stream: where time or a fault intervenes."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


DELAY, STALL, CUT = Step("delay"), Step("stall"), Step("cut")


@dataclass(frozen=True, slots=True)
class Frames:
    """A stream's SSE frames in any dialect, split where fault injection acts."""

    head: list[bytes]  # sent first (OpenAI: the role chunk; Anthropic: message_start ...)
    content: list[bytes]  # the content chunks that `*_after` counts
    tail: list[bytes]  # the finish, the usage, the end marker
    malformed: bytes  # an event whose JSON is broken
    error: bytes  # an error event


def stream_steps(frames: Frames, fault: Fault) -> Iterator[bytes | Step]:
    """The frames to send, with the fault's markers between them. A stream ends after its
    last frame, at a STALL or CUT marker (then the caller waits or cuts), or after an
    error frame (then the caller ends the response cleanly, as the real APIs do)."""
    if fault.error_event_after == 0:
        yield frames.error
        return
    yield from frames.head
    content = frames.content
    for k in range(len(content) + 1):  # k: content chunks sent so far
        if k == fault.malformed_after:
            yield frames.malformed
        if k and k == fault.error_event_after:
            yield frames.error
            return
        if k == fault.stall_after:
            yield STALL
            return
        if k == fault.cut_after:
            yield CUT
            return
        if fault.chunk_delay_ms:
            yield DELAY
        if k < len(content):
            yield content[k]
    yield from frames.tail


@dataclass(slots=True)
class _Entry:
    fault: Fault
    left: int | None  # None: until cleared
    key: str | None = None  # only for requests made with this API key


class FaultQueue:
    """Faults for the next chat requests: the head entry applies `count` times (None:
    until cleared), then the next entry. An entry with a `key` applies only to requests made
    with that API key (one of several keys failing) and is passed over by the others."""

    def __init__(self) -> None:
        self._entries: deque[_Entry] = deque()

    def push(self, fault: Fault, count: int | None, key: str | None = None) -> None:
        if count is None or count > 0:
            self._entries.append(_Entry(fault, count, key))

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, key: str | None = None) -> Fault | None:
        """The fault for one request made with `key`, consuming one use of it."""
        entry = next((e for e in self._entries if e.key is None or e.key == key), None)
        if entry is None:
            return None
        if entry.left is not None:
            entry.left -= 1
            if entry.left <= 0:
                self._entries.remove(entry)
        return entry.fault


def request_key(headers: Mapping[bytes, bytes]) -> str | None:
    """The API key a request carries, in any dialect's header (Bearer, `api-key`,
    `x-api-key`, `x-goog-api-key`)."""
    scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
    if scheme.lower() == b"bearer" and token:
        return token.decode("latin-1")
    for name in (b"api-key", b"x-api-key", b"x-goog-api-key"):
        if name in headers:
            return headers[name].decode("latin-1")
    return None


_KINDS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", "unsupported_country_region_territory", "Permission denied."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("timeout", None, "Request timed out."),
    409: ("invalid_request_error", "conflict", "Conflict."),
    413: ("invalid_request_error", "request_too_large", "Request too large."),
    422: ("invalid_request_error", None, "Unprocessable request."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", "bad_gateway", "Bad gateway."),
    503: ("server_error", "service_unavailable", "The engine is currently overloaded."),
    504: ("server_error", "timeout", "Gateway timeout."),
}


def error_kind(status: int) -> tuple[str, str | None, str]:
    """OpenAI's (type, code, default message) for an error status."""
    if status in _KINDS:
        return _KINDS[status]
    if status >= 500:
        return ("server_error", None, "The server had an error while processing your request.")
    return ("invalid_request_error", None, f"Request failed with status {status}.")


class _Error(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class _ErrorBody(msgspec.Struct):
    error: _Error


_encode = msgspec.json.Encoder().encode


def error_body(
    status: int,
    message: str | None = None,
    *,
    code: str | UnsetType | None = UNSET,
    param: str | None = None,
) -> bytes:
    """`{"error": {"message", "type", "param", "code"}}` as OpenAI sends it; `code` defaults
    to the status's usual code."""
    type_, default_code, default_message = error_kind(status)
    code = default_code if isinstance(code, UnsetType) else code
    error = _Error(message or default_message, type_, param, code)
    return _encode(_ErrorBody(error))
