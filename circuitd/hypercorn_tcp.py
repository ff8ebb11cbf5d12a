"""hypercorn's trio TCP server with its keep-alive idle timer fixed and its writes made direct
(hypercorn 0.17 to 0.18).

`install()` makes hypercorn's trio worker build `TCPServer` below instead of its own. Two
things change in the idle timer that closes a keep-alive connection after
`keep_alive_timeout` without a request:

- A connection the client closed while idle was kept, socket in CLOSE-WAIT, until that
  timeout ran out (circuitd sets 75 s): the connection's task group waited for the timer.
  Under connection churn (clients that do not pool) that is thousands of descriptors per
  worker, past a service's open-files limit. The asyncio worker stops its timer on close;
  here it is stopped once the client is gone.
- The timer was a new task per request (`TrioSingleTask`: `nursery.start` after every
  response, a cancel at the next request) — ~15% of hypercorn's own time per request on
  trio. `IdleTimer` keeps one task per connection, which wakes only when a deadline comes.

And a write to a plain TCP client goes straight to the socket when the socket takes it all
(`TCPServer.protocol_send`): +10% JSON requests/s through the gateway (bench/RESULTS.md).
A read has no cancel scope of its own unless `read_timeout` is set (circuitd sets none:
it would cut long streams); hypercorn gave each one an infinite deadline's scope. A plain TCP
read waits for the socket before it reads (`sockio.read_when_ready`).

The timer fixes belong in hypercorn; until then this subclass is the smallest change that
holds them, and `install` leaves hypercorn alone (with a warning) where its internals differ.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio import tcp_server as hypercorn_tcp
from hypercorn.trio.tcp_server import MAX_RECV

from circuitd.sockio import read_when_ready, write_now

log = logging.getLogger("circuitd")

Action = Callable[[], Awaitable[None]]


class IdleTimer:
    """hypercorn's `SingleTask` for the idle timeout: closes its connection once it has been
    idle (no request in flight) for `timeout_s`, or at once if idle when the server shuts
    down. One task per connection, and it wakes only when its deadline comes: a request
    starting (`busy`) or a response ending (`idle`) only notes it. The task then sleeps again,
    until the newer deadline or, the connection busy, until it is idle again. (A timer
    re-armed per request cost its task two wake-ups and three cancel scopes a request.)"""

    __slots__ = (
        "_busy",
        "_close_connection",
        "_closed",
        "_idle_since",
        "_scope",
        "_started",
        "_terminated",
        "_timeout_s",
        "_woken",
    )

    def __init__(self, timeout_s: float, terminated: Any, close_connection: Action) -> None:
        self._timeout_s = timeout_s
        self._terminated = terminated  # the worker's shutdown event (hypercorn's EventWrapper)
        self._close_connection = close_connection
        self._busy = False
        self._idle_since = 0.0
        self._closed = False
        self._started = False
        self._scope: trio.CancelScope | None = None  # the task's wait for its deadline
        self._woken: trio.Event | None = None  # the task's wait for the connection to be idle

    async def restart(self, task_group: Any, action: Action) -> None:
        """hypercorn's call when the connection starts (`action`, its own timeout, is what
        this timer does itself). Its other calls, `restart` and `stop` per request, are
        `TCPServer.protocol_send`'s `idle` and `busy` here."""
        self.idle()
        if not self._started and not self._closed:
            self._started = True
            task_group.spawn(self._run)

    def busy(self) -> None:
        self._busy = True

    def idle(self) -> None:
        self._busy = False
        self._idle_since = trio.current_time()
        if self._woken is not None:
            self._woken.set()

    def close(self) -> None:
        """The connection ended: the task returns."""
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
        if self._woken is not None:
            self._woken.set()

    async def _run(self) -> None:
        while not self._closed:
            if self._busy:
                self._woken = woken = trio.Event()
                await woken.wait()
                self._woken = None
                continue
            with trio.move_on_at(self._idle_since + self._timeout_s) as scope:
                self._scope = scope
                await self._terminated.wait()
            self._scope = None
            if self._closed or self._busy:
                continue
            if (
                not self._terminated.is_set()
                and trio.current_time() < self._idle_since + self._timeout_s
            ):
                continue  # requests came and went meanwhile: a later deadline
            with trio.CancelScope(shield=True):
                await self._close_connection()
            return


class TCPServer(hypercorn_tcp.TCPServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_task = IdleTimer(  # type: ignore[assignment]
            self.config.keep_alive_timeout, self.context.terminated, self._initiate_server_close
        )

    async def protocol_send(self, event: Event) -> None:
        """Bytes for a plain TCP client are written at once when the socket takes them all.
        hypercorn sends a response as three writes (head, body, and an empty end for a
        sized body), each through a lock, a shielded cancel scope and a trip through trio's
        scheduler; on a socket with room in its buffer none of that does anything. What the
        socket does not take at once (or a TLS stream's, or while another write holds the
        lock) goes hypercorn's way, in order. No write yields to the scheduler any more, so
        an app must read its request to the end before its answer ends: hypercorn decides
        keep-alive right then, and closes the connection if the request is not (circuitd's
        `gateway.asgi.BodyReceive`)."""
        if type(event) is Updated:  # a request starts, or a response ended
            if event.idle:
                self.idle_task.idle()  # type: ignore[attr-defined]
            else:
                self.idle_task.busy()  # type: ignore[attr-defined]
            return
        stream: trio.abc.Stream = self.stream  # typed as TLS; plain TCP without it
        if type(event) is RawData and type(stream) is trio.SocketStream:
            data = event.data
            if not self.send_lock.locked():
                try:
                    sent = write_now(stream.socket, data) if data else 0
                except OSError:  # reset, broken pipe, or closed (fileno -1)
                    await self.protocol.handle(Closed())
                    return
                if sent == len(data):
                    return
                event = RawData(data=data[sent:])
        await super().protocol_send(event)

    async def _read_data(self) -> None:
        """hypercorn's loop: each read handed to the protocol, then the close. A plain TCP
        socket is waited for before it is read (`sockio.read_when_ready`): a client sends
        its next request only after the answer to the last one, which is when this reads."""
        timeout = self.config.read_timeout or None
        stream: trio.abc.Stream = self.stream  # typed as TLS; plain TCP without it
        receive: Callable[[int], Awaitable[bytes | bytearray]]
        if type(stream) is trio.SocketStream:
            receive = partial(read_when_ready, stream.socket)
        else:
            receive = stream.receive_some
        try:
            while True:
                try:
                    if timeout is None:
                        data = await receive(MAX_RECV)
                    else:
                        with trio.fail_after(timeout):
                            data = await receive(MAX_RECV)
                except (
                    OSError,  # reset
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,  # closed by our side
                    trio.TooSlowError,  # read_timeout
                ):
                    break
                await self.protocol.handle(RawData(data=bytes(data)))
                if not data:
                    break
            await self.protocol.handle(Closed())
        finally:
            # The client is gone (or reading failed): nothing is left to time out.
            self.idle_task.close()  # type: ignore[attr-defined]


def install() -> bool:
    """Points hypercorn's trio worker at `TCPServer`; False (and hypercorn unchanged) when
    its internals are not the ones this was written against."""
    expected = (
        getattr(hypercorn_run, "TCPServer", None) in (hypercorn_tcp.TCPServer, TCPServer)
        and callable(getattr(hypercorn_tcp.TCPServer, "_read_data", None))
        and callable(getattr(hypercorn_tcp.TCPServer, "_initiate_server_close", None))
        and callable(getattr(hypercorn_tcp.TCPServer, "protocol_send", None))
    )
    if not expected:
        log.warning("hypercorn's trio TCP server is not the expected one: its idle timer is kept")
        return False
    setattr(hypercorn_run, "TCPServer", TCPServer)  # noqa: B010 - a module we do not own
    return True
