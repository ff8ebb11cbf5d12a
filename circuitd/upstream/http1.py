"""HTTP/1.1 for the client side, sans-I/O (RFC 9112): a request's bytes, and a reader that
parses the response to it out of the bytes received.

Only what a client of LLM APIs meets, and strict where a mistake would desynchronise a pooled
connection: the body is framed by `Transfer-Encoding: chunked`, by `Content-Length` (equal
values only), or by the server closing; a response that frames itself in any other way is an
error, and one that could leave a doubt (both headers, bytes past its end) is read but its
connection is not reused. Lenient where servers are known to be sloppy, as h11 is: a missing
reason phrase, bare LF line ends, obsolete line folding, control bytes other than NUL in a
field value. 1xx responses are skipped.

Compared with driving h11 (the state machine this replaces), a JSON exchange costs a few
regular-expression calls over the whole head and one slice for the body; consecutive chunks
already received come out as one piece. bench/RESULTS.md has the figures.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

__all__ = [
    "LAST_CHUNK",
    "MAX_HEAD_BYTES",
    "LocalProtocolError",
    "RemoteProtocolError",
    "Request",
    "ResponseHead",
    "ResponseReader",
    "chunk",
]

MAX_HEAD_BYTES: Final = 64 * 1024  # a response head, or a chunked body's trailers
_MAX_CHUNK_LINE: Final = 1024  # a chunk's size line, extensions included
LAST_CHUNK: Final = b"0\r\n\r\n"


class LocalProtocolError(ValueError):
    """The request cannot be sent as asked (a bad header, a body its headers do not frame)."""


class RemoteProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response we can trust."""


_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_METHOD = re.compile(_TOKEN)
_TARGET = re.compile(rb"[\x21-\x7e]+")
# What a request's header lines must be once written: the count of line ends is checked too,
# since a value holding CR LF would otherwise pass as two lines.
_REQUEST_FIELDS = re.compile(rb"(?:" + _TOKEN + rb": [^\x00\r\n]*\r\n)*")

_HEAD_END = re.compile(rb"\n\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\x00\r\n]*))?\r?\n")
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([^\x00\r\n]*?)[ \t]*\r?\n")
_FIELDS = re.compile(rb"(?:" + _TOKEN + rb":[^\x00\r\n]*\r?\n)*\r?\n")
_OBS_FOLD = re.compile(rb"\r?\n[ \t]+")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?")
_DIGITS = re.compile(rb"[0-9]{1,20}")


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked body (not empty: an empty chunk ends the body)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class Request:
    """A request head, written and checked: `head` is its bytes, `length` the body length its
    `Content-Length` declares (None without one), `chunked` whether it says
    `Transfer-Encoding: chunked`, `close` whether it asks for the connection to close."""

    __slots__ = ("chunked", "close", "head", "length")

    def __init__(
        self, method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]
    ) -> None:
        if _METHOD.fullmatch(method) is None:
            raise LocalProtocolError(f"illegal method {method!r}")
        if _TARGET.fullmatch(target) is None:
            raise LocalProtocolError(f"illegal request target {target!r}")
        length: int | None = None
        chunked = close = host = False
        lines = []
        for name, value in headers:
            lines.append(b"%b: %b\r\n" % (name, value))
            lower = name.lower()
            if lower == b"content-length":
                declared = value.strip()
                if _DIGITS.fullmatch(declared) is None:
                    raise LocalProtocolError(f"illegal Content-Length {value!r}")
                if length is not None and int(declared) != length:
                    raise LocalProtocolError("conflicting Content-Length headers")
                length = int(declared)
            elif lower == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    raise LocalProtocolError(f"unsupported Transfer-Encoding {value!r}")
                chunked = True
            elif lower == b"connection":
                close = close or b"close" in _tokens(value)
            elif lower == b"host":
                host = True
        fields = b"".join(lines)
        if _REQUEST_FIELDS.fullmatch(fields) is None or fields.count(b"\n") != len(lines):
            bad = next(
                line
                for line in lines
                if line.count(b"\n") != 1 or _REQUEST_FIELDS.fullmatch(line) is None
            )
            name = bad.partition(b":")[0]
            raise LocalProtocolError(f"illegal header {name!r}: a bad name or a bad value")
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


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip().lower() for token in value.split(b",")]


class ResponseHead:
    __slots__ = ("headers", "reason", "status", "version")

    def __init__(
        self, version: bytes, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.version = version  # b"1.1" or b"1.0"
        self.status = status
        self.reason = reason
        self.headers = headers  # as received: names in their case, values without OWS


# ResponseReader states
_HEAD, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class ResponseReader:
    """Reads the response to one request: `receive` what the socket gave (b"" when it
    closed), then `read_head()` until it returns the head (None: more bytes needed), then
    `read_body()` until it returns b"" (the end; None: more bytes needed). Either raises
    `RemoteProtocolError`. `reusable` says whether the connection may carry another request
    once the body has ended."""

    __slots__ = ("_buf", "_eof", "_keep_alive", "_pos", "_remaining", "_state", "no_body")

    def __init__(self, *, no_body: bool = False, keep_alive: bool = True) -> None:
        self.no_body = no_body  # the request was a HEAD: no response has a body
        self._keep_alive = keep_alive  # the request did not ask to close
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._state = _HEAD
        self._remaining = 0  # bytes left of the body (`_LENGTH`) or of the chunk (`_CHUNK_DATA`)

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def reusable(self) -> bool:
        """The response ended, allows keep-alive, and nothing came after it."""
        return self._state == _DONE and self._keep_alive and self._pos == len(self._buf)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read."""
        return len(self._buf) - self._pos

    def receive(self, data: bytes) -> None:
        if not data:
            self._eof = True
        elif self._pos == len(self._buf):
            self._buf = data
            self._pos = 0
        else:
            self._buf = self._buf[self._pos :] + data
            self._pos = 0

    # -- the head --------------------------------------------------------------------------

    def read_head(self) -> ResponseHead | None:
        if self._state != _HEAD:
            raise RuntimeError("the response head was read already")
        while True:
            buf, pos = self._buf, self._pos
            found = _HEAD_END.search(buf, pos)
            if found is None:
                if len(buf) - pos > MAX_HEAD_BYTES:
                    raise RemoteProtocolError("the response head is too large")
                if self._eof:
                    raise RemoteProtocolError("the server closed the connection in the head")
                return None
            end = found.end()
            if end - pos > MAX_HEAD_BYTES:
                raise RemoteProtocolError("the response head is too large")
            self._pos = end
            head = self._parse_head(buf, pos, end)
            if head.status >= 200:
                self._frame(head)
                return head
            if head.status == 101:
                raise RemoteProtocolError("101 Switching Protocols, and no upgrade was asked")
            # 1xx: informational, another head follows

    def _parse_head(self, buf: bytes, start: int, end: int) -> ResponseHead:
        line = _STATUS_LINE.match(buf, start, end)
        if line is None:
            first = buf[start : buf.find(b"\n", start, end)]
            raise RemoteProtocolError(f"not an HTTP/1.x status line: {first[:80]!r}")
        fields_at = line.end()
        if _FIELDS.fullmatch(buf, fields_at, end) is not None:
            headers = _FIELD.findall(buf, fields_at, end)
        else:
            block = buf[fields_at:end]
            if block[:1] in (b" ", b"\t"):
                raise RemoteProtocolError("a continuation line before any header")
            block = _OBS_FOLD.sub(b" ", block)  # RFC 9112 5.2: each fold becomes a space
            if _FIELDS.fullmatch(block) is None:
                raise RemoteProtocolError("malformed response header")
            headers = _FIELD.findall(block)
        version = b"1.1" if line.group(1) == b"1" else b"1.0"
        return ResponseHead(version, int(line.group(2)), line.group(3) or b"", headers)

    def _frame(self, head: ResponseHead) -> None:
        """How the body ends (RFC 9112 6.3), and whether the connection outlives it."""
        length: bytes | None = None
        chunked = False
        for name, value in head.headers:
            lower = name.lower()
            if lower == b"content-length":
                for declared in value.split(b","):
                    declared = declared.strip()
                    if _DIGITS.fullmatch(declared) is None:
                        raise RemoteProtocolError(f"bad Content-Length {value!r}")
                    if length is not None and int(declared) != int(length):
                        raise RemoteProtocolError("conflicting Content-Length headers")
                    length = declared
            elif lower == b"transfer-encoding":
                if chunked or _tokens(value) != [b"chunked"]:
                    raise RemoteProtocolError(f"unsupported Transfer-Encoding {value!r}")
                chunked = True
            elif lower == b"connection" and b"close" in _tokens(value):
                self._keep_alive = False
        if head.version != b"1.1":
            self._keep_alive = False
        status = head.status
        if self.no_body or status == 204 or status == 304:
            self._state = _DONE
        elif chunked:
            if length is not None:  # a smuggling shape: read by chunks, then close
                self._keep_alive = False
            self._state = _CHUNK_SIZE_LINE
        elif length is not None:
            self._remaining = int(length)
            self._state = _LENGTH if self._remaining else _DONE
        else:
            self._keep_alive = False
            self._state = _UNTIL_CLOSE

    # -- the body --------------------------------------------------------------------------

    def read_body(self) -> bytes | None:
        """The next bytes of the body (all that is here), b"" at its end, None when more
        must be received first."""
        state = self._state
        buf, pos = self._buf, self._pos
        if state == _LENGTH:
            size = len(buf) - pos
            if size == 0:
                if self._eof:
                    raise RemoteProtocolError(
                        f"the server closed the connection {self._remaining} bytes before "
                        "the end of the response body"
                    )
                return None
            if size <= self._remaining:
                data = buf if pos == 0 else buf[pos:]
            else:
                data = buf[pos : pos + self._remaining]
            self._pos = pos + len(data)
            self._remaining -= len(data)
            if not self._remaining:
                self._state = _DONE
            return data
        if state == _DONE:
            return b""
        if state == _UNTIL_CLOSE:
            if pos < len(buf):
                self._pos = len(buf)
                return buf if pos == 0 else buf[pos:]
            if self._eof:
                self._state = _DONE
                return b""
            return None
        if state == _HEAD:
            raise RuntimeError("the response head was not read yet")
        return self._read_chunks()

    def _read_chunks(self) -> bytes | None:
        """Every chunk's data already here, as one piece."""
        pieces = []
        buf, pos, state = self._buf, self._pos, self._state
        end = len(buf)
        while True:
            if state == _CHUNK_DATA:
                if pos == end:
                    break
                take = min(self._remaining, end - pos)
                pieces.append(buf[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining:
                    break
                state = _CHUNK_END
            elif state == _CHUNK_SIZE_LINE:
                line_end = buf.find(b"\n", pos)
                if line_end < 0:
                    if end - pos > _MAX_CHUNK_LINE:
                        raise RemoteProtocolError("a chunk size line is too long")
                    break
                size = _CHUNK_SIZE.fullmatch(buf, pos, line_end)
                if size is None or line_end - pos > _MAX_CHUNK_LINE:
                    bad = buf[pos:line_end][:40]
                    raise RemoteProtocolError(f"bad chunk size line {bad!r}")
                pos = line_end + 1
                self._remaining = int(size.group(1), 16)
                state = _CHUNK_DATA if self._remaining else _TRAILERS
            elif state == _CHUNK_END:
                if end - pos < 2:
                    if buf[pos:end] not in (b"", b"\r"):
                        raise RemoteProtocolError("a chunk longer than its size")
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise RemoteProtocolError("a chunk longer than its size")
                pos += 2
                state = _CHUNK_SIZE_LINE
            else:  # _TRAILERS: none, or header lines up to a blank line; they are dropped
                if buf.startswith(b"\r\n", pos) or buf.startswith(b"\n", pos):
                    pos += 2 if buf[pos] == 13 else 1
                else:
                    found = _HEAD_END.search(buf, pos)
                    if found is None:
                        if end - pos > MAX_HEAD_BYTES:
                            raise RemoteProtocolError("the response trailers are too large")
                        break
                    if _FIELDS.fullmatch(buf, pos, found.end()) is None:
                        raise RemoteProtocolError("malformed response trailer")
                    pos = found.end()
                state = _DONE
                break
        self._pos = pos
        self._state = state
        if pieces:
            return pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if state == _DONE:
            return b""
        if self._eof:
            raise RemoteProtocolError(
                "the server closed the connection before the end of the chunked response body"
            )
        return None
