"""`circuitd.upstream.http1` without sockets: request heads, then responses fed to the reader
whole and byte by byte, checked against h11 (the reference it replaces) where both accept."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitd import http1

HEADERS = [(b"Host", b"api.example"), (b"Content-Type", b"application/json")]


def in_steps(wire: bytes, step: int | None) -> list[bytes]:
    """`wire` in pieces of `step` bytes (whole if None), as a socket might give it."""
    return [wire] if step is None else [wire[i : i + step] for i in range(0, len(wire), step)]


def read_all(reader: http1.ResponseReader, pieces: list[bytes]) -> tuple[int, bytes]:
    """Feeds `pieces`, then EOF if the body needs it, and returns the status and the body."""
    feed = iter([*pieces, b""])  # EOF, fed only if the response has not ended by then
    while (head := reader.read_head()) is None:
        reader.receive(next(feed))
    assert head.status >= 200
    body = []
    while True:
        data = reader.read_body()
        if data is None:
            reader.receive(next(feed))
        elif data:
            body.append(data)
        else:
            return head.status, b"".join(body)


def h11_body(wire: bytes, method: bytes = b"POST") -> tuple[int, bytes, bool]:
    """h11's reading of the same bytes: status, body, and whether the connection is reusable
    (not if the server had to close it to end the body)."""
    h = h11.Connection(h11.CLIENT)
    h.send(h11.Request(method=method, target="/", headers=HEADERS))
    h.send(h11.EndOfMessage())
    h.receive_data(wire)
    body, status, closed = b"", 0, False
    while True:
        event = h.next_event()
        if event is h11.NEED_DATA:
            h.receive_data(b"")
            closed = True
        elif type(event) is h11.Response:
            status = event.status_code
        elif type(event) is h11.Data:
            body += event.data
        elif type(event) is h11.EndOfMessage:
            done = h.our_state is h11.DONE and h.their_state is h11.DONE
            return status, body, done and not closed


# -- requests ----------------------------------------------------------------------------------


def test_a_request_head_is_written_as_given() -> None:
    request = http1.Request(b"POST", b"/v1/chat?x=1", [*HEADERS, (b"Content-Length", b"2")])
    assert request.head == (
        b"POST /v1/chat?x=1 HTTP/1.1\r\nHost: api.example\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n"
    )
    assert (request.length, request.chunked, request.close) == (2, False, False)
    assert request.body(b"{}") == b"{}"


def test_a_chunked_request_frames_its_body() -> None:
    request = http1.Request(b"POST", b"/", [*HEADERS, (b"transfer-encoding", b"chunked")])
    assert request.chunked
    assert request.body(b"hello") == b"5\r\nhello\r\n0\r\n\r\n"
    assert request.body(b"") == b"0\r\n\r\n"


def test_connection_close_in_the_request_is_noted() -> None:
    assert http1.Request(b"GET", b"/", [*HEADERS, (b"Connection", b"Close")]).close


@pytest.mark.parametrize(
    ("method", "target", "headers", "message"),
    [
        (b"POST", b"/", [(b"Host", b"a"), (b"X-Evil", b"1\r\nInjected: yes")], "X-Evil"),
        (b"POST", b"/", [(b"Host", b"a"), (b"X-Evil", b"1\nInjected: yes")], "X-Evil"),
        (b"POST", b"/", [(b"Host", b"a"), (b"X-Evil", b"a\x00b")], "X-Evil"),
        (b"POST", b"/", [(b"Host", b"a"), (b"Bad Name", b"1")], "Bad Name"),
        (b"POST", b"/", [(b"Host", b"a"), (b"", b"1")], "illegal header"),
        (b"POST", b"/", [(b"Content-Type", b"a")], "Host"),
        (b"PO ST", b"/", HEADERS, "method"),
        (b"GET", b"/a b", HEADERS, "target"),
        (b"GET", b"/a\r\nX: y", HEADERS, "target"),
        (b"POST", b"/", [*HEADERS, (b"Content-Length", b"-1")], "Content-Length"),
        (b"POST", b"/", [*HEADERS, (b"Content-Length", b"1"), (b"Content-Length", b"2")], "Con"),
        (b"POST", b"/", [*HEADERS, (b"Transfer-Encoding", b"gzip")], "Transfer-Encoding"),
        (
            b"POST",
            b"/",
            [*HEADERS, (b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"1")],
            "both",
        ),
    ],
)
def test_a_request_that_cannot_be_sent_safely_is_refused(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], message: str
) -> None:
    with pytest.raises(http1.LocalProtocolError, match=message):
        http1.Request(method, target, headers)


def test_a_body_its_head_does_not_frame_is_refused() -> None:
    with pytest.raises(http1.LocalProtocolError, match="Content-Length of 2"):
        http1.Request(b"POST", b"/", [*HEADERS, (b"Content-Length", b"2")]).body(b"abc")
    with pytest.raises(http1.LocalProtocolError, match="Content-Length of 0"):
        http1.Request(b"POST", b"/", HEADERS).body(b"abc")


# -- responses ---------------------------------------------------------------------------------

JSON = b'{"id":"chatcmpl-1","choices":[]}'
RESPONSES = {
    "sized": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/json\r\n\r\n%b"
    % (len(JSON), JSON),
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n",
    "chunked with trailers": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n",
    "upper-case hex": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    b"A\r\n0123456789\r\n0\r\n\r\n",
    "bare LF": b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok",
    "no reason": b"HTTP/1.1 204\r\n\r\n",
    "empty reason": b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
    "304": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    "equal lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok",
    "close": b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok",
    "until close": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it",
    "HTTP/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "1xx first": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\nContent-Length: 2\r\n\r\nok",
    "OWS": b"HTTP/1.1 200 OK\r\nContent-Length:   2 \t\r\nX-Empty:\r\n\r\nok",
}


@pytest.mark.parametrize("name", RESPONSES)
@pytest.mark.parametrize("step", [None, 1, 3])
def test_responses_read_as_h11_reads_them(name: str, step: int | None) -> None:
    wire = RESPONSES[name]
    reader = http1.ResponseReader()
    assert read_all(reader, in_steps(wire, step)) == h11_body(wire)[:2]
    reusable = h11_body(wire)[2]
    assert reader.reusable == reusable


def test_the_head_as_received() -> None:
    reader = http1.ResponseReader()
    reader.receive(RESPONSES["obs-fold"])
    head = reader.read_head()
    assert head is not None
    assert (head.version, head.status, head.reason) == (b"1.1", 200, b"OK")
    assert head.headers == [(b"X-Long", b"a b"), (b"Content-Length", b"2")]
    reader = http1.ResponseReader()
    reader.receive(RESPONSES["OWS"])
    head = reader.read_head()
    assert head is not None
    assert head.headers == [(b"Content-Length", b"2"), (b"X-Empty", b"")]


def test_a_head_request_has_no_body_whatever_the_headers_say() -> None:
    reader = http1.ResponseReader(no_body=True)
    reader.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    assert reader.read_head() is not None
    assert reader.read_body() == b""
    assert reader.reusable


def test_the_chunks_already_here_come_out_as_one_piece() -> None:
    reader = http1.ResponseReader()
    reader.receive(CHUNKED_HEAD + b"3\r\nabc\r\n3\r\ndef\r\n2\r")
    assert reader.read_head() is not None
    assert reader.read_body() == b"abcdef"
    assert reader.read_body() is None
    reader.receive(b"\nxy\r\n0\r\n\r\n")
    assert reader.read_body() == b"xy"
    assert reader.read_body() == b""
    assert reader.reusable


def test_bytes_past_the_response_or_a_close_make_it_not_reusable() -> None:
    reader = http1.ResponseReader()
    assert read_all(reader, [RESPONSES["sized"] + b"HTTP/1.1 200 OK\r\n"]) == (200, JSON)
    assert not reader.reusable
    reader = http1.ResponseReader(keep_alive=False)  # the request said close
    read_all(reader, [RESPONSES["sized"]])
    assert not reader.reusable
    both = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"
    reader = http1.ResponseReader()
    assert read_all(reader, [both]) == (200, b"")
    assert not reader.reusable


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"HTTP/2 200 OK\r\n\r\n", "status line"),
        (b"ICY 200 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 099 X\r\nContent-Length: 0\r\n\r\n", "status line"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", "101"),
        (b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", "malformed response header"),
        (b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n", "malformed response header"),
        (b"HTTP/1.1 200 OK\r\n folded: first\r\n\r\n", "continuation"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "conflicting"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "Transfer-Encoding",
        ),
    ],
)
def test_a_bad_head_is_a_protocol_error(wire: bytes, message: str) -> None:
    reader = http1.ResponseReader()
    reader.receive(wire)
    with pytest.raises(http1.RemoteProtocolError, match=message):
        reader.read_head()


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"zz\r\nab\r\n0\r\n\r\n", "chunk size"),
        (b"\r\n", "chunk size"),
        (b"2\r\nabc\r\n0\r\n\r\n", "longer than its size"),
        (b"1" * 2000, "too long"),
        (b"11111111111111111\r\n", "chunk size"),  # 17 hex digits
        (b"0\r\nBad Trailer\r\n\r\n", "trailer"),
    ],
)
def test_a_bad_chunked_body_is_a_protocol_error(body: bytes, message: str) -> None:
    reader = http1.ResponseReader()
    reader.receive(CHUNKED_HEAD + body)
    assert reader.read_head() is not None
    with pytest.raises(http1.RemoteProtocolError, match=message):
        while reader.read_body():
            pass


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        CHUNKED_HEAD + b"5\r\nhel",
        CHUNKED_HEAD + b"5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
)
def test_a_response_cut_short_is_a_protocol_error(wire: bytes) -> None:
    with pytest.raises(http1.RemoteProtocolError, match="closed the connection"):
        read_all(http1.ResponseReader(), [wire])


def test_a_head_larger_than_the_limit_is_refused_before_its_end() -> None:
    reader = http1.ResponseReader()
    reader.receive(b"HTTP/1.1 200 OK\r\n")
    big = b"X-Big: " + b"a" * 1000 + b"\r\n"
    with pytest.raises(http1.RemoteProtocolError, match="too large"):
        for _ in range(http1.MAX_HEAD_BYTES // len(big) + 2):
            assert reader.read_head() is None
            reader.receive(big)


def test_a_body_read_in_pieces_copies_nothing_it_need_not() -> None:
    # The common case: the whole JSON body arrives in the same receive as its head, or alone.
    reader = http1.ResponseReader()
    reader.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
    assert reader.read_head() is not None
    assert reader.read_body() is None
    piece = b"abcdef"
    reader.receive(piece)
    assert reader.read_body() is piece
    assert reader.read_body() == b""


# -- property: any well-formed response, cut anywhere ------------------------------------------

_names = st.from_regex(rb"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True).filter(
    lambda name: name.lower() not in (b"content-length", b"transfer-encoding", b"connection")
)
_values = st.from_regex(rb"[!-~]([ !-~]{0,30}[!-~])?", fullmatch=True)


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, bytes, list[int]]:
    """A response's bytes, its body, and the points at which to cut the bytes for receiving."""
    body = draw(st.binary(max_size=300))
    headers = b"".join(
        b"%b: %b\r\n" % pair for pair in draw(st.lists(st.tuples(_names, _values), max_size=5))
    )
    if draw(st.booleans()):
        sizes = draw(st.lists(st.integers(1, 50), max_size=10))
        pieces, at = [], 0
        for size in sizes:
            if at < len(body):
                pieces.append(body[at : at + size])
                at += size
        if at < len(body):
            pieces.append(body[at:])
        framed = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + headers + b"\r\n"
    else:
        framed = body
        head = b"HTTP/1.1 201 Created\r\n" + headers + b"Content-Length: %d\r\n\r\n" % len(body)
    wire = head + framed
    cuts = sorted(set(draw(st.lists(st.integers(0, len(wire)), max_size=8))))
    return wire, body, cuts


@settings(max_examples=300, deadline=None)
@given(responses())
def test_any_response_cut_anywhere_reads_as_h11_reads_it(
    case: tuple[bytes, bytes, list[int]],
) -> None:
    wire, body, cuts = case
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True) if b > a]
    reader = http1.ResponseReader()
    status, got = read_all(reader, pieces)
    assert got == body
    assert reader.reusable
    assert (status, body, True) == h11_body(wire)
