"""hypercorn's HTTP/1.1 protocol on `circuitd.http1` instead of h11 (hypercorn 0.17 to 0.18).

`install()` makes hypercorn's `ProtocolWrapper` build `HTTP1Protocol` for HTTP/1.1
connections in place of `hypercorn.protocol.h11.H11Protocol`. h11 re-validates every header
of every response at least twice (hypercorn builds an `h11.Response`, h11 rebuilds it to add
its framing), and drives a state machine per event: ~15% of a worker's time per request,
JSON or stream. Each request's ASGI side is `hypercorn_exchange.Exchange`, in place of
hypercorn's `HTTPStream`. Everything else stays hypercorn's: the TCP server, TLS, HTTP/2 (by
ALPN, prior knowledge or an `Upgrade: h2c`), keep-alive and its limits, graceful shutdown.

What this protocol does as `H11Protocol` did: one request at a time per connection (bytes of
the next one wait, unread, until the response ends: pipelining with back-pressure),
`100 Continue` when a client waits for it, a 400 (431 for a head too large, 501 for an
unknown transfer coding, 505 for another HTTP version) and a close for a request that cannot
be read, keep-alive unless either side said close, an HTTP/1.0 client, or
`keep_alive_max_requests` reached. Where it differs: such a refusal has an OpenAI-shaped
error body that says what was wrong (h11's had none); an empty line before a request line is
skipped (RFC 9112 2.2; h11 refused it); the head limit (`h11_max_incomplete_size`) holds for
a head that arrives whole too. What it does not: WebSocket upgrades (circuitd serves none;
such a request is answered as plain HTTP), and `h11_pass_raw_headers` (header names reach the
app lower-cased, as ASGI asks).

And one thing it adds: each request's ASGI scope carries a `trio.CancelScope` under
`extensions[CANCEL_ON_DISCONNECT]`, cancelled here when the client goes away before the
response has ended. circuitd's app runs a call inside it instead of starting a task per
request that waits for `http.disconnect` (a nursery, a task and its wake-ups: ~6% of a JSON
request).
"""

from __future__ import annotations

import logging
import time
from itertools import chain
from typing import Any, cast

import hypercorn.protocol as hypercorn_protocol
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.h11 import H2CProtocolRequiredError, H2ProtocolAssumedError, H11Protocol

from circuitd import http1
from circuitd.errors import MalformedHttpRequest
from circuitd.http1.server import BODY_CHUNKED, BODY_LENGTH, BODY_UNTIL_CLOSE
from circuitd.hypercorn_exchange import Exchange

log = logging.getLogger("circuitd")

_PREFACE = b"PRI * HTTP/2.0\r\n\r\n"

# Where the connection is in its current exchange (`HTTP1Protocol._reading`)
_HEAD, _BODY, _READ, _CLOSED = range(4)


class HTTP1Protocol:
    """The interface hypercorn's `ProtocolWrapper` uses (`initiate`, `handle`: bytes and the
    connection's close from the TCP server), and the `Responder` an `Exchange` answers
    through (`respond`, `write_body`, `end_body`, `exchange_closed`)."""

    def __init__(
        self,
        app: Any,
        config: Any,
        context: Any,
        task_group: Any,
        connection_state: Any,
        ssl: bool,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        send: Any,
    ) -> None:
        self.app = app
        self.config = config
        self.context = context
        self.task_group = task_group
        self.connection_state = connection_state
        self.ssl = ssl
        self.client = client
        self.server = server
        self.send = send
        self.can_read = context.event_class()
        self.reader = http1.RequestReader(config.h11_max_incomplete_size)
        self.stream: Exchange | None = None  # the current request's
        self.keep_alive_requests = 0
        self._reading = _HEAD
        self._head: http1.RequestHead | None = None
        self._waiting_continue = False  # the client waits for `100 Continue` before its body
        self._started = False  # the response's head is made (and sent, or `_held`)
        self._ended = False  # ... and its end
        self._held = b""  # the head, until the body's first bytes go with it
        self._framing = BODY_LENGTH
        self._remaining = 0  # bytes of a sized body still to send
        self._keep_alive = True
        self._server_headers: list[tuple[bytes, bytes]] = []  # hypercorn's (Date, Server)
        self._server_headers_at = -1  # ... made in this second

    async def initiate(self) -> None:
        pass

    async def handle(self, event: Event) -> None:
        if isinstance(event, RawData):
            # b"": the client closed its side (`Closed` follows). In the middle of a request
            # that is an answer-worthy fault (the reader raises); between requests, nothing.
            if event.data or self._reading != _HEAD or self.reader.buffered:
                self.reader.receive(event.data)
                await self._handle_events()
        elif isinstance(event, Closed):
            self._reading = _CLOSED
            await self.can_read.set()  # a next request waiting: there is none now
            if self.stream is not None:
                if not self._ended:
                    self.stream.on_disconnect.cancel()
                await self._close_stream()

    async def _handle_events(self) -> None:
        reader = self.reader
        while True:
            if self._reading == _HEAD:
                try:
                    head = reader.read_head()
                except http1.RemoteProtocolError as error:
                    await self._refuse(error)
                    return
                if head is None:
                    return
                await self.send(Updated(idle=False))
                await self._check_protocol(head)
                self._head = head
                self._reading = _BODY
                self._waiting_continue = head.expect_continue
                await self._create_stream(head)
            elif self._reading == _BODY:
                if self._waiting_continue and not self._started:
                    self._waiting_continue = False
                    await self._write(http1.informational_head(100, self._response_headers()))
                try:
                    data = reader.read_body()
                except http1.RemoteProtocolError as error:
                    await self._refuse(error)
                    return
                if data is None:
                    return
                self._waiting_continue = False
                # The end is often here with the last bytes (a body that came with its head):
                # then one message says both, and the app receives once, not twice. (b"" comes
                # only at the end.)
                end = reader.body_done
                if end:
                    self._reading = _READ
                stream = self.stream
                if stream is not None:
                    await stream.inbox.put(
                        {"type": "http.request", "body": data, "more_body": not end}
                    )
            elif self._reading == _READ and reader.buffered:
                # The next request came before this one's answer ended: it waits.
                await self.can_read.clear()
                await self.can_read.wait()
            else:
                return

    async def _check_protocol(self, head: http1.RequestHead) -> None:
        """HTTP/2 by prior knowledge, or asked for by `Upgrade: h2c` (without a body)."""
        if head.version == b"2.0":
            raise H2ProtocolAssumedError(_PREFACE + self.reader.rest())
        for name, value in head.headers:
            if name == b"upgrade" and value.lower() == b"h2c" and not head.has_body:
                upgrade = [(b"connection", b"upgrade"), (b"upgrade", b"h2c")]
                await self._write(http1.informational_head(101, self._response_headers(upgrade)))
                # duck-typed as the h11.Request it reads method, target and headers from
                raise H2CProtocolRequiredError(self.reader.rest(), cast(Any, head))

    async def _create_stream(self, head: http1.RequestHead) -> None:
        self._started = self._ended = False
        self._keep_alive = True
        self._framing, self._remaining = BODY_LENGTH, 0
        self.stream = Exchange(
            self,
            self.app,
            self.config,
            head,
            scheme="https" if self.ssl else "http",
            client=self.client,
            server=self.server,
            state=self.connection_state,
        )
        await self.stream.start(self.task_group)
        self.keep_alive_requests += 1
        await self.context.mark_request()

    # -- the Responder: the current exchange's answer ----------------------------------------

    async def respond(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if status < 200:
            await self._write(http1.informational_head(status, self._response_headers(headers)))
            return
        head = self._head
        assert head is not None
        keep_alive = (
            self.reader.keep_alive
            and self.keep_alive_requests < self.config.keep_alive_max_requests
        )
        data, self._framing, self._remaining, self._keep_alive = http1.response_head(
            status,
            self._response_headers(headers),
            head_request=head.method.upper() == b"HEAD",
            http10=head.version == b"1.0",
            keep_alive=keep_alive,
        )
        self._started = True
        self._held = data  # goes out with the body's first bytes, or its end

    async def end_body(self, last: bytes = b"") -> None:
        """The body's `last` bytes and its end, in one write."""
        data = self._framed(last)
        if self._framing == BODY_CHUNKED:
            data += http1.LAST_CHUNK
        await self._write_held(data)
        if self._framing == BODY_LENGTH and self._remaining:
            self._keep_alive = False
            message = f"{self._remaining} bytes short of the declared Content-Length"
            raise http1.LocalProtocolError(message)
        self._ended = True

    async def exchange_closed(self) -> None:
        await self._maybe_recycle()

    async def write_body(self, data: bytes) -> None:
        data = self._framed(data)
        if data:
            await self._write_held(data)

    def _framed(self, data: bytes) -> bytes:
        """Body bytes as they go on the wire (b"" where the response has no body)."""
        framing = self._framing
        if framing == BODY_LENGTH:
            if len(data) > self._remaining:
                self._keep_alive = False
                raise http1.LocalProtocolError("a body longer than its Content-Length")
            self._remaining -= len(data)
            return data
        if framing == BODY_CHUNKED:
            return http1.chunk(data) if data else b""
        return data if framing == BODY_UNTIL_CLOSE else b""  # else no body (HEAD, 204, 304)

    async def _write_held(self, data: bytes) -> None:
        """`data`, after the response head if it is still held. A head waits for its body's
        first bytes (or its end) so that a whole answer is one write: one system call and one
        TCP segment, not two. circuitd's app sends the body right after the head (a stream's
        head with its first events)."""
        if self._held:
            data = self._held + data
            self._held = b""
        if data:
            await self._write(data)

    def _response_headers(self, headers: Any = ()) -> list[tuple[bytes, bytes]]:
        now = int(time.time())  # the Date header's resolution: made once a second at most
        if now != self._server_headers_at:
            self._server_headers = self.config.response_headers("h11")
            self._server_headers_at = now
        return list(chain(headers, self._server_headers))

    async def _write(self, data: bytes) -> None:
        await self.send(RawData(data=data))

    async def _refuse(self, fault: http1.RemoteProtocolError) -> None:
        """A request that cannot be read: an answer (OpenAI's error shape) if none has started,
        then the close."""
        if not self._started and self._reading != _CLOSED:
            error = MalformedHttpRequest(str(fault))
            error.status = fault.status
            body = error.body()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
            data, _, _, _ = http1.response_head(
                fault.status,
                self._response_headers(headers),
                head_request=False,
                http10=False,
                keep_alive=False,
            )
            self._started = True
            await self._write(data + body)
        self._reading = _CLOSED
        await self.send(Closed())

    async def _maybe_recycle(self) -> None:
        await self._write_held(b"")  # an app that ended after its head alone (it failed)
        await self._close_stream()
        if (
            not self.context.terminated.is_set()
            and self._reading == _READ
            and self._ended
            and self._keep_alive
        ):
            self.reader.next_request()
            self._reading = _HEAD
            self._head = None
            self._started = self._ended = False
            await self.can_read.set()
            await self.send(Updated(idle=True))
        else:
            self._reading = _CLOSED
            await self.can_read.set()
            await self.send(Closed())

    async def _close_stream(self) -> None:
        if self.stream is not None:
            await self.stream.close()
            self.stream = None


def install() -> bool:
    """Points hypercorn's `ProtocolWrapper` at `HTTP1Protocol`; False (and hypercorn
    unchanged) when its internals are not the ones this was written against."""
    current = getattr(hypercorn_protocol, "H11Protocol", None)
    if current not in (H11Protocol, HTTP1Protocol):
        log.warning("hypercorn's HTTP/1.1 protocol is not the expected one: h11 is kept")
        return False
    setattr(hypercorn_protocol, "H11Protocol", HTTP1Protocol)  # noqa: B010 - not our module
    return True
