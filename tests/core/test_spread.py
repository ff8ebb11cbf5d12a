from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuitd.core.spread import CHURN_WINDOW_S, CLOSED, Turnover, churning, loads, place


@pytest.mark.parametrize(
    ("me", "counts", "expected"),
    [
        (0, [0, 0, 0], 0),  # the least busy already (ties stay where they landed)
        (1, [0, 0, 0], 1),
        (0, [1, 0, 0], 1),  # one more than the least: exact at a few connections
        (0, [3, 1, 1], 1),  # ... to the first of the least busy
        (2, [3, 1, 1], 2),
        (0, [1, 1, 1], 0),
        (0, [8, 7, 8], 0),  # within an eighth of its own: the hash is close enough
        (0, [9, 7, 8], 1),
        (0, [16, 14, 20], 0),
        (0, [16, 13, 20], 1),
        (0, [1, CLOSED, CLOSED], 0),  # a worker that takes none never gets one
        (0, [5, CLOSED + 0, 4], 2),
        (0, [CLOSED + 3, CLOSED, CLOSED], 0),  # all draining: nobody to hand to
        (1, [CLOSED, 2, 0], 2),
    ],
)
def test_place(me: int, counts: list[int], expected: int) -> None:
    assert place(me, counts) == expected


def test_loads_sum_what_each_worker_gave_less_what_was_served() -> None:
    # Worker 0 kept 3 and gave 2 to worker 1; worker 1 kept 1; worker 2 gave 1 to worker 0.
    given_ = [3, 2, 0, 0, 1, 0, 1, 0, 0]
    assert loads(given_, [1, 0, 0], [0, 0, 0]) == [3, 3, 0]
    assert loads(given_, [1, 3, 0], [0, 0, 1]) == [3, 0, CLOSED]


def test_connections_all_landing_on_one_worker_end_even() -> None:
    """The worst the kernel's hash can do: 32 connections to one of 16 workers."""
    n = 16
    given_ = [0] * (n * n)
    done, shut = [0] * n, [0] * n
    for _ in range(32):
        target = place(0, loads(given_, done, shut))
        given_[target] += 1  # worker 0's row
    assert loads(given_, done, shut) == [2] * n


@given(st.lists(st.integers(0, 7), min_size=1, max_size=200))
def test_spread_within_one_while_few(landings: list[int]) -> None:
    """Wherever connections land, each is served where the counts stay within one of each
    other while every worker has at most eight (within an eighth of its own beyond)."""
    n = 8
    given_ = [0] * (n * n)
    done, shut = [0] * n, [0] * n
    for me in landings:
        target = place(me, loads(given_, done, shut))
        given_[me * n + target] += 1
        counts = loads(given_, done, shut)
        assert max(counts) - min(counts) <= max(1, max(counts) // 8 + 1)


@pytest.mark.parametrize(
    ("closed", "held", "expected"),
    [
        (0, 0, False),
        (2, 0, False),
        (3, 0, True),  # more than came and went while nothing stays open
        (10, 4, False),
        (11, 4, True),
        (0, 32, False),  # a pool opening: nothing closed
    ],
)
def test_churning(closed: int, held: int, expected: bool) -> None:
    assert churning(closed, held) is expected


def test_turnover_counts_what_closed_over_the_last_one_to_two_windows() -> None:
    turnover = Turnover()
    w = CHURN_WINDOW_S
    assert turnover.closed(100.0, 50) == 0  # the first reading
    assert turnover.closed(100.0 + w / 2, 60) == 10
    assert turnover.closed(100.0 + w, 70) == 20  # a new reading at 70; still from 50
    assert turnover.closed(100.0 + 1.5 * w, 75) == 25
    assert turnover.closed(100.0 + 2 * w, 80) == 10  # from the reading at 70
    assert turnover.closed(100.0 + 10 * w, 90) == 0  # after a quiet spell: nothing lately
