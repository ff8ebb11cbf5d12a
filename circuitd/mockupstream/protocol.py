"""A minimal HTTP/1.1 server connection on `asyncio.Protocol` (no streams, no framework).

Enough HTTP for a fake upstream and fast enough never to be a benchmark's bottleneck:
keep-alive and pipelining (one request at a time: parsing pauses while a response is
pending), `Content-Length` bodies (`Transfer-Encoding` on a request is refused with 411),
`Expect: 100-continue`, chunked responses for streams (or close-delimited for HTTP/1.0).

The seam to the application is one callable, `handler(request, connection)`, that answers
either synchronously (`respond`) or from a task it starts with `spawn` (`respond`, or
`start_stream` / `send` / `end_stream`, or `cut`). When the peer goes away the spawned task is
cancelled: that is how the application learns of a client disconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import cast

__all__ = ["Connection", "Handler", "Headers", "Request"]

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
JSON = b"application/json"
Headers = Iterable[tuple[bytes, bytes]]


class Request:
    __slots__ = ("body", "head", "headers", "http11", "keep_alive", "method", "path", "query")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[bytes, bytes],
        head: bytes,
        http11: bool,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers  # lower-cased names; a repeated header keeps its last value
        self.head = head  # the raw request line and headers, for the request log
        self.http11 = http11
        connection = headers.get(b"connection", b"").lower()
        self.keep_alive = b"close" not in connection if http11 else b"keep-alive" in connection
        self.body = b""

    def header_pairs(self) -> list[tuple[str, str]]:
        """All headers in order, as received (names keep their case)."""
        pairs = []
        for line in self.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            pairs.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        return pairs


Handler = Callable[[Request, "Connection"], None]


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    return line


class Connection(asyncio.Protocol):
    def __init__(
        self, handler: Handler, registry: set[Connection], reject: Callable[[int, str], bytes]
    ) -> None:
        self._handler = handler
        self._registry = registry
        self._reject_body = reject  # renders the body of a protocol-level error
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._pending: tuple[Request, int, int] | None = None  # parsed head, body offset, length
        self._request: Request | None = None  # the one being answered
        self._processing = False
        self._chunked = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._on_end: Callable[[bool], None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused = False
        self.lost = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods but not its class.
        self._transport = cast(asyncio.Transport, transport)
        self._registry.add(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._request is None:
            self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._registry.discard(self)
        for future in (self._closed, self._drain):
            if future is not None and not future.done():
                future.set_result(None)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            self._ended(False)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- parsing -------------------------------------------------------------------------------

    def _process(self) -> None:
        """Answer the buffered requests one by one until one is left pending."""
        if self._processing:
            return
        self._processing = True
        try:
            while self._request is None and not self._closing:
                try:
                    request = self._parse()
                except _Reject as exc:
                    self._request = Request("GET", "", "", {}, b"", True)
                    self._request.keep_alive = False
                    self.respond(exc.status, self._reject_body(exc.status, str(exc)))
                    return
                if request is None:
                    return
                self._request = request
                self._handler(request, self)
        finally:
            self._processing = False

    def _parse(self) -> Request | None:
        buffer = self._buffer
        if self._pending is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise _Reject(431, "Request header fields too large.")
                return None
            request, length = self._parse_head(bytes(buffer[:end]).lstrip(b"\r\n"))
            self._pending = (request, end + 4, length)
            if len(buffer) < end + 4 + length and b"100-continue" in request.headers.get(
                b"expect", b""
            ):
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request, start, length = self._pending
        if len(buffer) < start + length:
            return None
        request.body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        self._pending = None
        return request

    @staticmethod
    def _parse_head(head: bytes) -> tuple[Request, int]:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise _Reject(400, "Malformed request line.")
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1:] in (b" ", b"\t"):
                raise _Reject(400, "Malformed header line.")
            headers[name.lower()] = value.strip()
        if b"transfer-encoding" in headers:
            raise _Reject(411, "Chunked request bodies are not supported; send Content-Length.")
        raw_length = headers.get(b"content-length", b"0")
        if not raw_length.isdigit():
            raise _Reject(400, "Invalid Content-Length.")
        length = int(raw_length)
        if length > MAX_BODY:
            raise _Reject(413, "Request body too large.")
        target = parts[1].decode("latin-1")
        path, _, query = target.partition("?")
        method = parts[0].decode("latin-1")
        return Request(method, path, query, headers, head, parts[2] == b"HTTP/1.1"), length

    # -- answering -----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self.lost:
            self._transport.write(data)

    def _head(self, status: int, content_type: bytes, headers: Headers) -> list[bytes]:
        parts = [_status_line(status), b"content-type: ", content_type, b"\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        assert self._request is not None
        if not self._request.keep_alive:
            parts.append(b"connection: close\r\n")
        return parts

    def respond(
        self, status: int, body: bytes, content_type: bytes = JSON, headers: Headers = ()
    ) -> None:
        """A whole response; then the next request (or close, without keep-alive)."""
        parts = self._head(status, content_type, headers)
        parts += (b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body)
        self._write(b"".join(parts))
        self._finish()

    def start_stream(self, status: int, content_type: bytes, headers: Headers = ()) -> None:
        assert self._request is not None
        self._chunked = self._request.http11
        if not self._chunked:  # HTTP/1.0: the end of the body is the end of the connection
            self._request.keep_alive = False
        parts = self._head(status, content_type, headers)
        parts.append(b"transfer-encoding: chunked\r\n\r\n" if self._chunked else b"\r\n")
        self._write(b"".join(parts))

    def send(self, data: bytes) -> None:
        if self._chunked:
            self._write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self._write(data)

    def end_stream(self) -> None:
        if self._chunked:
            self._write(b"0\r\n\r\n")
        self._finish()

    def cut(self) -> None:
        """Close mid-response: buffered bytes are flushed, the end of the body never comes."""
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def _finish(self) -> None:
        request, self._request = self._request, None
        if request is None or not request.keep_alive:
            self.cut()
        elif self._buffer:
            self._process()

    async def drain(self) -> None:
        """Wait while the peer is not reading (the transport's buffer is over its mark)."""
        if self._paused and not self.lost:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    async def wait_closed(self) -> None:
        """Wait until the peer goes away."""
        if not self.lost:
            if self._closed is None:
                self._closed = asyncio.get_running_loop().create_future()
            await self._closed

    def spawn(
        self,
        answer: Callable[[], Awaitable[None]],
        on_end: Callable[[bool], None] | None = None,
    ) -> None:
        """Answer the current request from a task, cancelled if the peer goes away.

        `on_end(completed)` is called exactly once: True when `answer` returned (or failed),
        False when the peer went away first, even before the task started. `answer` is a
        factory so that a task cancelled before it starts leaves no unawaited coroutine."""
        self._on_end = on_end
        self._task = asyncio.get_running_loop().create_task(self._guard(answer))

    async def _guard(self, answer: Callable[[], Awaitable[None]]) -> None:
        try:
            await answer()
        except Exception:
            log.exception("mock upstream: handler failed")
            self.cut()
        self._ended(True)

    def _ended(self, completed: bool) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end(completed)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
