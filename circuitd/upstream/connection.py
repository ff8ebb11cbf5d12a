"""One HTTP/1.1 connection: a trio stream (TCP, or TLS over it) and the reader of the response
to its current request (`http1`)."""

from __future__ import annotations

import math
import ssl
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Final

import httpx
import trio

from circuitd import http1
from circuitd.sockio import read_when_ready, write_now

__all__ = [
    "BROKEN",
    "RECEIVE_SIZE",
    "Connection",
    "Origin",
    "Stale",
    "connect",
    "describe",
    "tls_context",
]

RECEIVE_SIZE: Final = 64 * 1024
Origin = tuple[bytes, bytes, int]  # scheme, host (IDNA-encoded), port
BROKEN: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class Stale(Exception):
    """A reused connection broke before any byte of the response: retry on a fresh one."""

    def __init__(self, error: httpx.TransportError) -> None:
        super().__init__(str(error))
        self.error = error


def describe(exc: BaseException) -> str:
    """The message of an I/O error (trio wraps socket and TLS errors; say what they were)."""
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else None
    shown = cause or exc
    return str(shown) or type(shown).__name__


class Connection:
    __slots__ = ("idle_since", "origin", "reader", "reused", "socket", "stream")

    def __init__(
        self, stream: trio.abc.Stream, socket: trio.socket.SocketType, origin: Origin
    ) -> None:
        self.stream = stream
        self.socket = socket  # the TCP socket under `stream`
        self.origin = origin
        self.reader = http1.ResponseReader()  # the current request's (a new one each)
        self.reused = False
        self.idle_since = 0.0

    def close(self) -> None:
        """Synchronous and final (no TLS close_notify), so it is safe when cancelled."""
        self.socket.close()

    async def send(self, data: bytes, limit_s: float | None, request: httpx.Request) -> None:
        if type(self.stream) is trio.SocketStream:
            # Plain TCP: what the socket takes at once needs no deadline's scope, nor trio's
            # send_all around it (a request fits a socket's buffer but for a large body).
            sent = write_now(self.socket, data)
            if sent == len(data):
                return
            data = data[sent:]
        if limit_s is None:
            await self.stream.send_all(data)
            return
        with trio.move_on_after(limit_s):
            await self.stream.send_all(data)
            return
        raise httpx.WriteTimeout("timed out sending the request", request=request)

    async def receive(
        self, limit_s: float | None, request: httpx.Request, *, answer: bool = False
    ) -> bytes:
        """The next bytes from the upstream. `answer`: the first read after a request was
        sent, which cannot be there yet; on plain TCP it waits before it reads."""
        read: Callable[[int], Awaitable[bytes | bytearray]] = self.stream.receive_some
        if answer and type(self.stream) is trio.SocketStream:
            read = partial(read_when_ready, self.socket)
        # trio's SocketStream and SSLStream return bytes (the ABC allows a bytearray).
        if limit_s is None:
            return await read(RECEIVE_SIZE)  # type: ignore[return-value]
        with trio.move_on_after(limit_s):
            return await read(RECEIVE_SIZE)  # type: ignore[return-value]
        raise httpx.ReadTimeout("timed out waiting for the upstream", request=request)

    async def exchange(
        self, request: httpx.Request, timeouts: Mapping[str, float | None]
    ) -> http1.ResponseHead:
        """Send `request` and read up to its response head. Raises httpx's errors, or `Stale`
        when sending it again on a fresh connection is safe."""
        method = request.method.encode("ascii")
        stream = request.stream
        replayable = isinstance(stream, httpx.ByteStream)  # in memory: one send, head and body
        try:
            outgoing = http1.Request(method, request.url.raw_path, request.headers.raw)
            data = outgoing.head + outgoing.body(request.content) if replayable else b""
        except http1.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        reader = self.reader = http1.ResponseReader(
            no_body=method == b"HEAD", keep_alive=not outgoing.close
        )
        write = timeouts.get("write")
        try:
            if replayable:
                await self.send(data, write, request)
            elif isinstance(stream, httpx.AsyncByteStream):
                await self._send_streamed(outgoing, stream, write, request)
            else:
                raise TypeError("a request body for an async transport must be async")
        except BROKEN as exc:
            failure = httpx.WriteError(describe(exc), request=request)
            raise self._failed(failure, replayable) from exc

        read = timeouts.get("read")
        received = False  # any byte of the response
        try:
            while (head := reader.read_head()) is None:
                data = await self.receive(read, request, answer=not received)
                if not data:
                    message = "server disconnected before the end of the response head"
                    eof = httpx.RemoteProtocolError(message, request=request)
                    raise self._failed(eof, replayable and not received)
                received = True
                reader.receive(data)
            return head
        except http1.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except BROKEN as exc:
            error = httpx.ReadError(describe(exc), request=request)
            raise self._failed(error, replayable and not received) from exc

    async def _send_streamed(
        self,
        outgoing: http1.Request,
        stream: httpx.AsyncByteStream,
        write: float | None,
        request: httpx.Request,
    ) -> None:
        """The head, then each chunk of the body as it comes, framed as the head says."""
        await self.send(outgoing.head, write, request)
        sent = 0
        async for data in stream:
            if not data:
                continue
            sent += len(data)
            if outgoing.chunked:
                data = http1.chunk(data)
            elif sent > (outgoing.length or 0):
                message = f"a body longer than its Content-Length of {outgoing.length or 0}"
                raise httpx.LocalProtocolError(message, request=request)
            await self.send(data, write, request)
        if outgoing.chunked:
            await self.send(http1.LAST_CHUNK, write, request)
        elif sent != (outgoing.length or 0):
            message = f"a body of {sent} bytes for a Content-Length of {outgoing.length or 0}"
            raise httpx.LocalProtocolError(message, request=request)

    def _failed(self, error: httpx.TransportError, retry: bool) -> Exception:
        return Stale(error) if retry and self.reused else error


async def connect(
    origin: Origin,
    limit_s: float | None,
    tls_context: ssl.SSLContext | None,
    request: httpx.Request,
) -> Connection:
    """A new connection to `origin` (TLS with `tls_context` for https) within `limit_s`."""
    scheme, raw_host, port = origin
    host = raw_host.decode("ascii")
    tcp: trio.SocketStream | None = None
    try:
        with trio.move_on_after(math.inf if limit_s is None else limit_s):
            tcp = await trio.open_tcp_stream(host, port)  # sets TCP_NODELAY
            stream: trio.abc.Stream = tcp
            if scheme == b"https":
                assert tls_context is not None
                tls = trio.SSLStream(tcp, tls_context, server_hostname=host, https_compatible=True)
                await tls.do_handshake()
                stream = tls
            return Connection(stream, tcp.socket, origin)
    except BaseException as exc:
        if tcp is not None:
            tcp.socket.close()
        if isinstance(exc, OSError | trio.BrokenResourceError):
            raise httpx.ConnectError(describe(exc), request=request) from exc
        raise
    if tcp is not None:
        tcp.socket.close()
    raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}", request=request)


def tls_context() -> ssl.SSLContext:
    """The system's CAs and defaults, offering only HTTP/1.1 by ALPN."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context
