"""`circuitd.hypercorn_tcp`: hypercorn's trio server with circuitd's idle timer, in this
test's own trio loop on a real socket, with trio's MockClock (time moves only when a test
jumps it, so the keep-alive timeout fires exactly when a test says).

What the kernel says about the server's side of a connection is read from /proc/net/tcp:
a socket in CLOSE-WAIT is one whose client has gone but which the server still holds."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from circuitd import hypercorn_tcp

KEEP_ALIVE_S = 75.0
REQUEST = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n"
CLOSE_WAIT = "08"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


@asynccontextmanager
async def serving(
    asgi: Any = app, read_timeout: float | None = None, stop: trio.Event | None = None
) -> AsyncIterator[int]:
    """A hypercorn server with circuitd's TCP server; yields its port. Setting `stop` shuts
    it down (as leaving the block does)."""
    assert hypercorn_tcp.install()
    config = Config()
    config.keep_alive_timeout = KEEP_ALIVE_S
    config.read_timeout = read_timeout
    config.accesslog = None
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    if stop is None:
        stop = trio.Event()
    async with trio.open_nursery() as nursery:
        serve = partial(worker_serve, wrap_app(asgi, 0, "asgi"), config)
        await nursery.start(
            partial(serve, sockets=Sockets([], [sock], []), shutdown_trigger=stop.wait)
        )
        yield port
        stop.set()


async def request(stream: trio.SocketStream) -> None:
    await stream.send_all(REQUEST)
    await read_answer(stream)


async def read_answer(stream: trio.SocketStream) -> None:
    received = b""
    while not received.endswith(b"\r\n\r\nok"):
        data = await stream.receive_some(4096)
        assert data, f"closed after {received!r}"
        received += data
    assert received.startswith(b"HTTP/1.1 200")


def server_sockets(port: int, state: str | None = None) -> int:
    """The server's connected sockets on `port` (in `state`), from the kernel's table."""
    local = f"0100007F:{port:04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] != "0A" and (state is None or fields[3] == state):
            count += 1  # 0A is the listening socket
    return count


@pytest.fixture(autouse=True)
def _needs_proc() -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("reads the kernel's TCP table from /proc/net/tcp")


async def test_a_client_closing_an_idle_connection_frees_it_at_once(
    mock_clock: trio.testing.MockClock,
) -> None:
    async with serving() as port:
        for _ in range(3):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await request(stream)
            await trio.testing.wait_all_tasks_blocked()  # the server is idle: its timer runs
            await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        # Before: each socket stayed in CLOSE-WAIT until the keep-alive timeout (75 s).
        assert server_sockets(port, CLOSE_WAIT) == 0
        assert server_sockets(port) == 0


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(
    mock_clock: trio.testing.MockClock,
) -> None:
    async with serving() as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        for _ in range(3):  # each response starts the timeout over
            await request(stream)
            await trio.testing.wait_all_tasks_blocked()  # the server is idle: its timer runs
            mock_clock.jump(KEEP_ALIVE_S - 1)
            await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(2)
        await trio.testing.wait_all_tasks_blocked()
        assert await stream.receive_some(4096) == b""  # the server closed it
        await stream.aclose()


async def test_a_read_timeout_closes_a_connection_silent_that_long(
    mock_clock: trio.testing.MockClock,
) -> None:
    async with serving(read_timeout=10) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await request(stream)
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(9.9)
        await trio.testing.wait_all_tasks_blocked()
        await request(stream)  # still open; each read starts the timeout over
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(10)  # short of the keep-alive timeout, past the read timeout
        await trio.testing.wait_all_tasks_blocked()
        assert stream.socket.is_readable()  # (not a wait for a close that never comes)
        assert await stream.receive_some(4096) == b""  # the server closed it
        await stream.aclose()


async def test_a_shutdown_closes_idle_connections_at_once_and_busy_ones_after_their_answer(
    mock_clock: trio.testing.MockClock,
) -> None:
    stop, release = trio.Event(), trio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/slow":
            await release.wait()
        await app(scope, receive, send)

    async with serving(slow, stop=stop) as port:
        idle = await trio.open_tcp_stream("127.0.0.1", port)
        await request(idle)
        busy = await trio.open_tcp_stream("127.0.0.1", port)
        await busy.send_all(REQUEST.replace(b"GET /", b"GET /slow"))
        await trio.testing.wait_all_tasks_blocked()
        stop.set()
        await trio.testing.wait_all_tasks_blocked()
        assert idle.socket.is_readable()
        assert await idle.receive_some(4096) == b""  # closed at once, long before 75 s
        assert not busy.socket.is_readable()  # its request is still being answered
        release.set()
        await read_answer(busy)
        await trio.testing.wait_all_tasks_blocked()
        assert await busy.receive_some(4096) == b""  # then closed
        for stream in (idle, busy):
            await stream.aclose()


async def test_no_timeout_while_a_request_is_served(mock_clock: trio.testing.MockClock) -> None:
    release = trio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await release.wait()
        await app(scope, receive, send)

    async with serving(slow) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(REQUEST)
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(KEEP_ALIVE_S * 3)  # a long answer is not idleness
        await trio.testing.wait_all_tasks_blocked()
        release.set()
        await read_answer(stream)  # not closed meanwhile
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(KEEP_ALIVE_S - 1)  # idle since the answer: the timeout starts there
        await trio.testing.wait_all_tasks_blocked()
        await request(stream)
        await stream.aclose()


async def test_a_response_larger_than_the_socket_takes_arrives_whole_and_in_order(
    mock_clock: trio.testing.MockClock,
) -> None:
    # Each chunk is more than a loopback socket buffers: the first write is partial and the
    # rest goes hypercorn's way, while the next chunk waits its turn.
    chunks = [bytes([ord("a") + i]) * (4 << 20) for i in range(3)]
    size = sum(map(len, chunks))

    async def big(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("path") != "/big":
            await app(scope, receive, send)
            return
        headers = [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async with serving(big) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(REQUEST.replace(b"/", b"/big", 1))
        await trio.testing.wait_all_tasks_blocked()  # the server is stuck on a full socket
        received = bytearray()
        while b"\r\n\r\n" not in received or len(received) < received.index(b"\r\n\r\n") + 4 + size:
            data = await stream.receive_some(1 << 20)
            assert data, "closed early"
            received += data
        head, body = bytes(received).split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200")
        assert body == b"".join(chunks)
        await request(stream)  # the connection is still good for the next request
        await stream.aclose()


async def test_a_client_gone_mid_response_ends_the_connection_quietly(
    mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    gone = trio.Event()
    sent: list[str] = []

    async def halves(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("path") != "/halves":
            await app(scope, receive, send)
            return
        headers = [(b"content-length", b"4")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ha", "more_body": True})
        await gone.wait()
        await send({"type": "http.response.body", "body": b"lf"})
        sent.append("all")

    async with serving(halves) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(REQUEST.replace(b"/", b"/halves", 1))
        received = b""
        while not received.endswith(b"ha"):
            received += await stream.receive_some(4096)
        # A reset, not a polite close: the next write to it fails.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        await stream.aclose()
        gone.set()
        await trio.testing.wait_all_tasks_blocked()
        assert sent == ["all"]  # the app's last send returned: nobody left to tell
        assert server_sockets(port) == 0
        # and the server serves on
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await request(stream)
        await stream.aclose()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
