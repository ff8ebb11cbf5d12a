"""Which worker serves a new connection: the one that accepted it, unless another serves
clearly fewer.

The kernel spreads new connections over the workers' SO_REUSEPORT sockets by a hash of their
addresses: even over many connections, but not over the few long-lived ones that client pools
and load balancers keep. 32 connections over 16 workers leave one or two workers with none and
another with five to seven (bench/RESULTS.md), so that one saturates while others idle. The
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


def place(me: int, counts: Sequence[int]) -> int:
    """The worker (an index into `counts`, each worker's open connections) that should serve
    a connection worker `me` has just accepted."""
    least = min(range(len(counts)), key=counts.__getitem__)
    own, fewest = counts[me], counts[least]
    if fewest >= CLOSED or own - fewest <= own // 8:  # (all closed: every worker drains)
        return me
    return least
