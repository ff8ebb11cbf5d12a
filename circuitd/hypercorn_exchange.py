"""One HTTP/1.1 request's ASGI side, in place of hypercorn's `HTTPStream` (hypercorn 0.17 to
0.18), for `hypercorn_http1.HTTP1Protocol`.

`Exchange` builds the request's scope, runs the app in a task of the connection's task
group, queues what the app receives (`Inbox`) and turns what it sends into calls on the
protocol. It does what `HTTPStream` and hypercorn's trio `TaskGroup.spawn_app` did for an
HTTP/1.1 request, in the same order: the scope's keys, a 404 for a Host outside
`server_names`, the app's messages checked against where the response is (`start`, then
`body` until `more_body` is false; anything else raises `UnexpectedMessageError` in the
app), the access log, a 500 for an app that ends before it answered, an app error logged as
"Error in ASGI Framework", `http.disconnect` once the request is over, and back-pressure on
a body the app does not read (`max_app_queue_size`). Without the per-message event objects,
the state enum and a trio memory channel per request: 6-8% less CPU per request.
(Trailers, server push and early hints are HTTP/2-only in hypercorn too.) Where it differs on
purpose: a 404 for another Host closes the connection (hypercorn left it open); what an app
sends once its response has ended is dropped (it could reach the connection's next one); a
1xx `http.response.start` is informational, the answer still to come; and the end of an
exchange releases a reader waiting for room in the app's queue (an app that answered without
reading its body held the connection's tasks until shutdown).

Its scope also carries a `trio.CancelScope` under `extensions[CANCEL_ON_DISCONNECT]`,
cancelled when the client goes away before the response has ended: circuitd's app runs a
call inside it instead of a task per request waiting for `http.disconnect`.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

import trio
from hypercorn.protocol.http_stream import ASGIHTTPState
from hypercorn.utils import UnexpectedMessageError, build_and_validate_headers, suppress_body

from circuitd.gateway.asgi import CANCEL_ON_DISCONNECT, Message

if TYPE_CHECKING:
    from circuitd import http1

__all__ = ["Exchange", "Inbox", "Responder"]

# Where the response is (trailers are HTTP/2 only)
_REQUEST, _RESPONSE, _CLOSED = ASGIHTTPState.REQUEST, ASGIHTTPState.RESPONSE, ASGIHTTPState.CLOSED


class Responder(Protocol):
    """What an exchange calls on its connection's protocol."""

    async def respond(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...
    async def write_body(self, data: bytes) -> None: ...
    async def end_body(self, last: bytes = b"") -> None: ...
    async def exchange_closed(self) -> None: ...


class Inbox:
    """The app's `receive`: the messages in order, a wait while there are none, and a wait
    for the protocol while `limit` are queued (its reads stop: TCP back-pressure). A trio
    memory channel without the objects one costs to make. `http.disconnect` is never held up,
    and once the exchange is over (`close`) nothing more is queued nor waits for room: an app
    that answered without reading its body must not hold the connection's reader forever."""

    __slots__ = ("_closed", "_getters", "_limit", "_messages", "_putters")

    def __init__(self, limit: int) -> None:
        self._messages: deque[Message] = deque()
        self._limit = max(1, limit)
        self._closed = False
        self._getters: trio.lowlevel.ParkingLot | None = None  # made when first needed
        self._putters: trio.lowlevel.ParkingLot | None = None

    async def put(self, message: Message) -> None:
        while len(self._messages) >= self._limit and not self._closed:
            if self._putters is None:
                self._putters = trio.lowlevel.ParkingLot()
            await self._putters.park()
        if not self._closed:
            self.put_nowait(message)

    def close(self) -> None:
        """No more `put`s: a waiting one returns (its message dropped)."""
        self._closed = True
        if self._putters:
            self._putters.unpark_all()

    def put_nowait(self, message: Message) -> None:
        self._messages.append(message)
        if self._getters:
            self._getters.unpark()

    def receive_nowait(self) -> Message:
        if not self._messages:
            raise trio.WouldBlock
        message = self._messages.popleft()
        if self._putters:
            self._putters.unpark()
        return message

    async def receive(self) -> Message:
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._messages:
            if self._getters is None:
                self._getters = trio.lowlevel.ParkingLot()
            await self._getters.park()
            if self._messages:
                return self.receive_nowait()  # parking was the schedule point
        message = self.receive_nowait()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return message


class Exchange:
    """One request: `start` spawns the app; the protocol then `put`s the body and `close`s
    the exchange when the response has ended or the connection has."""

    __slots__ = (
        "_app",
        "_config",
        "_method",
        "_protocol",
        "_response",
        "_started",
        "_state",
        "closed",
        "inbox",
        "on_disconnect",
        "scope",
    )

    def __init__(
        self,
        protocol: Responder,
        app: Any,
        config: Any,
        head: http1.RequestHead,
        *,
        scheme: str,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        state: Any,
    ) -> None:
        self._protocol = protocol
        self._app = app
        self._config = config
        self._method = head.method.decode("ascii").upper()
        self._state = _REQUEST
        self._response: Message | None = None  # what the access log reads
        self._started = time.time()
        self.closed = False
        self.inbox = Inbox(config.max_app_queue_size)
        self.on_disconnect = trio.CancelScope()
        path, _, query_string = head.target.partition(b"?")
        self.scope: dict[str, Any] = {
            "type": "http",
            "http_version": head.version.decode(),
            "asgi": {"spec_version": "2.1", "version": "3.0"},
            "method": self._method,
            "scheme": scheme,
            "path": unquote(path.decode("ascii")),
            "raw_path": path,
            "query_string": query_string,
            "root_path": config.root_path,
            "headers": head.headers,
            "client": client,
            "server": server,
            "state": state.copy(),
            "extensions": {CANCEL_ON_DISCONNECT: self.on_disconnect},
        }

    async def start(self, task_group: Any) -> None:
        """The app's task, or a 404 for a Host this server does not serve."""
        names = self._config.server_names
        if names and self._host() not in names:
            await self._refuse(404)
            await self._protocol.exchange_closed()  # (hypercorn left the connection open)
        else:
            task_group.spawn(self._run_app)

    def _host(self) -> str:
        for name, value in self.scope["headers"]:
            if name == b"host":
                return value.decode()  # type: ignore[no-any-return]
        return ""

    async def close(self) -> None:
        """The response ended, or the connection did: the app is told (`http.disconnect`)."""
        if self.closed:
            return
        self.closed = True
        if self._state != _CLOSED:
            await self._access_log(None)
        self.inbox.put_nowait({"type": "http.disconnect"})
        self.inbox.close()

    async def _run_app(self) -> None:
        # hypercorn's `_handle`: an error is logged, and the end is always told to `send`.
        try:
            await self._app(
                self.scope,
                self.inbox.receive,
                self.send,
                trio.to_thread.run_sync,
                trio.from_thread.run,
            )
        except trio.Cancelled:
            raise
        except BaseExceptionGroup as error:
            _, other_errors = error.split(trio.Cancelled)
            if other_errors is None:
                raise
            await self._config.log.exception("Error in ASGI Framework")
        except Exception:
            await self._config.log.exception("Error in ASGI Framework")
        finally:
            await self.send(None)

    async def send(self, message: Message | None) -> None:
        """The app's `send` (None: the app has returned)."""
        if message is None:
            if not self.closed:
                if self._state == _REQUEST:
                    await self._refuse(500)
                await self._protocol.exchange_closed()
            return
        if self.closed and self._state == _CLOSED:
            # Its response is over: what the app sends now must not reach the connection's
            # next one. (Closed mid-response, as by a client's half-close, it still goes out:
            # the socket may be writable, and a gone one drops the bytes quietly.)
            await trio.lowlevel.checkpoint()
            return
        kind = message["type"]
        if kind == "http.response.start" and self._state == _REQUEST:
            status = int(message["status"])
            headers = build_and_validate_headers(message.get("headers", []))
            await self._protocol.respond(status, headers)
            if status >= 200:  # (a 1xx is informational: the final answer is still to come)
                self._response = message
                self._state = _RESPONSE
        elif kind == "http.response.body" and self._state == _RESPONSE:
            assert self._response is not None
            body = message.get("body", b"")
            if body and suppress_body(self._method, int(self._response["status"])):
                body = b""
            if message.get("more_body", False):
                if body:
                    await self._protocol.write_body(bytes(body))
            else:
                await self._protocol.end_body(bytes(body))  # the last bytes and the end: one write
                self._state = _CLOSED
                await self._access_log(self._response)
                await self._protocol.exchange_closed()
        else:
            raise UnexpectedMessageError(self._state, kind)

    async def _refuse(self, status: int) -> None:
        headers = [(b"content-length", b"0"), (b"connection", b"close")]
        await self._protocol.respond(status, headers)
        await self._protocol.end_body()
        self._state = _CLOSED
        await self._access_log({"status": status, "headers": []})

    async def _access_log(self, response: Message | None) -> None:
        await self._config.log.access(self.scope, response, time.time() - self._started)
