"""The server side: requests read one after another from a connection (`RequestReader`), and
a response head written with the framing its body needs (`response_head`).

A request's framing is strict (RFC 9112 6.3): `Content-Length` (equal values only) or
`Transfer-Encoding: chunked` in HTTP/1.1, never both, else a 400 and the connection closes;
HTTP/1.1 needs one `Host`; a folded header line is refused. Empty lines before a request
line are skipped, as RFC 9112 2.2 asks.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

from circuitd.http1.reader import DONE, HEAD, Reader
from circuitd.http1.syntax import (
    FIELD,
    FIELDS,
    REQUEST_LINE,
    LocalProtocolError,
    RemoteProtocolError,
    content_length,
    tokens,
    written_fields,
)

__all__ = [
    "BODY_CHUNKED",
    "BODY_LENGTH",
    "BODY_NONE",
    "BODY_UNTIL_CLOSE",
    "RequestHead",
    "RequestReader",
    "informational_head",
    "response_head",
]


class RequestHead:
    __slots__ = ("expect_continue", "has_body", "headers", "method", "target", "version")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.method = method
        self.target = target
        self.version = version  # b"1.1", b"1.0", or b"2.0" for HTTP/2's preface
        self.headers = headers  # names lower-cased (as ASGI has them), values without OWS
        self.has_body = False  # it has a Content-Length (even 0) or a Transfer-Encoding
        self.expect_continue = False  # `Expect: 100-continue`, with a body to come


class RequestReader(Reader):
    """`receive` the bytes, `read_head()` until it returns the request's head (None: more bytes
    needed), `read_body()` until it returns b""; once the response has been sent,
    `next_request()` and again. Bytes of a next request that came early (pipelining) stay in
    the buffer. `keep_alive`: the request allows the connection to carry another."""

    __slots__ = ()

    @property
    def keep_alive(self) -> bool:
        return self._keep_alive

    def next_request(self) -> None:
        if self._state != DONE:
            raise RuntimeError("the request was not read to its end")
        self._state = HEAD
        self._keep_alive = True

    def rest(self) -> bytes:
        """The bytes received and not read (for the protocol that takes over)."""
        rest = bytes(self._buf[self._pos :])
        self._buf, self._pos = b"", 0
        return rest

    def read_head(self) -> RequestHead | None:
        if self._state != HEAD:
            raise RuntimeError("the request head was read already")
        pos = self._pos
        while self._buf.startswith(b"\r\n", pos):
            pos += 2
        self._pos = pos
        end = self._head_block("request")
        if end < 0:
            return None
        buf = self._buf  # bytes now
        assert type(buf) is bytes
        self._pos = end
        line = REQUEST_LINE.match(buf, pos, end)
        if line is None:
            first = buf[pos : buf.find(b"\n", pos, end)]
            raise RemoteProtocolError(f"not an HTTP/1.x request line: {first[:80]!r}")
        method, target, major, minor = line.groups()
        if major == b"2" and minor == b"0" and method == b"PRI" and target == b"*":
            return RequestHead(method, target, b"2.0", [])  # HTTP/2 with prior knowledge
        if major != b"1":
            raise RemoteProtocolError("HTTP version not supported", status=505)
        version = b"1.0" if minor == b"0" else b"1.1"
        fields_at = line.end()
        if FIELDS.fullmatch(buf, fields_at, end) is None:
            raise RemoteProtocolError("malformed request header")
        headers = [(name.lower(), value) for name, value in FIELD.findall(buf, fields_at, end)]
        head = RequestHead(method, target, version, headers)
        self._frame(head)
        return head

    def _frame(self, head: RequestHead) -> None:
        length: int | None = None
        chunked = expect = False
        hosts = 0
        for name, value in head.headers:
            if name == b"content-length":
                length = content_length(value, length)
            elif name == b"transfer-encoding":
                if chunked or head.version != b"1.1" or tokens(value) != [b"chunked"]:
                    raise RemoteProtocolError(f"unsupported Transfer-Encoding {value!r}", 501)
                chunked = True
            elif name == b"connection":
                if b"close" in tokens(value):
                    self._keep_alive = False
            elif name == b"host":
                hosts += 1
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
        if chunked and length is not None:
            raise RemoteProtocolError("both Content-Length and Transfer-Encoding")
        if head.version == b"1.1":
            if hosts != 1:
                raise RemoteProtocolError("an HTTP/1.1 request needs one Host header")
        else:
            self._keep_alive = False
        head.has_body = chunked or length is not None
        head.expect_continue = expect and head.version == b"1.1" and (chunked or bool(length))
        self._frame_body(length, chunked)


# How a response's body goes on the wire (`response_head`'s second value)
BODY_NONE: Final = 0  # no body (HEAD, 204, 304): any data is dropped
BODY_LENGTH: Final = 1  # as is, `Content-Length` bytes
BODY_CHUNKED: Final = 2  # in chunks, then the last chunk
BODY_UNTIL_CLOSE: Final = 3  # as is, and the connection closes to end it (an HTTP/1.0 client)

_REASONS: Final = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


def response_head(
    status: int,
    headers: list[tuple[bytes, bytes]],
    *,
    head_request: bool,
    http10: bool,
    keep_alive: bool,
) -> tuple[bytes, int, int, bool]:
    """A response head for a final `status` (>= 200): its bytes, the body's framing (a `BODY_`
    value), the length it declares (0 without one) and whether the connection is kept after
    it. The framing is ours to choose: a `Transfer-Encoding` header given is dropped, and a
    `Connection` header is replaced (by `close` when it said close or `keep_alive` is False);
    with no `Content-Length`, an HTTP/1.1 client gets chunks, an HTTP/1.0 one the body up to
    the close."""
    lines = []
    length: int | None = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"connection":
            keep_alive = keep_alive and b"close" not in tokens(value)
            continue
        if lower == b"transfer-encoding":
            continue
        if lower == b"content-length":
            length = content_length(value, length, LocalProtocolError)
        lines.append(b"%b: %b\r\n" % (name, value))
    if head_request or status == 204 or status == 304:
        framing = BODY_NONE
        if length is None and not http10 and not (status == 204 or status == 304):
            lines.append(b"transfer-encoding: chunked\r\n")  # what a GET would have said
    elif length is not None:
        framing = BODY_LENGTH
    elif http10:
        framing, keep_alive = BODY_UNTIL_CLOSE, False
    else:
        framing = BODY_CHUNKED
        lines.append(b"transfer-encoding: chunked\r\n")
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    head = b"HTTP/1.1 %d %b\r\n%b\r\n" % (status, _REASONS.get(status, b""), written_fields(lines))
    return head, framing, length or 0, keep_alive


def informational_head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A 1xx response head (100 Continue, 101 Switching Protocols, 103 Early Hints)."""
    lines = [b"%b: %b\r\n" % pair for pair in headers]
    return b"HTTP/1.1 %d %b\r\n%b\r\n" % (status, _REASONS.get(status, b""), written_fields(lines))
