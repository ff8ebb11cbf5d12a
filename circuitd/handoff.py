"""Connections handed between the workers of one port, so that each serves about as many.

Each worker has an inbox: one end of a datagram socket pair, whose other end every worker
holds. A worker that accepts a connection notes it for the worker `core.spread.place` picks
from everyone's counts; when that is another, it sends the connection's descriptor to that
worker's inbox (SCM_RIGHTS) and closes its own copy. A connection moves before a byte of it is
read, so the protocol (HTTP/1.1, h2c) does not matter, and at most once. The counts live in
memory the workers share, each number written by one worker only (`core.spread.loads`).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import socket
from collections.abc import MutableSequence, Sequence
from dataclasses import dataclass
from typing import cast

import trio

from circuitd.core.spread import loads, place

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

    def listeners(self) -> list[trio.abc.Listener[trio.SocketStream]]:
        """What this worker serves: what it accepts, less what it hands on, and its inbox."""
        return [Spreading(self), Inbox(self.inbox)]

    def open(self) -> None:
        """Serving: connections may be handed to this worker from now on."""
        _ints(self.shut)[self.index] = 0

    def close(self) -> None:
        """Draining: no more connections are handed to this worker."""
        _ints(self.shut)[self.index] = 1

    def served(self) -> None:
        """One of this worker's connections is done."""
        _ints(self.done)[self.index] += 1

    def take(self) -> int:
        """Notes a connection this worker accepted for the worker that is to serve it."""
        given = _ints(self.given)
        target = place(self.index, loads(given[:], _ints(self.done)[:], _ints(self.shut)[:]))
        given[self.index * len(self.outboxes) + target] += 1
        return target

    def hand(self, target: int, connection: trio.socket.SocketType) -> bool:
        """Sends `connection` to `target`'s inbox and closes it here; False (and it is this
        worker's to serve) when it cannot."""
        try:
            fds = [connection.fileno()]
            socket.send_fds(self.outboxes[target], [_NOTE], fds, socket.MSG_DONTWAIT)
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

    def __init__(self, seat: Seat) -> None:
        self._seat = seat
        self._listener = trio.SocketListener(trio.socket.from_stdlib_socket(seat.listening))

    async def accept(self) -> trio.SocketStream:
        while True:
            stream = await self._listener.accept()
            target = self._seat.take()
            if target == self._seat.index or not self._seat.hand(target, stream.socket):
                return stream

    async def aclose(self) -> None:
        await self._listener.aclose()


class Inbox(trio.abc.Listener[trio.SocketStream]):
    """The connections other workers hand to this one."""

    def __init__(self, inbox: socket.socket) -> None:
        self._inbox = inbox

    async def accept(self) -> trio.SocketStream:
        while True:
            await trio.lowlevel.wait_readable(self._inbox)
            try:
                _, fds, _, _ = socket.recv_fds(self._inbox, len(_NOTE), 1, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            for fd in fds[1:]:  # never sent; not ours to keep open
                os.close(fd)
            if fds:
                connection = trio.socket.from_stdlib_socket(socket.socket(fileno=fds[0]))
                return trio.SocketStream(connection)

    async def aclose(self) -> None:
        self._inbox.close()
        await trio.lowlevel.checkpoint()
