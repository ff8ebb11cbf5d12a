"""`Http1Transport`: the pool (O(1) per request) and the response body stream."""

from __future__ import annotations

import math
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
import trio

from circuitd import http1
from circuitd.upstream.connection import (
    BROKEN,
    Connection,
    Origin,
    Stale,
    connect,
    describe,
    tls_context,
)

__all__ = ["DEFAULT_LIMITS", "Http1Transport", "PoolStatistics"]

DEFAULT_LIMITS: Final = httpx.Limits(
    max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0
)
# How long closing a response may wait for the rest of a TLS record already arriving
# (only when the socket is readable; a plain socket's receive then never waits).
CLOSE_GRACE_S: Final = 0.01
_NO_TIMEOUTS: Final[Mapping[str, float | None]] = {}


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    idle: int  # open connections waiting in the pool
    active: int  # requests holding a connection (or opening one)
    waiting: int  # requests queued for a slot (`max_connections` reached)
    opened_total: int  # connections opened
    reused_total: int  # requests sent on a pooled connection
    retried_total: int  # requests sent again on a fresh connection after a stale pooled one


class ResponseBody(httpx.AsyncByteStream):
    """The response body as it comes: all the bytes already received, at each step. The
    connection goes back to the pool at the end of the body; an error, a cancellation or an
    early `aclose` close it."""

    __slots__ = ("_conn", "_read", "_request", "_transport")

    def __init__(
        self,
        transport: Http1Transport,
        conn: Connection,
        request: httpx.Request,
        read: float | None,
    ) -> None:
        self._transport = transport
        self._conn: Connection | None = conn
        self._request = request
        self._read = read

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        reader = conn.reader
        try:
            while (data := reader.read_body()) is None:
                reader.receive(await conn.receive(self._read, self._request))
        except BaseException as exc:
            self._conn = None
            self._transport._discard(conn)
            if isinstance(exc, http1.RemoteProtocolError):  # e.g. the body cut short
                raise httpx.RemoteProtocolError(str(exc), request=self._request) from exc
            if isinstance(exc, BROKEN):
                raise httpx.ReadError(describe(exc), request=self._request) from exc
            raise
        if data:
            return data
        self._conn = None
        self._transport._recycle(conn)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Before the end of the body: keep the connection if the rest of the body is
        already here or can be read without waiting, else close it at once."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        reader = conn.reader
        received = False
        try:
            while True:
                while data := reader.read_body():
                    pass
                if data is not None:  # the end
                    self._transport._recycle(conn)
                    return
                if received or not conn.socket.is_readable():
                    break
                received = True  # one receive at most, and only of bytes already here
                with trio.CancelScope(shield=True, relative_deadline=CLOSE_GRACE_S):
                    reader.receive(await conn.receive(None, self._request))
        except (http1.RemoteProtocolError, *BROKEN):
            pass
        self._transport._discard(conn)


class Http1Transport(httpx.AsyncBaseTransport):
    """`httpx.AsyncClient(transport=Http1Transport(limits=httpx.Limits(...)))`."""

    def __init__(
        self, *, limits: httpx.Limits = DEFAULT_LIMITS, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._max_connections = limits.max_connections
        keepalive = limits.max_keepalive_connections
        self._max_keepalive = math.inf if keepalive is None else keepalive
        expiry = limits.keepalive_expiry
        self._expiry = math.inf if expiry is None else expiry
        self._slots = (
            None if self._max_connections is None else trio.Semaphore(self._max_connections)
        )
        self._ssl_context = ssl_context
        self._idle: dict[Origin, deque[Connection]] = {}  # per origin, most recent last
        self._n_idle = 0
        self._n_active = 0
        self._opened = 0
        self._reused = 0
        self._retried = 0
        self._closed = False

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            idle=self._n_idle,
            active=self._n_active,
            waiting=0 if self._slots is None else self._slots.statistics().tasks_waiting,
            opened_total=self._opened,
            reused_total=self._reused,
            retried_total=self._retried,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        scheme = url.raw_scheme
        if scheme == b"http":
            origin = (scheme, url.raw_host, url.port or 80)
        elif scheme == b"https":
            origin = (scheme, url.raw_host, url.port or 443)
        else:
            raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}", request=request)
        extensions: dict[str, Any] = request.extensions
        timeouts: Mapping[str, float | None] = extensions.get("timeout", _NO_TIMEOUTS)
        await self._acquire(timeouts.get("pool"), request)
        conn = None
        try:
            conn = self._checkout(origin)
            if conn is None:
                conn = await self._connect(origin, timeouts.get("connect"), request)
            try:
                head = await conn.exchange(request, timeouts)
            except Stale:
                conn.close()
                conn = None
                self._retried += 1
                conn = await self._connect(origin, timeouts.get("connect"), request)
                head = await conn.exchange(request, timeouts)  # a fresh one: never Stale
        except BaseException:
            if conn is not None:
                conn.close()
            self._release()
            raise
        version = head.version
        return httpx.Response(
            head.status,
            headers=head.headers,
            stream=ResponseBody(self, conn, request, timeouts.get("read")),
            extensions={
                "http_version": b"HTTP/1.1" if version == b"1.1" else b"HTTP/" + version,
                "reason_phrase": head.reason,
            },
        )

    async def aclose(self) -> None:
        """Closes the idle connections; those lent out close when their response ends."""
        self._closed = True
        for stack in self._idle.values():
            for conn in stack:
                conn.close()
        self._idle.clear()
        self._n_idle = 0
        await trio.lowlevel.checkpoint()

    # -- the pool ------------------------------------------------------------------------------

    async def _acquire(self, limit_s: float | None, request: httpx.Request) -> None:
        slots = self._slots
        if slots is not None:
            try:
                slots.acquire_nowait()
            except trio.WouldBlock:
                with trio.move_on_after(math.inf if limit_s is None else limit_s) as scope:
                    await slots.acquire()
                if scope.cancelled_caught:
                    message = "timed out waiting for a free connection"
                    raise httpx.PoolTimeout(message, request=request) from None
        self._n_active += 1

    def _release(self) -> None:
        self._n_active -= 1
        if self._slots is not None:
            self._slots.release()

    def _checkout(self, origin: Origin) -> Connection | None:
        """The most recently used idle connection to `origin` that is still good."""
        stack = self._idle.get(origin)
        if not stack:
            return None
        now = trio.current_time()
        while stack:
            conn = stack.pop()
            self._n_idle -= 1
            if now - conn.idle_since >= self._expiry:  # and all under it, older still
                conn.close()
                for older in stack:
                    older.close()
                self._n_idle -= len(stack)
                stack.clear()
                return None
            if conn.socket.is_readable():  # closed by the server, or bytes nobody asked for
                conn.close()
                continue
            conn.reused = True
            self._reused += 1
            return conn
        return None

    async def _connect(
        self, origin: Origin, limit_s: float | None, request: httpx.Request
    ) -> Connection:
        self._make_room()
        context = None
        if origin[0] == b"https":
            if self._ssl_context is None:
                self._ssl_context = tls_context()
            context = self._ssl_context
        conn = await connect(origin, limit_s, context, request)
        self._opened += 1
        return conn

    def _make_room(self) -> None:
        """A socket beyond `max_connections` in all closes the oldest idle one elsewhere."""
        if self._max_connections is None:
            return
        excess = self._n_active + self._n_idle - self._max_connections
        if excess > 0:
            for stack in self._idle.values():
                while stack and excess > 0:
                    stack.popleft().close()
                    self._n_idle -= 1
                    excess -= 1

    def _recycle(self, conn: Connection) -> None:
        """A response ended: pool its connection if keep-alive allows it and there is room."""
        if self._closed or not conn.reader.reusable or self._n_idle >= self._max_keepalive:
            conn.close()  # (not reusable: keep-alive refused, or bytes past the response)
        else:
            stack = self._idle.get(conn.origin)
            if stack is None:
                stack = self._idle[conn.origin] = deque()
            now = trio.current_time()
            while stack and now - stack[0].idle_since >= self._expiry:
                stack.popleft().close()
                self._n_idle -= 1
            conn.idle_since = now
            stack.append(conn)
            self._n_idle += 1
        self._release()

    def _discard(self, conn: Connection) -> None:
        conn.close()
        self._release()
