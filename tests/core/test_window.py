from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuitd.core.window import SlidingWindow


def window() -> SlidingWindow:
    return SlidingWindow(30.0, 10)  # buckets of exactly 3 s


@pytest.mark.parametrize(
    ("added_at", "read_at", "expected"),
    [
        (0.0, 0.0, (1, 1)),
        (0.0, 29.999, (1, 1)),  # a boundary stamp is in until span - ε...
        (0.0, 30.0, (0, 0)),  # ...and out at exactly t + span
        (2.999, 29.999, (1, 1)),  # a stamp late in its bucket leaves with its bucket
        (2.999, 30.0, (0, 0)),  # counted for just over span - width
        (3.0, 32.999, (1, 1)),  # the next bucket
        (3.0, 33.0, (0, 0)),
        (1000.5, 1028.999, (1, 1)),  # large clocks: bucket [999, 1002) leaves at 1029
        (1000.5, 1029.0, (0, 0)),
        (-4.0, 23.999, (1, 1)),  # negative clocks: bucket [-6, -3) (floor, not truncation)
        (-4.0, 24.0, (0, 0)),
    ],
)
def test_edges(added_at: float, read_at: float, expected: tuple[int, int]) -> None:
    w = window()
    w.add(added_at, 1, 1)
    assert w.totals(read_at) == expected


def test_index_is_exact_for_decimal_widths() -> None:
    w = SlidingWindow(1.0, 10)
    assert 0.3 // 0.1 == 2.0  # why the index is not computed as now // width
    assert w.index(0.3) == 3
    w.add(0.3, 1, 0)
    assert w.totals(1.299) == (1, 0)
    assert w.totals(1.3) == (0, 0)


def test_buckets_expire_one_at_a_time() -> None:
    w = window()
    for t in range(10):
        w.add(t * 3.0, 1, t)  # one call per bucket, t failures
    assert w.totals(29.0) == (10, sum(range(10)))
    for t in range(1, 11):
        assert w.totals(27.0 + t * 3.0) == (10 - t, sum(range(t, 10)))


def test_jump_over_a_whole_span_clears_everything() -> None:
    w = window()
    w.add(0.0, 5, 2)
    w.add(28.0, 1, 1)
    assert w.totals(1000.0) == (0, 0)
    w.add(1000.0, 1, 0)
    assert w.totals(1000.0) == (1, 0)


def test_add_in_the_past() -> None:
    w = window()
    w.add(50.0, 1, 0)
    w.add(25.0, 1, 1)  # bucket [24, 27) is still in the window at 50 (window from 24)
    assert w.totals(50.0) == (2, 1)
    w.add(20.0, 1, 1)  # bucket [18, 21) is not: dropped
    assert w.totals(50.0) == (2, 1)
    assert w.totals(26.0) == (2, 1)  # reading in the past does not move the window back
    assert w.totals(53.999) == (2, 1)
    assert w.totals(54.0) == (1, 0)  # the 25.0 stamp leaves with bucket [24, 27)


def test_clear() -> None:
    w = window()
    w.add(0.0, 3, 3)
    w.clear()
    assert w.totals(0.0) == (0, 0)
    w.add(0.0, 1, 0)
    assert w.totals(1.0) == (1, 0)


def test_generic_counters() -> None:
    w = SlidingWindow(60.0, 6, counters=3)
    w.add(0.0, 1, 250, 7)
    w.add(11.0, 1, 100, 0)
    assert w.totals(11.0) == (2, 350, 7)
    assert w.totals(60.0) == (1, 100, 0)
    assert (w.span, w.buckets, w.width) == (60.0, 6, 10.0)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.0, 10), "span"),
        ((float("inf"), 10), "span"),
        ((float("nan"), 10), "span"),
        ((30.0, 0), "bucket"),
        ((30.0, 10, 0), "counter"),
    ],
)
def test_bad_construction(args: tuple[float, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SlidingWindow(*args)


def test_bad_amounts() -> None:
    w = window()
    with pytest.raises(ValueError, match="expected 2"):
        w.add(0.0, 1)
    with pytest.raises(ValueError, match=">= 0"):
        w.add(0.0, 1, -1)
    assert w.totals(0.0) == (0, 0)  # nothing half-applied


@given(
    st.integers(1, 12),
    st.lists(
        st.tuples(st.integers(0, 400), st.integers(0, 5), st.integers(0, 5), st.integers(0, 40)),
        max_size=60,
    ),
)
def test_matches_a_naive_window(buckets: int, ops: list[tuple[int, int, int, int]]) -> None:
    # Times in eighths of a second and a span that is a multiple of the bucket width in
    # eighths, so the float arithmetic is exact and the model below is the specification.
    width = 8  # eighths: 1 s buckets
    span = buckets * width
    w = SlidingWindow(span / 8, buckets)
    events: list[tuple[int, int, int]] = []  # (bucket, a, b)
    clock = 0
    for step, a, b, read_lag in ops:
        clock += step
        w.add(clock / 8, a, b)
        events.append((clock // width, a, b))
        read_at = clock + read_lag
        newest = read_at // width
        expected = (
            sum(a for k, a, _ in events if newest - k < buckets),
            sum(b for k, _, b in events if newest - k < buckets),
        )
        assert w.totals(read_at / 8) == expected
        clock = read_at  # time only moves forward in this model
