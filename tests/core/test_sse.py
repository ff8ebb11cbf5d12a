from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from circuitd.core.sse import DONE, SSEDecoder, SSEError, SSEEvent, encode_event


def decode(raw: bytes, **kw: int) -> list[SSEEvent]:
    decoder = SSEDecoder(**kw)
    events = decoder.feed(raw)
    decoder.end()
    return events


def decode_split(chunks: list[bytes], **kw: int) -> list[SSEEvent]:
    decoder = SSEDecoder(**kw)
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    decoder.end()
    return events


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(raw)) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]


E = SSEEvent

SPEC_CASES: list[tuple[str, bytes, list[SSEEvent]]] = [
    ("plain", b"data: hello\n\n", [E("hello")]),
    ("no space after colon", b"data:hello\n\n", [E("hello")]),
    ("only one space stripped", b"data:  two\n\n", [E(" two")]),
    ("multi-line data joined by LF", b"data: a\ndata: b\n\n", [E("a\nb")]),
    ("CRLF endings", b"data: a\r\ndata: b\r\n\r\n", [E("a\nb")]),
    ("CR endings", b"data: a\rdata: b\r\r", [E("a\nb")]),
    ("mixed endings", b"data: a\r\ndata: b\rdata: c\n\n", [E("a\nb\nc")]),
    ("named event", b"event: ping\ndata: x\n\n", [E("x", "ping")]),
    ("event name resets", b"event: a\ndata: 1\n\ndata: 2\n\n", [E("1", "a"), E("2")]),
    ("empty event name is message", b"event:\ndata: x\n\n", [E("x")]),
    ("comment ignored", b": keep-alive\ndata: x\n\n", [E("x")]),
    ("comment-only block", b": ping\n\n", []),
    ("no data: not dispatched", b"event: a\n\ndata: b\n\n", [E("b")]),
    ("field without colon", b"data\n\n", [E("")]),
    ("empty data line dispatches", b"data:\n\n", [E("")]),
    ("two empty data lines", b"data\ndata\n\n", [E("\n")]),
    ("unknown field ignored", b"foo: bar\ndata: x\n\n", [E("x")]),
    ("field name is exact", b"data : x\nDATA: y\n\n", []),
    ("colon in value kept", b'data: {"a": "b:c"}\n\n', [E('{"a": "b:c"}')]),
    ("id persists", b"id: 7\ndata: a\n\ndata: b\n\n", [E("a", id="7"), E("b", id="7")]),
    ("empty id resets", b"id: 7\ndata: a\n\nid\ndata: b\n\n", [E("a", id="7"), E("b", id="")]),
    ("id with NUL ignored", b"id: 1\n\nid: 2\x003\ndata: a\n\n", [E("a", id="1")]),
    ("retry", b"retry: 1500\ndata: a\n\ndata: b\n\n", [E("a", retry=1500), E("b")]),
    ("bad retry ignored", b"retry: 15s\ndata: a\n\n", [E("a")]),
    ("non-ASCII digits retry ignored", "retry: ١٢\ndata: a\n\n".encode(), [E("a")]),
    ("BOM stripped", b"\xef\xbb\xbfdata: a\n\n", [E("a")]),
    ("only the first BOM", b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n", []),
    ("utf-8", "data: héllo 世界 🙂\n\n".encode(), [E("héllo 世界 🙂")]),
    ("DONE", DONE, [E("[DONE]")]),
    ("leading blank lines", b"\n\n\ndata: a\n\n", [E("a")]),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES]
)
def test_spec_cases(raw: bytes, expected: list[SSEEvent]) -> None:
    assert decode(raw) == expected
    # ... and the same byte by byte, which exercises every split (CR|LF, BOM, UTF-8).
    assert decode_split([raw[i : i + 1] for i in range(len(raw))]) == expected


def test_events_are_returned_by_the_feed_that_completes_them() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\ndata: b") == [E("a")]
    assert decoder.feed(b"\n\n") == [E("b")]
    decoder.end()


@pytest.mark.parametrize(
    "batch",
    [
        b"data: a\n\ndata: b\n\ndata: [DONE]\n\n",  # whole one-line events: the fast path
        b"data: a\n\nevent: x\ndata: b\n\n",  # an event line: the line-by-line walk
        b"data: a\n\ndata:b\n\n",  # no space after the colon
        b"data: a\n\n\n\ndata: b\n\n",  # a blank line between
        b"data: a\ndata: b\n\ndata: c\n\n",  # a two-line event
        b"data: a\n\n: comment\n\n",
    ],
)
def test_a_batch_of_events_reads_as_its_lines_one_by_one(batch: bytes) -> None:
    whole, by_byte = SSEDecoder(), SSEDecoder()
    whole.feed(b"id: 9\ndata: first\n\n")  # an id persists into the batch's events
    by_byte.feed(b"id: 9\ndata: first\n\n")
    assert whole.feed(batch) == [
        e for i in range(len(batch)) for e in by_byte.feed(batch[i : i + 1])
    ]
    whole.end()


def test_a_batch_over_the_bounds_is_refused_as_one_event_would_be() -> None:
    with pytest.raises(SSEError):
        SSEDecoder(max_event_bytes=3).feed(b"data: ab\n\ndata: abcd\n\n")
    with pytest.raises(SSEError):
        SSEDecoder(max_line_bytes=8).feed(b"data: ab\n\ndata: abcd\n\n")
    assert SSEDecoder(max_event_bytes=3, max_line_bytes=8).feed(b"data: ab\n\ndata: ab\n\n")


def test_cr_at_chunk_end_dispatches_without_waiting() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [E("a")]
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [E("b")]  # that LF closed the CR, no blank line
    decoder.end()


def test_retry_is_also_kept_on_the_decoder() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: 10\n\n") == []
    assert decoder.retry == 10


@pytest.mark.parametrize(
    "raw",
    [b"data: a", b"data: a\n", b"event: x\n", b"data: a\r", b"\xef\xbb"],
    ids=["partial line", "no blank line", "event only", "cr-ended, no blank", "partial BOM"],
)
def test_end_mid_event_raises(raw: bytes) -> None:
    decoder = SSEDecoder()
    decoder.feed(raw)
    with pytest.raises(SSEError):
        decoder.end()


@pytest.mark.parametrize("raw", [b"", b"data: a\n\n", b": comment\n", b"id: 3\n", b"retry: 5\n"])
def test_end_between_events_is_clean(raw: bytes) -> None:
    decoder = SSEDecoder()
    decoder.feed(raw)
    decoder.end()


@pytest.mark.parametrize(
    "raw",
    [b"data: \xff\n\n", b"data: \xc3\n\n", b": \xff\n", b"event: \xfe\ndata: x\n\n", b"\xff: x\n"],
)
def test_invalid_utf8_raises(raw: bytes) -> None:
    with pytest.raises(SSEError, match="UTF-8"):
        decode(raw)


def test_multibyte_character_split_across_feeds() -> None:
    raw = "data: €\n\n".encode()
    assert decode_split([raw[:7], raw[7:8], raw[8:]]) == [E("€")]


@pytest.mark.parametrize("n", [16, 17])
def test_line_limit_is_exact(n: int) -> None:
    raw = b"data: " + b"x" * (n - 6) + b"\n\n"
    for chunks in ([raw], [raw[:10], raw[10:]], [raw[i : i + 1] for i in range(len(raw))]):
        if n <= 16:
            assert decode_split(chunks, max_line_bytes=16) == [E("x" * (n - 6))]
        else:
            with pytest.raises(SSEError, match="line longer"):
                decode_split(chunks, max_line_bytes=16)


def test_partial_line_over_limit_raises_before_its_end() -> None:
    decoder = SSEDecoder(max_line_bytes=8)
    decoder.feed(b"data: ab")
    with pytest.raises(SSEError, match="line longer"):
        decoder.feed(b"c")


def test_event_data_limit() -> None:
    raw = b"data: 1234\ndata: 5678\n\n"  # 4 + 1 + 4 + 1 = 10 bytes counted
    assert decode(raw, max_event_bytes=10) == [E("1234\n5678")]
    with pytest.raises(SSEError, match="event data"):
        decode(raw, max_event_bytes=9)
    assert decode(b"data: 123456789\n\n", max_event_bytes=10) == [E("123456789")]
    with pytest.raises(SSEError, match="event data"):
        decode(b"data: 1234567890\n\n", max_event_bytes=10)


def test_huge_retry_is_ignored_not_an_error() -> None:
    assert decode(b"retry: " + b"9" * 5000 + b"\ndata: a\n\n") == [E("a")]


# -- encoder -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "event", "raw"),
    [
        ("hi", None, b"data: hi\n\n"),
        (b'{"a":1}', None, b'data: {"a":1}\n\n'),
        ("a\nb", None, b"data: a\ndata: b\n\n"),
        ("a\r\nb\rc", None, b"data: a\ndata: b\ndata: c\n\n"),
        ("", None, b"data: \n\n"),
        ("x", "error", b"event: error\ndata: x\n\n"),
        ("é", None, "data: é\n\n".encode()),
    ],
)
def test_encode_event(data: str | bytes, event: str | None, raw: bytes) -> None:
    assert encode_event(data, event=event) == raw


def test_encode_rejects_what_it_cannot_write() -> None:
    with pytest.raises(SSEError):
        encode_event("x", event="a\nb")
    with pytest.raises(SSEError):
        encode_event("\ud800")
    with pytest.raises(SSEError):
        encode_event("x", event="\ud800")


# -- properties --------------------------------------------------------------------------------

# Text without CR: the decoder maps every line break to LF, so CR cannot round-trip.
texts = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r"), max_size=40)
names = st.one_of(
    st.none(),
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), min_size=1),
)
events = st.lists(st.tuples(texts, names), max_size=8)
cuts = st.lists(st.integers(min_value=0, max_value=2000), max_size=30)


@settings(max_examples=300)
@given(events, cuts, st.sampled_from([b"\n", b"\r\n", b"\r"]), st.booleans())
def test_any_split_gives_the_same_events(
    evs: list[tuple[str, str | None]], cut: list[int], eol: bytes, bom: bool
) -> None:
    raw = b"".join(encode_event(d, event=n) for d, n in evs)
    raw = raw.replace(b"\n", eol)
    if bom:
        raw = b"\xef\xbb\xbf" + raw
    expected = [E(d, n or "message") for d, n in evs]
    assert decode(raw) == expected
    assert decode_split(split_at(raw, cut)) == expected


def outcome(chunks: list[bytes]) -> list[SSEEvent] | str:
    try:
        return decode_split(chunks, max_line_bytes=64, max_event_bytes=128)
    except SSEError:
        return "error"


sse_ish = st.lists(
    st.sampled_from(
        [
            *(b"data", b"data:", b": ", b"event:", b"id:", b"retry: 12", b" ", b"x", b"9" * 30),
            *(b"\r", b"\n", b"\r\n", b"\xe2\x82", b"\xac", b"\xef\xbb\xbf", b"\x00", b"\xff"),
        ]
    ),
    max_size=60,
).map(b"".join)


@settings(max_examples=500)
@given(st.one_of(st.binary(max_size=300), sse_ish), cuts)
def test_garbage_raises_only_sse_error_and_any_split_agrees(raw: bytes, cut: list[int]) -> None:
    # outcome() lets only SSEError through; anything else fails the test.
    assert outcome(split_at(raw, cut)) == outcome([raw])


def data_outcome(chunks: list[bytes], data_only: bool) -> list[str] | str:
    decoder = SSEDecoder(max_line_bytes=64, max_event_bytes=128)
    try:
        if data_only:
            got = [d for chunk in chunks for d in decoder.feed_data(chunk)]
        else:
            got = [e.data for chunk in chunks for e in decoder.feed(chunk)]
        decoder.end()
    except SSEError:
        return "error"
    return got


canonical = st.lists(
    st.text(st.characters(blacklist_characters="\r\n"), max_size=70).map(
        lambda text: b"data: " + text.encode("utf-8", "surrogatepass") + b"\n\n"
    ),
    max_size=8,
).map(b"".join)


# Chunks that start and end like whole data events but hold other lines in between.
lookalike = st.lists(
    st.sampled_from(
        [
            *(b"data: x\n\n", b"data: a\ndata: b\n\n", b"event: e\ndata: y\n\n", b": c\n\n"),
            *(b"data: c\r\n\r\n", b"data: z\r\n\n", b"id: 1\n\n", b"data:q\n\n", b"\n"),
        ]
    ),
    min_size=1,
    max_size=6,
).map(lambda blocks: b"data: first\n\n" + b"".join(blocks) + b"data: last\n\n")


@settings(max_examples=500)
@given(st.one_of(canonical, lookalike, sse_ish, st.binary(max_size=300)), cuts)
@example(b"data: " + b"x" * 70 + b"\n\n", [])  # a line over the bound
@example(b"data: a\n\ndata: b\ndata: c\n\n", [])  # a two-line event
@example(b"data: a\r\n\r\ndata: b\n\n", [])  # a CR
def test_feed_data_gives_the_data_of_the_events_feed_gives(raw: bytes, cut: list[int]) -> None:
    # Whole one-line data events take feed_data's own path (bounds and bad UTF-8 included);
    # anything else goes through feed. Either way: the same data, or the same error.
    chunks = split_at(raw, cut)
    assert data_outcome(chunks, data_only=True) == data_outcome(chunks, data_only=False)
    assert data_outcome([raw], data_only=True) == data_outcome([raw], data_only=False)
