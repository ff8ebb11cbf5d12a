"""`circuitd.http1`'s server side without sockets: requests read as h11's server reads them
(whole, byte by byte, pipelined), the ones refused and with which status, and response heads."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitd import http1
from circuitd.http1.server import BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BODY_UNTIL_CLOSE
from tests.gateway.test_http1 import in_steps

Read = tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]], bytes]  # method ... body


def read_requests(pieces: list[bytes]) -> list[Read]:
    """What `RequestReader` reads of `pieces` received one after another."""
    reader = http1.RequestReader(http1.MAX_HEAD_BYTES)
    feed = iter(pieces)
    out: list[Read] = []
    while True:
        head = reader.read_head()
        if head is None:
            try:
                reader.receive(next(feed))
            except StopIteration:
                return out
            continue
        body = b""
        while (data := reader.read_body()) != b"":
            if data is None:
                reader.receive(next(feed))
            else:
                body += data
        out.append((head.method, head.target, head.version, head.headers, body))
        reader.next_request()


def h11_requests(wire: bytes) -> list[Read]:
    h = h11.Connection(h11.SERVER)
    h.receive_data(wire)
    out: list[Read] = []
    while True:
        event = h.next_event()
        if type(event) is h11.Request:
            current = event
            body = b""
        elif type(event) is h11.Data:
            body += event.data
        elif type(event) is h11.EndOfMessage:
            headers = list(current.headers)
            version = current.http_version
            out.append((current.method, current.target, version, headers, body))
            h.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
            h.send(h11.EndOfMessage())
            if h.our_state is not h11.DONE:  # keep-alive is off: nothing more is read
                return out
            h.start_next_cycle()
        else:
            return out


HOST = b"Host: example\r\n"
REQUESTS = {
    "GET": b"GET /v1/models?x=1 HTTP/1.1\r\n" + HOST + b"Accept: */*\r\n\r\n",
    "sized": b"POST /v1/chat HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n\r\nhello",
    "chunked": b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    b"3;ext\r\nabc\r\n1\r\nd\r\n0\r\nX-Trailer: 1\r\n\r\n",
    "HTTP/1.0": b"GET / HTTP/1.0\r\n\r\n",
    "OWS": b"GET / HTTP/1.1\r\nHost:example  \r\nX-Empty:\r\n\r\n",
    "pipelined": b"GET /1 HTTP/1.1\r\n" + HOST + b"\r\n"
    b"POST /2 HTTP/1.1\r\n" + HOST + b"Content-Length: 2\r\n\r\nhi"
    b"GET /3 HTTP/1.1\r\n" + HOST + b"\r\n",
}


@pytest.mark.parametrize("name", REQUESTS)
@pytest.mark.parametrize("step", [None, 1, 7])
def test_requests_read_as_h11_reads_them(name: str, step: int | None) -> None:
    wire = REQUESTS[name]
    assert read_requests(in_steps(wire, step)) == h11_requests(wire)


def test_what_the_head_says_about_the_connection() -> None:
    reader = http1.RequestReader(http1.MAX_HEAD_BYTES)
    reader.receive(
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    )
    head = reader.read_head()
    assert head is not None
    assert (head.has_body, head.expect_continue, reader.keep_alive) == (True, True, True)
    reader = http1.RequestReader(http1.MAX_HEAD_BYTES)
    reader.receive(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n")
    head = reader.read_head()
    assert head is not None
    assert (head.has_body, head.expect_continue, reader.keep_alive) == (False, False, False)
    reader = http1.RequestReader(http1.MAX_HEAD_BYTES)
    reader.receive(b"GET / HTTP/1.0\r\n\r\n")
    assert reader.read_head() is not None
    assert not reader.keep_alive


def test_http2_prior_knowledge_is_recognised_and_the_rest_handed_over() -> None:
    reader = http1.RequestReader(http1.MAX_HEAD_BYTES)
    reader.receive(b"\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00")
    head = reader.read_head()
    assert head is not None
    assert (head.method, head.target, head.version) == (b"PRI", b"*", b"2.0")
    assert reader.rest() == b"SM\r\n\r\n\x00\x00"


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400),
        (b"G T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),  # folded
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 3\r\n\r\n",
            400,
        ),
        # a vertical tab or a form feed around a framing value (h11: 400 too)
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0c\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\x0b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 70_000, 431),  # before its end
    ],
)
def test_a_request_head_that_cannot_be_read_says_which_status(wire: bytes, status: int) -> None:
    reader = http1.RequestReader(http1.MAX_HEAD_BYTES)
    reader.receive(wire)
    with pytest.raises(http1.RemoteProtocolError) as caught:
        reader.read_head()
    assert caught.value.status == status


@pytest.mark.parametrize(
    "body",
    [
        b"2\nxx\r\n0\r\n\r\n",  # a bare LF after a chunk size
        b"2;\nxx\r\n0\r\n\r\n",  # ... after an empty extension
        b"2\r\nxx\r\n0\n\n",  # ... after the last chunk
        b"2\r\nxx\r\n0\r\n\n",  # ... as the blank line
        b"2\r\nxx\r\n0\r\nX: 1\n\r\n",  # ... in a trailer
        b"2\r\nxx\n0\r\n\r\n",  # ... after a chunk's data
    ],
)
def test_chunked_framing_takes_crlf_only(body: bytes) -> None:
    # Where parsers in a chain disagree on where a chunk ends, requests can be smuggled. (h11
    # refuses a bare LF after a size or data; after the last chunk it waits for more, and in
    # the trailers it accepts one.)
    wire = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    reader = http1.RequestReader(http1.MAX_HEAD_BYTES)
    reader.receive(wire)
    assert reader.read_head() is not None
    with pytest.raises(http1.RemoteProtocolError):
        while reader.read_body():
            pass


# -- response heads ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "http10", "keep_alive", "written"),
    [
        (  # sized: its length is kept
            200,
            [(b"content-type", b"application/json"), (b"content-length", b"12")],
            False,
            True,
            (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n",
                BODY_LENGTH,
                12,
                True,
            ),
        ),
        (  # unknown length: chunked, and the framing the app gave dropped
            200,
            [(b"transfer-encoding", b"gzip"), (b"connection", b"keep-alive"), (b"x-a", b"1")],
            False,
            False,
            (
                b"HTTP/1.1 200 OK\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n"
                b"connection: close\r\n\r\n",
                BODY_CHUNKED,
                0,
                False,
            ),
        ),
        (  # the app said close: it closes
            413,
            [(b"Connection", b"Close"), (b"content-length", b"0")],
            False,
            True,
            (
                b"HTTP/1.1 413 Request Entity Too Large\r\ncontent-length: 0\r\n"
                b"connection: close\r\n\r\n",
                BODY_LENGTH,
                0,
                False,
            ),
        ),
        (  # an HTTP/1.0 client: the body up to the close
            200,
            [],
            True,
            True,
            (b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n", BODY_UNTIL_CLOSE, 0, False),
        ),
    ],
)
def test_response_heads(
    status: int,
    headers: list[tuple[bytes, bytes]],
    http10: bool,
    keep_alive: bool,
    written: tuple[bytes, int, int, bool],
) -> None:
    assert (
        http1.response_head(
            status, headers, head_request=False, http10=http10, keep_alive=keep_alive
        )
        == written
    )


@pytest.mark.parametrize(("status", "head_request"), [(204, False), (304, False), (200, True)])
def test_responses_without_a_body(status: int, head_request: bool) -> None:
    _, framing, _, keep = http1.response_head(
        status, [], head_request=head_request, http10=False, keep_alive=True
    )
    assert (framing, keep) == (BODY_NONE, True)


def test_a_response_header_cannot_smuggle_another() -> None:
    with pytest.raises(http1.LocalProtocolError, match="x-evil"):
        http1.response_head(
            200,
            [(b"x-evil", b"1\r\nset-cookie: a=b")],
            head_request=False,
            http10=False,
            keep_alive=True,
        )
    with pytest.raises(http1.LocalProtocolError, match="Content-Length"):
        http1.response_head(
            200, [(b"content-length", b"x")], head_request=False, http10=False, keep_alive=True
        )


def test_an_unknown_status_has_an_empty_reason() -> None:
    head = http1.informational_head(199, [(b"x", b"1")])
    assert head == b"HTTP/1.1 199 \r\nx: 1\r\n\r\n"


# -- property: any well-formed request, cut anywhere -------------------------------------------

_names = st.from_regex(rb"[a-z][a-z0-9-]{0,15}", fullmatch=True).filter(
    lambda name: (
        name not in (b"content-length", b"transfer-encoding", b"connection", b"host", b"expect")
    )
)
_values = st.from_regex(rb"[!-~]([ !-~]{0,30}[!-~])?", fullmatch=True)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    wire = b""
    for _ in range(draw(st.integers(1, 3))):
        method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE"]))
        target = b"/" + draw(st.from_regex(rb"[a-z0-9/?=&%]{0,20}", fullmatch=True))
        headers = b"".join(
            b"%b: %b\r\n" % pair for pair in draw(st.lists(st.tuples(_names, _values), max_size=4))
        )
        body = draw(st.binary(max_size=100))
        if draw(st.booleans()) and body:
            pieces = [body[i : i + 17] for i in range(0, len(body), 17)]
            framed = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
            framing = b"Transfer-Encoding: chunked\r\n"
        else:
            framed, framing = body, b"Content-Length: %d\r\n" % len(body)
        wire += b"%b %b HTTP/1.1\r\n%b%b%b\r\n%b" % (method, target, HOST, headers, framing, framed)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(wire)), max_size=8))))
    return wire, cuts


@settings(max_examples=200, deadline=None)
@given(requests())
def test_any_requests_cut_anywhere_read_as_h11_reads_them(case: tuple[bytes, list[int]]) -> None:
    wire, cuts = case
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True) if b > a]
    assert read_requests(pieces) == h11_requests(wire)
