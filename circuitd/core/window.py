"""A time-based sliding window of fixed buckets, counting a few integers (sans-I/O).

`SlidingWindow(span, buckets, counters)` keeps `counters` running sums (the breaker counts
calls and failures; a rate limiter counts requests and tokens) over the last `span` seconds, in
`buckets` buckets of `width = span / buckets` seconds each. Time comes in as `now` (monotonic
seconds); every operation is O(1) amortised: buckets live in a ring indexed by their absolute
number `floor(now * buckets / span)`, a bucket is zeroed lazily when the window moves past it,
and the totals are kept up to date instead of summed on each read.

Edges, exactly: bucket `k` holds the instants `[k * width, (k + 1) * width)`. At `now`, in
bucket `k`, the window is buckets `k - buckets + 1 .. k`, so an amount added at `t` is counted
until, and not at, `(floor(t / width) + buckets) * width`: one added at a bucket boundary `t`
is in at `t + span - ε` and out at `t + span`; one added later in its bucket leaves at that
same instant, so it is counted for between `span - width` (exclusive) and `span` seconds. The
index is computed as `now * buckets / span` rather than `now // width`, because `0.3 // 0.1` is
2.0 in floats while `0.3 * 10 / 1` is 3.0.

The window never moves backwards: `totals` at an earlier `now` than seen before returns the
current totals, and an `add` stamped earlier goes into its own bucket if that is still in the
window, else it is dropped (it would already have expired).

Amounts must be >= 0, so that a total is never negative and an all-zero total means all-zero
buckets (a corrected estimate is added as its own positive amount, not as a negative one).
"""

from __future__ import annotations

import math

__all__ = ["SlidingWindow"]


class SlidingWindow:
    __slots__ = ("_buckets", "_counters", "_counts", "_head", "_span", "_totals")

    def __init__(self, span: float, buckets: int, counters: int = 2) -> None:
        if not (math.isfinite(span) and span > 0):
            raise ValueError(f"window span must be a finite number of seconds > 0, got {span!r}")
        if buckets < 1:
            raise ValueError(f"window needs at least 1 bucket, got {buckets!r}")
        if counters < 1:
            raise ValueError(f"window needs at least 1 counter, got {counters!r}")
        self._span = float(span)
        self._buckets = buckets
        self._counters = counters
        self._counts = [[0] * counters for _ in range(buckets)]  # ring, slot = index % buckets
        self._totals = [0] * counters
        self._head: int | None = None  # absolute index of the newest bucket seen

    @property
    def span(self) -> float:
        return self._span

    @property
    def buckets(self) -> int:
        return self._buckets

    @property
    def width(self) -> float:
        return self._span / self._buckets

    def index(self, now: float) -> int:
        """The absolute number of the bucket that holds `now`."""
        return math.floor(now * self._buckets / self._span)

    def add(self, now: float, *amounts: int) -> None:
        """Add one amount per counter, e.g. `add(now, 1, 0)` for a call that did not fail."""
        if len(amounts) != self._counters:
            raise ValueError(f"expected {self._counters} amounts, got {len(amounts)}")
        if min(amounts) < 0:
            raise ValueError(f"window amounts must be >= 0, got {amounts!r}")
        index = self.index(now)
        head = self._head
        if head is None or index > head:
            self._advance(index)
        elif head - index >= self._buckets:
            return  # stamped before the window's oldest bucket: already expired
        row = self._counts[index % self._buckets]
        totals = self._totals
        for i, amount in enumerate(amounts):
            row[i] += amount
            totals[i] += amount

    def totals(self, now: float) -> tuple[int, ...]:
        """The sums over the window at `now`, one per counter."""
        head = self._head
        if head is not None:
            index = self.index(now)
            if index > head:
                self._advance(index)
        return tuple(self._totals)

    def clear(self) -> None:
        for row in self._counts:
            row[:] = [0] * self._counters
        self._totals[:] = [0] * self._counters
        self._head = None

    def _advance(self, index: int) -> None:
        # Move the head to `index`, zeroing the buckets it passes. Each bucket is zeroed once
        # per pass of the ring, so the cost is O(1) amortised; a jump of a whole span or more
        # clears everything at once (nothing to do if the totals are already zero).
        head = self._head
        if head is None or index - head >= self._buckets:
            if any(self._totals):
                self.clear()
        else:
            totals = self._totals
            n = self._buckets
            for k in range(head + 1, index + 1):
                row = self._counts[k % n]
                for i, amount in enumerate(row):
                    if amount:
                        totals[i] -= amount
                        row[i] = 0
        self._head = index
