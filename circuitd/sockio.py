"""Plain TCP socket I/O beneath trio's `SocketStream`, for the two hot paths that own their
socket (the server's connections, the upstream pool's): a write the socket takes at once,
and a read that waits first. Both skip what `SocketStream` wraps around each call (a
conflict detector, an error-translating context manager, and for a read, trio's
try-then-wait helper with its own context manager)."""

from __future__ import annotations

import os

import trio

__all__ = ["read_when_ready", "write_now"]


def write_now(sock: trio.socket.SocketType, data: bytes) -> int:
    """Writes what the socket's buffer takes at once and says how much: 0 when it is full.
    Raises `OSError` as the socket does (reset, broken pipe; a closed one: fileno -1)."""
    try:
        return os.write(sock.fileno(), data)
    except BlockingIOError:
        return 0


async def read_when_ready(sock: trio.socket.SocketType, size: int) -> bytes:
    """The next bytes (b"" at EOF), for a read whose data cannot be there yet, such as an
    answer to what was just sent: waiting first saves the read that would fail, which
    `receive_some` tries first (a syscall, and an exception raised and caught). Always a
    checkpoint. Raises `OSError` as the socket does, `trio.ClosedResourceError` if it is
    closed, before or by another task meanwhile."""
    while True:
        if sock.fileno() < 0:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError("the socket was closed")
        await trio.lowlevel.wait_readable(sock)
        try:
            return os.read(sock.fileno(), size)
        except BlockingIOError:  # a spurious wake-up: wait again
            continue
