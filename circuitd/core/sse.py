"""Server-Sent Events: an incremental decoder and a small encoder (sans-I/O).

The decoder follows the WHATWG "event stream interpretation" with two deliberate differences:
invalid UTF-8 raises `SSEError` instead of being replaced (an upstream that sends garbage is
broken, and the relay must not forward mojibake), and memory is bounded (`max_line_bytes` per
line, `max_event_bytes` of data per event). `end()` raises if the stream stops mid-event, where
the spec silently drops the event: the gateway must know a stream was cut.

Spec points kept: lines end in CRLF, LF or CR (a CR ending one chunk and an LF starting the next
are one line ending); a leading BOM is stripped once; ":" starts a comment; a field without a
colon has an empty value; one space after the colon is stripped; a blank line dispatches; an
event with no `data` line is not dispatched; `id` persists across events (it is the stream's
"last event ID") and is ignored if it contains NUL; `retry` takes ASCII digits only.

After `SSEError` the decoder's state is undefined: discard it.
"""

from __future__ import annotations

import re

import msgspec

__all__ = ["DONE", "SSEDecoder", "SSEError", "SSEEvent", "encode_event"]

DONE = b"data: [DONE]\n\n"

_BOM = b"\xef\xbb\xbf"
_EOL = re.compile(rb"\r\n|\r|\n")
_MAX_RETRY_DIGITS = 15  # longer values are ignored: int() of huge digit strings is slow/raises


class SSEError(ValueError):
    """The byte stream is not a well-formed event stream (or exceeds the decoder's bounds)."""


class SSEEvent(msgspec.Struct, frozen=True, gc=False):
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None  # a valid `retry` field seen in this event's block, if any


def _text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise SSEError(f"invalid UTF-8 in event stream: {exc.reason}") from None


class SSEDecoder:
    """Feed raw bytes as they arrive; get back the events each chunk completes."""

    __slots__ = (
        "_cr",
        "_data",
        "_data_size",
        "_event",
        "_event_retry",
        "_max_event",
        "_max_line",
        "_parts",
        "_parts_size",
        "_started",
        "last_id",
        "retry",
    )

    def __init__(self, *, max_line_bytes: int = 1 << 20, max_event_bytes: int = 16 << 20) -> None:
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        self._parts: list[bytes] = []  # the current incomplete line, not yet joined
        self._parts_size = 0
        self._cr = False  # the last line ended in CR: an LF starting the next chunk is its tail
        self._started = False  # the BOM check is done
        self._data: list[bytes] = []
        self._data_size = 0
        self._event: str | None = None
        self._event_retry: int | None = None
        self.last_id: str | None = None
        self.retry: int | None = None  # the latest reconnection time (ms) the stream asked for

    def feed(self, data: bytes) -> list[SSEEvent]:
        if not data:
            return []
        if self._cr:
            self._cr = False
            if data[0] == 0x0A:
                data = data[1:]
                if not data:
                    return []
        if not self._started:
            data = self._strip_bom(data)
            if not data:
                return []
        has_cr = data.find(b"\r") >= 0  # find() beats `in` here, measurably
        if has_cr:
            # CRLF-only servers (sse-starlette's default) take the LF paths; a bare or
            # chunk-final CR still needs the regex split below.
            lf = data.replace(b"\r\n", b"\n")
            if lf.find(b"\r") < 0:
                data, has_cr = lf, False
        if not has_cr:
            nl = data.find(b"\n")
            if nl < 0:
                # No line ends here: stash without copying (a long line may come in many chunks).
                self._parts.append(data)
                self._parts_size += len(data)
                if self._parts_size > self._max_line:
                    raise SSEError(f"line longer than {self._max_line} bytes")
                return []
            payloads = self._whole_data(data)  # the fast path: whole data events
            if payloads is not None:
                last_id = self.last_id
                return [SSEEvent(payload, "message", last_id) for payload in payloads]
        if self._parts:
            self._parts.append(data)
            data = b"".join(self._parts)
            self._parts.clear()
            self._parts_size = 0
        if has_cr:
            lines = _EOL.split(data)
            self._cr = data[-1] == 0x0D
        else:
            lines = data.split(b"\n")
        tail = lines.pop()
        if tail:
            if len(tail) > self._max_line:
                raise SSEError(f"line longer than {self._max_line} bytes")
            self._parts.append(tail)
            self._parts_size = len(tail)
        return self._lines(lines)

    def feed_data(self, data: bytes) -> list[str]:
        """`feed` for a reader that wants only each event's data (an OpenAI-style stream, whose
        event names carry nothing): the same events' data, without an `SSEEvent` each when
        the chunk is whole data events (`_whole_data`)."""
        payloads = self._whole_data(data)
        if payloads is not None:
            return payloads
        return [event.data for event in self.feed(data)]

    def _whole_data(self, data: bytes) -> list[str] | None:
        """Each event's data when `data` is nothing but whole one-line `data: ` events (LF
        only, nothing pending, within the bounds: an upstream's usual read), in one decode
        and one split. None for anything else, which the line-by-line walk decides."""
        if not (
            data[:6] == b"data: "
            and data[-2:] == b"\n\n"
            and len(data) <= min(self._max_line, self._max_event + 5)  # so each event fits
            and not self._cr
            and not self._parts
            and not self._data
            and self._event is None
        ):
            return None
        text = _text(data)
        payloads = text[6:-2].split("\n\ndata: ")
        if text.count("\n") != 2 * len(payloads) or text.find("\r") >= 0:
            return None  # a line but the events' own, or a CR
        self._started = True  # (a chunk that starts with "data: " has no BOM)
        return payloads

    def end(self) -> None:
        """The stream closed. Raises `SSEError` if it stopped in the middle of an event."""
        if self._parts:
            raise SSEError("event stream ended in the middle of a line")
        if self._data or self._event is not None:
            raise SSEError("event stream ended in the middle of an event")

    def _strip_bom(self, data: bytes) -> bytes:
        if self._parts:  # a BOM prefix was held back from an earlier chunk
            data = b"".join(self._parts) + data
            self._parts.clear()
            self._parts_size = 0
        if len(data) < len(_BOM) and _BOM.startswith(data):
            self._parts.append(data)
            self._parts_size = len(data)
            return b""
        self._started = True
        return data[3:] if data.startswith(_BOM) else data

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        max_line = self._max_line
        for line in lines:
            if not line:
                if self._data:
                    events.append(self._dispatch())
                else:
                    self._event = None
                    self._event_retry = None
            elif len(line) > max_line:
                raise SSEError(f"line longer than {max_line} bytes")
            elif line.startswith(b"data:"):  # the hot path: nearly every line is a data line
                value = line[6:] if line[5:6] == b" " else line[5:]
                self._data_size += len(value) + 1
                if self._data_size > self._max_event:
                    raise SSEError(f"event data longer than {self._max_event} bytes")
                self._data.append(value)
            elif line[0] == 0x3A:  # ":" comment (keep-alives); still must be UTF-8
                _text(line)
            else:
                self._field(line)
        return events

    def _add_data(self, value: bytes) -> None:
        self._data_size += len(value) + 1
        if self._data_size > self._max_event:
            raise SSEError(f"event data longer than {self._max_event} bytes")
        self._data.append(value)

    def _field(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._add_data(value)
        elif name == b"event":
            self._event = _text(value)
        elif name == b"id":
            text = _text(value)
            if "\0" not in text:
                self.last_id = text
        elif name == b"retry":
            if value.isdigit() and len(value) <= _MAX_RETRY_DIGITS:  # bytes: ASCII digits only
                self.retry = self._event_retry = int(value)
        else:
            _text(line)  # unknown fields are ignored, but the stream must still be UTF-8

    def _dispatch(self) -> SSEEvent:
        data = self._data
        raw = data[0] if len(data) == 1 else b"\n".join(data)
        event = SSEEvent(
            _text(raw),
            self._event or "message",
            self.last_id,
            self._event_retry,
        )
        self._data = []
        self._data_size = 0
        self._event = None
        self._event_retry = None
        return event


def encode_event(data: bytes | str, *, event: str | None = None) -> bytes:
    """One event: optional `event:` line, one `data:` line per line of `data`, blank line.

    Line breaks inside `data` (CRLF, CR or LF) become separate data lines, which a decoder
    joins back with LF.
    """
    raw = _utf8(data) if isinstance(data, str) else data
    if b"\n" in raw or b"\r" in raw:
        body = b"".join([b"data: " + line + b"\n" for line in _EOL.split(raw)])
    else:
        body = b"data: " + raw + b"\n"
    if event is None:
        return body + b"\n"
    if "\n" in event or "\r" in event:
        raise SSEError("event name must not contain a line break")
    return b"event: " + _utf8(event) + b"\n" + body + b"\n"


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError as exc:  # lone surrogates
        raise SSEError(f"cannot encode as UTF-8: {exc.reason}") from None
