"""Which worker serves a new connection: the one that accepted it, unless another serves
clearly fewer.

The kernel spreads new connections over the workers' SO_REUSEPORT sockets by a hash of their
addresses: even over many connections, but not over the few long-lived ones that client pools
and load balancers keep. 32 connections over 16 workers left one to four workers with none
and another with three to seven (bench/RESULTS.md), so that one saturates while others idle. The
worker that accepted a connection hands it to the least busy one (`circuitd.handoff`) when the
difference is worth a hand-off: exact at a few connections per worker, within an eighth of its
connections at many, where the hash is close already and a hand-off per accept would only add
work to clients that do not keep their connections.
"""

from __future__ import annotations

from collections.abc import Sequence

# Added to a worker's count while it takes no connections (starting, draining): never the
# least busy one.
CLOSED = 1 << 40


def loads(given: Sequence[int], done: Sequence[int], shut: Sequence[int]) -> list[int]:
    """Each worker's open connections (+ `CLOSED` while `shut`), from what each worker has
    written alone: `given[i * n + j]`, the connections worker i accepted for worker j; `done[j]`,
    those worker j has finished serving. (One writer per number: no lock between the
    processes. A count read while another worker moves it is off by one for that moment.)"""
    n = len(done)
    return [sum(given[j::n]) - done[j] + (CLOSED if shut[j] else 0) for j in range(n)]


CHURN_WINDOW_S = 1.0


def churning(closed: int, held: int) -> bool:
    """Whether the workers' connections come and go: `closed` lately (`Turnover`) well over
    the `held` open now, all workers together — clients that open one per request. The hash
    spreads those over time by itself, and handing them on would only add to each one's
    cost (+9% CPU per request when every request was a new connection: bench/RESULTS.md).
    A pool opening its connections closes none."""
    return closed > 2 * held + 2


class Turnover:
    """How many connections the workers closed lately, from their running total: the
    difference from a reading one to two `CHURN_WINDOW_S` old (none after a quiet spell)."""

    __slots__ = ("_newer", "_older")

    def __init__(self) -> None:
        self._older: tuple[float, int] | None = None
        self._newer: tuple[float, int] | None = None

    def closed(self, now: float, done: int) -> int:
        """Of `done` connections closed so far (at `now`), those closed lately."""
        newer = self._newer
        if newer is None or now - newer[0] >= 2 * CHURN_WINDOW_S:
            self._older = self._newer = (now, done)
        elif now - newer[0] >= CHURN_WINDOW_S:
            self._older, self._newer = newer, (now, done)
        assert self._older is not None
        return done - self._older[1]


def place(me: int, counts: Sequence[int]) -> int:
    """The worker (an index into `counts`, each worker's open connections) that should serve
    a connection worker `me` has just accepted."""
    least = min(range(len(counts)), key=counts.__getitem__)
    own, fewest = counts[me], counts[least]
    if fewest >= CLOSED or own - fewest <= own // 8:  # (all closed: every worker drains)
        return me
    return least
