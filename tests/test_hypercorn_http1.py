"""`circuitd.hypercorn_http1`: hypercorn's HTTP/1.1 protocol on `circuitd.http1`, on a real
socket in this test's own trio loop. Every exchange runs against hypercorn's own h11 protocol
too, and the two must agree on what a client sees: the statuses, the bodies, and whether the
connection stays open."""

from __future__ import annotations

import json
import re
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import h2.config
import h2.connection
import h2.events
import hypercorn.protocol
import pytest
import trio
import trio.testing
from hypercorn.config import Config, Sockets
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from circuitd import hypercorn_http1, hypercorn_tcp
from circuitd.gateway.asgi import CANCEL_ON_DISCONNECT
from circuitd.hypercorn_http1 import HTTP1Protocol

PROTOCOLS = {"circuitd": HTTP1Protocol, "h11": H11Protocol}
# Each request's CANCEL_ON_DISCONNECT scope, in order (only circuitd's protocol gives one)
CANCEL_SCOPES: list[trio.CancelScope] = []
UNREAD: list[trio.Event] = []  # /unread answers once the test sets the event put here


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes the request body (and says what it got; at /messages, in which messages) or,
    at /stream, answers in three pieces of unknown length (at /stream-end, the last one with
    the end); at /early, answers before reading the body; at /hold, never answers (waits in
    its cancel-on-disconnect scope)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    cancel_scope = scope["extensions"].get(CANCEL_ON_DISCONNECT)
    if cancel_scope is not None:
        CANCEL_SCOPES.append(cancel_scope)
    if scope["path"] == "/hold":
        with cancel_scope:
            await trio.sleep_forever()
        return
    if scope["path"] == "/fail":
        raise RuntimeError("the app failed before answering")
    if scope["path"] == "/silent":
        return  # never answers
    if scope["path"] == "/unread":  # answers without reading its body (as a 413 does)
        await UNREAD[0].wait()
        headers = [(b"content-length", b"0"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/informational-first":  # a 1xx as a response start, then the answer
        await send({"type": "http.response.start", "status": 103, "headers": []})
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["path"] == "/bad-order":
        await send({"type": "http.response.body", "body": b"before its start"})
    if scope["path"] == "/early":
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})
        return
    body = b""
    pieces = []  # each body message: its bytes, then "+" (more to come) or "."
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        pieces.append(message.get("body", b"") + (b"+" if message.get("more_body") else b"."))
        if not message.get("more_body"):
            break
    if scope["path"] == "/messages":  # says how its body came
        body = b"".join(pieces)
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/stream-end":  # its last bytes come with the end
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"one ", b"two "):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"three"})
        return
    answer = b"%s %s %s|%s" % (
        scope["method"].encode(),
        scope["raw_path"],
        scope["http_version"].encode(),
        body,
    )
    headers = [(b"content-length", b"%d" % len(answer)), (b"x-host", _host(scope))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def _host(scope: dict[str, Any]) -> bytes:
    return next((value for name, value in scope["headers"] if name == b"host"), b"-")


@asynccontextmanager
async def serving(
    protocol: type,
    max_requests: int = 1000,
    server_names: list[str] | None = None,
    app_queue: int = 10,
) -> AsyncIterator[int]:
    """A hypercorn server (circuitd's TCP server) speaking HTTP/1.1 with `protocol`."""
    assert hypercorn_tcp.install()
    previous = hypercorn.protocol.H11Protocol
    hypercorn.protocol.H11Protocol = protocol  # type: ignore[misc]
    config = Config()
    config.accesslog = None
    config.keep_alive_max_requests = max_requests
    config.h11_max_incomplete_size = 4096
    config.server_names = server_names or []
    config.max_app_queue_size = app_queue
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            serve = partial(worker_serve, wrap_app(app, 0, "asgi"), config)
            await nursery.start(
                partial(serve, sockets=Sockets([], [sock], []), shutdown_trigger=stop.wait)
            )
            yield sock.getsockname()[1]
            stop.set()
    finally:
        hypercorn.protocol.H11Protocol = previous  # type: ignore[misc]


Answer = tuple[int, bytes]  # status, body (chunks joined)


async def exchange(
    port: int, sends: list[bytes], answers: int, no_body: bool = False
) -> tuple[list[Answer], bool]:
    """Sends `sends`, reads `answers` final responses (1xx ones are listed too, with an empty
    body; `no_body`: answers to HEAD), and says whether the server then closed the connection
    (else it answers one more request on it)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    received = b""
    got: list[Answer] = []
    eof = False
    with trio.fail_after(10):
        for piece in sends:
            await stream.send_all(piece)
        while sum(status >= 200 for status, _ in got) < answers:
            parsed = _parse(received, eof, no_body)
            if parsed is not None:
                answer, received = parsed
                got.append(answer)
            elif eof:
                break
            else:
                data = await stream.receive_some(65536)
                eof = not data
                received += data
        if not eof:
            try:
                await stream.send_all(b"GET /probe HTTP/1.1\r\nhost: probe\r\n\r\n")
                eof = not await stream.receive_some(65536)
            except trio.BrokenResourceError:
                eof = True
    await stream.aclose()
    return got, eof


_STATUS = re.compile(rb"HTTP/1\.1 (\d{3})[^\r\n]*\r\n")


def _parse(received: bytes, eof: bool, no_body: bool) -> tuple[Answer, bytes] | None:
    """One response off the front of `received`, or None if it has not all come."""
    end = received.find(b"\r\n\r\n")
    if end < 0:
        return None
    head, rest = received[:end].lower(), received[end + 4 :]
    status_line = _STATUS.match(received)
    assert status_line is not None, received[:80]
    status = int(status_line.group(1))
    if status < 200 or status in (204, 304) or no_body:
        return (status, b""), rest
    length = re.search(rb"\r\ncontent-length: *(\d+)", head)
    if length is not None:
        size = int(length.group(1))
        return ((status, rest[:size]), rest[size:]) if len(rest) >= size else None
    if b"transfer-encoding: chunked" in head:
        body = b""
        while True:
            line_end = rest.find(b"\r\n")
            if line_end < 0:
                return None
            size = int(rest[:line_end].split(b";")[0], 16)
            if len(rest) < line_end + 2 + size + 2:
                return None
            if size == 0:
                return (status, body), rest[line_end + 4 :]
            body += rest[line_end + 2 : line_end + 2 + size]
            rest = rest[line_end + 2 + size + 2 :]
    return ((status, rest), b"") if eof else None  # up to the close


HOST = b"host: example\r\n"
CASES: dict[str, tuple[list[bytes], int]] = {  # what to send, how many answers
    "GET": ([b"GET /a?b=1 HTTP/1.1\r\n" + HOST + b"\r\n"], 1),
    "POST, sized": ([b"POST /p HTTP/1.1\r\n" + HOST + b"content-length: 5\r\n\r\nhello"], 1),
    "POST, sized, in pieces": (
        [b"POST /p HTTP/1.1\r\n" + HOST, b"content-length: 5\r\n\r\nhe", b"llo"],
        1,
    ),
    "POST, chunked": (
        [
            b"POST /p HTTP/1.1\r\n" + HOST + b"transfer-encoding: chunked\r\n\r\n"
            b"3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\ntrailer: 1\r\n\r\n"
        ],
        1,
    ),
    "pipelined": (
        [
            b"GET /1 HTTP/1.1\r\n"
            + HOST
            + b"\r\nPOST /2 HTTP/1.1\r\n"
            + HOST
            + b"content-length: 2\r\n\r\nhiGET /3 HTTP/1.1\r\n"
            + HOST
            + b"\r\n"
        ],
        3,
    ),
    "pipelined, then a bad one": (
        [b"GET /1 HTTP/1.1\r\n" + HOST + b"\r\nGET /2 HTTP/1.1\r\nbad header\r\n\r\n"],
        2,
    ),
    "streamed answer": ([b"GET /stream HTTP/1.1\r\n" + HOST + b"\r\n"], 1),
    "streamed answer, its end with its last bytes": (
        [
            b"GET /stream-end HTTP/1.1\r\n"
            + HOST
            + b"\r\nGET /stream-end HTTP/1.1\r\n"
            + HOST
            + b"\r\n"
        ],
        2,
    ),
    "HTTP/1.0, streamed answer, its end with its last bytes": (
        [b"GET /stream-end HTTP/1.0\r\n\r\n"],
        1,
    ),
    "HTTP/1.0": ([b"GET /old HTTP/1.0\r\n\r\n"], 1),
    "HTTP/1.0, streamed answer": ([b"GET /stream HTTP/1.0\r\n\r\n"], 1),
    "Connection: close": ([b"GET / HTTP/1.1\r\n" + HOST + b"connection: close\r\n\r\n"], 1),
    "answered before the body": (
        [b"POST /early HTTP/1.1\r\n" + HOST + b"content-length: 4\r\n\r\nbody"],
        1,
    ),
    "no Host": ([b"GET / HTTP/1.1\r\n\r\n"], 1),
    "bad request line": ([b"GET /\r\n\r\n"], 1),
    "bad header": ([b"GET / HTTP/1.1\r\n" + HOST + b"bad header\r\n\r\n"], 1),
    "bad Content-Length": ([b"POST / HTTP/1.1\r\n" + HOST + b"content-length: x\r\n\r\n"], 1),
    "two Content-Lengths": (
        [b"POST / HTTP/1.1\r\n" + HOST + b"content-length: 1\r\ncontent-length: 2\r\n\r\n"],
        1,
    ),
    "bad chunk": (
        [b"POST / HTTP/1.1\r\n" + HOST + b"transfer-encoding: chunked\r\n\r\nzz\r\n"],
        1,
    ),
    "uppercase method and names": ([b"GET / HTTP/1.1\r\nHOST: example\r\nX-A: 1\r\n\r\n"], 1),
    "the app fails": ([b"GET /fail HTTP/1.1\r\n" + HOST + b"\r\n"], 1),
    "the app returns without an answer": ([b"GET /silent HTTP/1.1\r\n" + HOST + b"\r\n"], 1),
    "the app sends a body first": ([b"GET /bad-order HTTP/1.1\r\n" + HOST + b"\r\n"], 1),
}


@pytest.mark.parametrize("case", CASES)
async def test_what_a_client_sees_is_what_h11_gave(case: str) -> None:
    sends, answers = CASES[case]
    seen = {}
    for name, protocol in PROTOCOLS.items():
        async with serving(protocol) as port:
            seen[name] = await exchange(port, sends, answers)

    # The bodies of refusals differ: circuitd says what was wrong (tested below), h11 nothing.
    def refusals_blank(seen: tuple[list[Answer], bool]) -> tuple[list[Answer], bool]:
        got, closed = seen
        return [(status, b"" if status >= 400 else body) for status, body in got], closed

    assert refusals_blank(seen["circuitd"]) == refusals_blank(seen["h11"])
    got, _ = seen["circuitd"]
    assert got  # at least an answer came


@pytest.mark.parametrize(("path", "writes"), [(b"/p", 1), (b"/stream", 4), (b"/stream-end", 3)])
async def test_each_answer_takes_as_few_writes_as_its_app_allows(
    path: bytes, writes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The head goes with the body's first bytes, and a body's last bytes with its end: a
    # sized answer is one write; a stream's, one per piece (/stream: its end alone).
    sent: list[bytes] = []

    def write_now(sock: trio.socket.SocketType, data: bytes) -> int:
        sent.append(data)
        return real_write_now(sock, data)

    real_write_now = hypercorn_tcp.write_now
    monkeypatch.setattr(hypercorn_tcp, "write_now", write_now)
    async with serving(hypercorn_http1.HTTP1Protocol) as port:
        got, _ = await exchange(port, [b"GET %s HTTP/1.1\r\n%s\r\n" % (path, HOST)], 1)
    probe = sent.pop()  # (`exchange` asks once more, to see the connection is kept)
    assert got[0][0] == 200 and len(sent) == writes and b"x-host: probe" in probe
    assert sent[0].startswith(b"HTTP/1.1 200 ")


async def test_a_body_here_with_its_end_is_one_message_to_the_app() -> None:
    sized = b"POST /messages HTTP/1.1\r\n%scontent-length: 5\r\n\r\nhello" % HOST
    chunked = b"POST /messages HTTP/1.1\r\n%stransfer-encoding: chunked\r\n\r\n" % HOST
    async with serving(hypercorn_http1.HTTP1Protocol) as port:
        got, _ = await exchange(port, [sized, chunked + b"5\r\nhello\r\n0\r\n\r\n"], 2)
        assert [body.rsplit(b"|", 1)[1] for _, body in got] == [b"hello.", b"hello."]
        # A body that comes in two parts is two messages, the end with the second.
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(sized[:-2])
        await trio.testing.wait_all_tasks_blocked()  # the app has the first part
        await stream.send_all(b"lo")
        received = b""
        with trio.fail_after(10):
            while not received.endswith(b"|hel+lo."):
                received += await stream.receive_some(65536)
        await stream.aclose()


@pytest.mark.parametrize("path", [b"/p", b"/stream", b"/stream-end"])
async def test_head_as_h11_answers_it(path: bytes) -> None:
    request = b"HEAD %s HTTP/1.1\r\n%s\r\n" % (path, HOST)
    seen = {}
    for name, protocol in PROTOCOLS.items():
        async with serving(protocol) as port:
            seen[name] = await exchange(port, [request], 1, no_body=True)
    assert seen["circuitd"] == seen["h11"] == ([(200, b"")], False)


@pytest.mark.parametrize("name", PROTOCOLS)
async def test_100_continue_then_the_body(name: str) -> None:
    head = b"POST /p HTTP/1.1\r\n" + HOST + b"expect: 100-continue\r\ncontent-length: 2\r\n\r\n"
    async with serving(PROTOCOLS[name]) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(head)
        received = b""
        while b"\r\n\r\n" not in received:
            received += await stream.receive_some(65536)
        assert received.startswith(b"HTTP/1.1 100 ")
        await stream.send_all(b"ok")
        while not received.endswith(b"|ok"):
            data = await stream.receive_some(65536)
            assert data
            received += data
        assert b"HTTP/1.1 200" in received
        await stream.aclose()


async def test_where_it_differs_from_h11() -> None:
    # RFC 9112 2.2: an empty line before a request line is skipped (h11: 400). And the head
    # limit holds for a head that arrives whole (h11 applies it only while waiting for more).
    async with serving(HTTP1Protocol) as port:
        got, closed = await exchange(port, [b"\r\nGET / HTTP/1.1\r\n" + HOST + b"\r\n"], 1)
        assert (got, closed) == ([(200, b"GET / 1.1|")], False)
        big = b"GET / HTTP/1.1\r\n" + HOST + b"x: " + b"a" * 5000 + b"\r\n\r\n"
        got, closed = await exchange(port, [big], 1)
        assert ([answer[0] for answer in got], closed) == ([431], True)


@pytest.mark.parametrize("name", PROTOCOLS)
@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        (b"POST /p HTTP/1.1\r\n" + HOST + b"content-length: 10\r\n\r\nabc", b"HTTP/1.1 400 "),
        (b"GET /p HTTP/1.1\r\n" + HOST, b"HTTP/1.1 400 "),  # mid-head
        (b"", b""),  # between requests: nothing to answer
        # Whole requests, then the half-close (`nc -N`, some health checkers): answered.
        (b"GET /p HTTP/1.1\r\n" + HOST + b"\r\n", b"HTTP/1.1 200 "),
        (
            b"GET /1 HTTP/1.1\r\n" + HOST + b"\r\nGET /2 HTTP/1.1\r\n" + HOST + b"\r\n",
            b"HTTP/1.1 200 ",
        ),
        (b"GET /stream HTTP/1.1\r\n" + HOST + b"\r\n", b"HTTP/1.1 200 "),
    ],
)
async def test_a_client_that_stops_sending_mid_request(
    name: str, sent: bytes, answer: bytes
) -> None:
    async with serving(PROTOCOLS[name]) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(sent)
        await stream.send_eof()  # half-closed: it can still read the answer
        received = b""
        with trio.fail_after(10):
            while data := await stream.receive_some(65536):
                received += data
        assert received.startswith(answer)
        requests = sent.count(b"HTTP/1.1\r\n") if answer.endswith(b"200 ") else 0
        assert received.count(b"HTTP/1.1 200 ") == requests  # each whole request answered
        await stream.aclose()


async def test_the_answers_in_full() -> None:
    async with serving(HTTP1Protocol) as port:
        got, closed = await exchange(port, CASES["pipelined"][0], 3)
        assert got == [
            (200, b"GET /1 1.1|"),
            (200, b"POST /2 1.1|hi"),
            (200, b"GET /3 1.1|"),
        ]
        assert not closed
        got, closed = await exchange(port, CASES["HTTP/1.0, streamed answer"][0], 1)
        assert (got, closed) == ([(200, b"one two three")], True)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + HOST + b"x: " + b"a" * 5000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\n" + HOST + b"transfer-encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/3.0\r\n" + HOST + b"\r\n", 505),
        (
            b"POST / HTTP/1.1\r\n"
            + HOST
            + b"transfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\n" + HOST + b"folded: a\r\n b\r\n\r\n", 400),
    ],
)
async def test_a_request_that_cannot_be_read_is_refused_and_the_connection_closed(
    request_bytes: bytes, status: int
) -> None:
    async with serving(HTTP1Protocol) as port:
        got, closed = await exchange(port, [request_bytes], 1)
    assert ([answer[0] for answer in got], closed) == ([status], True)
    error = json.loads(got[0][1])["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "malformed_http_request"
    assert error["message"]


async def test_keep_alive_ends_after_the_most_requests_allowed() -> None:
    request = b"GET / HTTP/1.1\r\n" + HOST + b"\r\n"
    async with serving(HTTP1Protocol, max_requests=2) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(request)
        first = await stream.receive_some(65536)
        await stream.send_all(request)
        second = b""
        while not second.endswith(b"|"):
            data = await stream.receive_some(65536)
            assert data
            second += data
        assert b"connection: close" not in first.lower()
        assert b"connection: close" in second.lower()
        assert await stream.receive_some(65536) == b""
        await stream.aclose()


async def test_the_request_scope_is_cancelled_when_the_client_leaves_before_its_answer() -> None:
    CANCEL_SCOPES.clear()
    async with serving(HTTP1Protocol) as port:
        got, closed = await exchange(port, CASES["GET"][0], 1)
        assert (len(got), closed) == (1, False)  # then `exchange` closes the connection
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /hold HTTP/1.1\r\n" + HOST + b"\r\n")
        await trio.testing.wait_all_tasks_blocked()
        answered, probe, held = CANCEL_SCOPES
        assert not held.cancel_called  # waiting for its answer: still there
        await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
    assert held.cancelled_caught
    # Answered in full before the client left: not a disconnect (nor is the probe's close).
    assert not answered.cancel_called and not probe.cancel_called


async def test_a_client_that_resets_its_connection_cancels_its_call_too() -> None:
    # A reset (RST, not FIN) makes the server's read fail with an OSError, not end with b"".
    CANCEL_SCOPES.clear()
    async with serving(HTTP1Protocol) as port:
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", port))
        await sock.send(b"GET /hold HTTP/1.1\r\n" + HOST + b"\r\n")
        await trio.testing.wait_all_tasks_blocked()
        (held,) = CANCEL_SCOPES
        assert not held.cancel_called
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # with a zero linger: a reset
        await trio.testing.wait_all_tasks_blocked()
    assert held.cancelled_caught


def test_install_points_hypercorn_at_the_protocol() -> None:
    previous = hypercorn.protocol.H11Protocol
    try:
        assert hypercorn_http1.install()
        assert hypercorn.protocol.H11Protocol is HTTP1Protocol
        assert hypercorn_http1.install()  # twice is fine
    finally:
        hypercorn.protocol.H11Protocol = previous  # type: ignore[misc]


@pytest.mark.parametrize("name", PROTOCOLS)
async def test_an_upgrade_to_h2c_switches_the_connection_to_http2(name: str) -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = client.initiate_upgrade_connection()
    upgrade = (
        b"GET /up HTTP/1.1\r\n" + HOST + b"connection: Upgrade, HTTP2-Settings\r\n"
        b"upgrade: h2c\r\nhttp2-settings: " + settings + b"\r\n\r\n"
    )
    async with serving(PROTOCOLS[name]) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(upgrade)
        received = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in received:
                received += await stream.receive_some(65536)
            head, _, rest = received.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            await stream.send_all(client.data_to_send())
            body, ended = b"", False
            events = client.receive_data(rest) if rest else []
            while not ended:
                for event in events:
                    if isinstance(event, h2.events.DataReceived):
                        body += event.data
                    ended = ended or isinstance(event, h2.events.StreamEnded)
                await stream.send_all(client.data_to_send())
                if not ended:
                    events = client.receive_data(await stream.receive_some(65536))
        assert body == b"GET /up 2|"
        await stream.aclose()
