"""The client side: a request's bytes (`Request`), and the response read from what comes back
(`ResponseReader`)."""

from __future__ import annotations

from collections.abc import Sequence

from circuitd.http1.reader import DONE, HEAD, UNTIL_CLOSE, Reader
from circuitd.http1.syntax import (
    FIELD,
    FIELDS,
    LAST_CHUNK,
    MAX_HEAD_BYTES,
    METHOD,
    OBS_FOLD,
    STATUS_LINE,
    TARGET,
    LocalProtocolError,
    RemoteProtocolError,
    chunk,
    content_length,
    tokens,
    written_fields,
)

__all__ = ["Request", "ResponseHead", "ResponseReader"]


class Request:
    """A request head, written and checked: `head` is its bytes, `length` the body length its
    `Content-Length` declares (None without one), `chunked` whether it says
    `Transfer-Encoding: chunked`, `close` whether it asks for the connection to close."""

    __slots__ = ("chunked", "close", "head", "length")

    def __init__(
        self, method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]
    ) -> None:
        if METHOD.fullmatch(method) is None:
            raise LocalProtocolError(f"illegal method {method!r}")
        if TARGET.fullmatch(target) is None:
            raise LocalProtocolError(f"illegal request target {target!r}")
        length: int | None = None
        chunked = close = host = False
        lines = []
        for name, value in headers:
            lines.append(b"%b: %b\r\n" % (name, value))
            lower = name.lower()
            if lower == b"content-length":
                length = content_length(value, length, LocalProtocolError)
            elif lower == b"transfer-encoding":
                if tokens(value) != [b"chunked"]:
                    raise LocalProtocolError(f"unsupported Transfer-Encoding {value!r}")
                chunked = True
            elif lower == b"connection":
                close = close or b"close" in tokens(value)
            elif lower == b"host":
                host = True
        fields = written_fields(lines)
        if not host:
            raise LocalProtocolError("missing Host header")
        if chunked and length is not None:
            raise LocalProtocolError("both Content-Length and Transfer-Encoding")
        self.head = b"%b %b HTTP/1.1\r\n%b\r\n" % (method, target, fields)
        self.length = length
        self.chunked = chunked
        self.close = close

    def body(self, data: bytes) -> bytes:
        """The whole of an in-memory body as the head frames it."""
        if self.chunked:
            return chunk(data) + LAST_CHUNK if data else LAST_CHUNK
        if len(data) != (self.length or 0):
            raise LocalProtocolError(
                f"a body of {len(data)} bytes for a Content-Length of {self.length or 0}"
            )
        return data


class ResponseHead:
    __slots__ = ("headers", "reason", "status", "version")

    def __init__(
        self, version: bytes, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.version = version  # b"1.1" or b"1.0"
        self.status = status
        self.reason = reason
        self.headers = headers  # as received: names in their case, values without OWS


class ResponseReader(Reader):
    """Reads the response to one request: `receive` what the socket gave (b"" when it
    closed), then `read_head()` until it returns the head (None: more bytes needed), then
    `read_body()` until it returns b"". Either raises `RemoteProtocolError`. `reusable` says
    whether the connection may carry another request once the body has ended.

    Strict where a mistake would desynchronise a pooled connection: the body is framed by
    `Transfer-Encoding: chunked`, by `Content-Length` (equal values only), or by the server
    closing; any other framing is an error, and a response that leaves a doubt (both headers,
    bytes past its end) is read but its connection is not reused. Lenient where servers are
    known to be sloppy, as h11 is: a missing reason phrase, bare LF line ends, obsolete line
    folding, control bytes other than NUL in a value. 1xx responses are skipped."""

    __slots__ = ("no_body",)

    def __init__(self, *, no_body: bool = False, keep_alive: bool = True) -> None:
        super().__init__(MAX_HEAD_BYTES, keep_alive)  # keep_alive: the request did not say close
        self.no_body = no_body  # the request was a HEAD: no response has a body

    @property
    def reusable(self) -> bool:
        """The response ended, allows keep-alive, and nothing came after it."""
        return self._state == DONE and self._keep_alive and self._pos == len(self._buf)

    def read_head(self) -> ResponseHead | None:
        if self._state != HEAD:
            raise RuntimeError("the response head was read already")
        while True:
            end = self._head_block("response")
            if end < 0:
                return None
            start, self._pos = self._pos, end
            buf = self._buf  # bytes now
            assert type(buf) is bytes
            head = _parse_head(buf, start, end)
            if head.status >= 200:
                self._frame(head)
                return head
            if head.status == 101:
                raise RemoteProtocolError("101 Switching Protocols, and no upgrade was asked")
            # 1xx: informational, another head follows

    def _frame(self, head: ResponseHead) -> None:
        """How the body ends (RFC 9112 6.3), and whether the connection outlives it."""
        length: int | None = None
        chunked = False
        for name, value in head.headers:
            lower = name.lower()
            if lower == b"content-length":
                length = content_length(value, length)
            elif lower == b"transfer-encoding":
                if chunked or tokens(value) != [b"chunked"]:
                    raise RemoteProtocolError(f"unsupported Transfer-Encoding {value!r}")
                chunked = True
            elif lower == b"connection" and b"close" in tokens(value):
                self._keep_alive = False
        if head.version != b"1.1":
            self._keep_alive = False
        status = head.status
        if self.no_body or status == 204 or status == 304:
            self._state = DONE
        elif chunked or length is not None:
            if chunked and length is not None:  # a smuggling shape: read by chunks, then close
                self._keep_alive = False
            self._frame_body(length, chunked)
        else:
            self._keep_alive = False
            self._state = UNTIL_CLOSE


def _parse_head(buf: bytes, start: int, end: int) -> ResponseHead:
    line = STATUS_LINE.match(buf, start, end)
    if line is None:
        first = buf[start : buf.find(b"\n", start, end)]
        raise RemoteProtocolError(f"not an HTTP/1.x status line: {first[:80]!r}")
    fields_at = line.end()
    if FIELDS.fullmatch(buf, fields_at, end) is not None:
        headers = FIELD.findall(buf, fields_at, end)
    else:
        block = buf[fields_at:end]
        if block[:1] in (b" ", b"\t"):
            raise RemoteProtocolError("a continuation line before any header")
        block = OBS_FOLD.sub(b" ", block)  # RFC 9112 5.2: each fold becomes a space
        if FIELDS.fullmatch(block) is None:
            raise RemoteProtocolError("malformed response header")
        headers = FIELD.findall(block)
    version = b"1.1" if line.group(1) == b"1" else b"1.0"
    return ResponseHead(version, int(line.group(2)), line.group(3) or b"", headers)
