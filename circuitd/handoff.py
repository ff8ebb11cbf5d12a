"""Connections handed between the workers of one port, so that each serves about as many.

Each worker has an inbox: one end of a datagram socket pair, whose other end every worker
holds. A worker that accepts a connection notes it for the worker `core.spread.place` picks
from everyone's counts; when that is another, it sends the connection's descriptor to that
worker's inbox (SCM_RIGHTS) and closes its own copy. A connection moves before a byte of it is
read, so the protocol (HTTP/1.1, h2c) does not matter, and at most once. The counts live in
memory the workers share, each number written by one worker only (`core.spread.loads`).

While connections come and go (clients that open one per request: `core.spread.churning`)
each stays where it landed; the hash spreads those over time by itself.

Nothing here waits: a full inbox (a stuck or very busy worker) refuses, and the accepting
worker serves the connection itself. A draining worker takes no more; one handed to it in the
instant before, still in its inbox when it stops, is closed unserved, as connections still in
its accept queue are.
"""

from __future__ import annotations

import array
import ctypes
import logging
import multiprocessing
import os
import socket
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import cast

import trio

from circuitd.core.spread import Turnover, churning, loads, place

log = logging.getLogger("circuitd")

Shared = ctypes.Array[ctypes.c_int64]  # in memory the workers share
_NOTE = b"c"  # a datagram carries one descriptor; its byte only makes it a datagram


@dataclass
class Seat:
    """What one worker of several holds. Picklable while its process is spawned."""

    index: int
    listening: socket.socket  # its own SO_REUSEPORT socket
    inbox: socket.socket
    outboxes: Sequence[socket.socket]  # per worker, the end that sends to its inbox
    given: Shared  # shared int64s, per (worker i, worker j): accepted by i for j
    done: Shared  # shared int64s, per worker: connections it has finished serving
    shut: Shared  # shared int64s, per worker: 1 while it takes no connections
    # This worker's own reading of how many connections all workers closed lately.
    turnover: Turnover = field(default_factory=Turnover, repr=False)

    def listeners(self) -> list[trio.abc.Listener[trio.SocketStream]]:
        """What this worker serves: what it accepts, less what it hands on, and its inbox."""
        return [Spreading(self), Inbox(self)]

    def open(self) -> None:
        """Serving: connections may be handed to this worker from now on."""
        _ints(self.shut)[self.index] = 0

    def close(self) -> None:
        """Draining: no more connections are handed to this worker."""
        _ints(self.shut)[self.index] = 1

    def served(self) -> None:
        """One of this worker's connections is done."""
        _ints(self.done)[self.index] += 1

    def take(self, now: float) -> int:
        """Notes a connection this worker accepted (at `now`) for the worker that is to
        serve it: this one while the workers' connections come and go, else `place`'s."""
        given = _ints(self.given)
        given_now, done = given[:], _ints(self.done)[:]
        closed = sum(done)
        held = sum(given_now) - closed  # open, all workers together
        me = self.index
        if churning(self.turnover.closed(now, closed), held):
            target = me
        else:
            target = place(me, loads(given_now, done, _ints(self.shut)[:]))
        given[me * len(self.outboxes) + target] += 1
        return target

    def hand(self, target: int, connection: trio.socket.SocketType | socket.socket) -> bool:
        """Sends `connection` to `target`'s inbox and closes it here; False (and it is this
        worker's to serve) when it cannot. Never waits: a full inbox (a busy or stuck worker)
        is a refusal, not a wait that would stall this worker's event loop."""
        try:
            _send_fd(self.outboxes[target], connection.fileno())
        except OSError:  # its inbox is full (or gone): not worth more than serving it here
            given, row = _ints(self.given), self.index * len(self.outboxes)
            given[row + target] -= 1
            given[row + self.index] += 1
            return False
        connection.close()  # the inbox holds the connection now
        return True

    def release(self) -> None:
        """Closes this process's copies of the seat's own sockets (the parent's, once the
        worker has them)."""
        self.listening.close()
        self.inbox.close()


# `socket.send_fds` and `recv_fds` take `flags` but do not pass them on (CPython 3.11,
# gh-107898): without MSG_DONTWAIT a full inbox blocked the sender's whole event loop.
_FD_SIZE = array.array("i").itemsize


def _send_fd(outbox: socket.socket, fd: int) -> None:
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
    outbox.sendmsg([_NOTE], rights, socket.MSG_DONTWAIT)


def _receive_fd(inbox: socket.socket) -> tuple[int | None, bool]:
    """The descriptor of the next datagram in `inbox` (None if it came without one) and
    whether the kernel dropped one (this process at its open-files limit). Raises
    `BlockingIOError` when there is none."""
    flags = socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC
    _, ancillary, message_flags, _ = inbox.recvmsg(len(_NOTE), socket.CMSG_SPACE(_FD_SIZE), flags)
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    for extra in fds[1:]:  # never sent; not ours to keep open
        os.close(extra)
    return (fds[0] if fds else None), bool(message_flags & socket.MSG_CTRUNC)


def _ints(shared: Shared) -> MutableSequence[int]:
    return cast("MutableSequence[int]", shared)


def seats(listening: Sequence[socket.socket]) -> list[Seat]:
    """One seat per listening socket of a port, the workers taking no connections until each
    `open`s. The caller releases each seat once its worker is started, and closes `outboxes`
    when they have all exited."""
    n = len(listening)
    context = multiprocessing.get_context("spawn")
    given = context.RawArray(ctypes.c_int64, n * n)
    done = context.RawArray(ctypes.c_int64, n)
    shut = context.RawArray(ctypes.c_int64, [1] * n)
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in listening]
    outboxes = [send for send, _ in pairs]
    return [
        Seat(i, sock, inbox, outboxes, given, done, shut)
        for i, (sock, (_, inbox)) in enumerate(zip(listening, pairs, strict=True))
    ]


class Spreading(trio.abc.Listener[trio.SocketStream]):
    """A worker's own listening socket: the connections it accepts that it is to serve."""

    def __init__(self, seat: Seat, clock: Callable[[], float] = trio.current_time) -> None:
        self._seat = seat
        self._listener = trio.SocketListener(trio.socket.from_stdlib_socket(seat.listening))
        self._clock = clock

    async def accept(self) -> trio.SocketStream:
        while True:
            stream = await self._listener.accept()
            target = self._seat.take(self._clock())
            if target == self._seat.index or not self._seat.hand(target, stream.socket):
                return stream

    async def aclose(self) -> None:
        await self._listener.aclose()


class Inbox(trio.abc.Listener[trio.SocketStream]):
    """The connections other workers hand to this one."""

    def __init__(self, seat: Seat) -> None:
        self._seat = seat
        self._inbox = seat.inbox

    async def accept(self) -> trio.SocketStream:
        while True:
            await trio.lowlevel.wait_readable(self._inbox)
            try:
                fd, dropped = _receive_fd(self._inbox)
            except BlockingIOError:
                continue
            if fd is None:
                if dropped:  # counted for this worker by its sender, and gone
                    log.error("a connection handed to this worker was lost: too many open files")
                    self._seat.served()
                continue
            try:
                connection = socket.socket(fileno=fd)
            except OSError:  # not a socket after all: nothing a peer sends
                os.close(fd)
                self._seat.served()
                continue
            return trio.SocketStream(trio.socket.from_stdlib_socket(connection))

    async def aclose(self) -> None:
        trio.lowlevel.notify_closing(self._inbox)
        self._inbox.close()
        await trio.lowlevel.checkpoint()
