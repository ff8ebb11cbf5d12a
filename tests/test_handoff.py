"""`circuitd.handoff` on real sockets: two workers' seats in one process, every connection
arriving at worker 0's socket (the kernel's hash at its worst), each worker serving what its
listeners give it."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from circuitd.core.spread import CLOSED, loads
from circuitd.handoff import Inbox, Seat, Spreading, seats
from circuitd.server import listening_socket


def counts(seat: Seat) -> list[int]:
    return loads(seat.given[:], seat.done[:], seat.shut[:])


async def serve(seat: Seat, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """A worker: answers each message with its index, until the client closes."""

    async def handler(stream: trio.SocketStream) -> None:
        try:
            async with stream:
                while data := await stream.receive_some(100):
                    await stream.send_all(b"%d:%b" % (seat.index, data))
        finally:
            seat.served()

    # A clock that stands still: what counts as "lately" (`core.spread.Turnover`) is then
    # everything since the start, whatever the machine's speed.
    listeners = [Spreading(seat, clock=lambda: 0.0), Inbox(seat)]
    await trio.serve_listeners(handler, listeners, task_status=task_status)


@asynccontextmanager
async def two_workers(
    *, open_both: bool = True, serve_both: bool = True
) -> AsyncIterator[list[Seat]]:
    pair = seats([listening_socket("127.0.0.1", 0, reuse_port=False) for _ in range(2)])
    try:
        async with trio.open_nursery() as nursery:
            for seat in pair if serve_both else pair[:1]:
                await nursery.start(serve, seat)
            pair[0].open()
            if open_both:
                pair[1].open()
            yield pair
            nursery.cancel_scope.cancel()
    finally:
        for seat in pair:
            seat.release()
        for outbox in pair[0].outboxes:
            outbox.close()


async def served_by(seat: Seat, connections: int) -> tuple[list[trio.SocketStream], Counter[int]]:
    """`connections` to `seat`'s socket, each asked once which worker serves it."""
    port = seat.listening.getsockname()[1]
    streams, workers = [], Counter[int]()
    for _ in range(connections):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"hi")
        index, _, echo = (await stream.receive_some(100)).partition(b":")
        assert echo == b"hi"
        workers[int(index)] += 1
        streams.append(stream)
    return streams, workers


async def test_connections_to_one_worker_are_shared_and_counted_until_closed() -> None:
    async with two_workers() as (first, second):
        streams, workers = await served_by(first, 6)
        assert workers == {0: 3, 1: 3}
        assert counts(first) == [3, 3]
        for stream in streams:  # the handed-on ones carry on as any other
            await stream.send_all(b"again")
            assert (await stream.receive_some(100)).endswith(b":again")
            await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert counts(second) == [0, 0]


async def test_connections_that_come_and_go_stay_where_they_land() -> None:
    async with two_workers() as (first, _):
        kept, workers = await served_by(first, 1)  # one that stays open, on worker 0
        landed = Counter[int]()
        for _ in range(30):  # then one connection per request, each closed before the next
            [stream], workers = await served_by(first, 1)
            await stream.aclose()
            await trio.testing.wait_all_tasks_blocked()  # its server has returned
            landed += workers
        # Worker 1 serves fewer, so they go to it until more have closed (5) than twice
        # the one held open + 2: from then on each stays where it landed.
        assert landed == {1: 5, 0: 25}
        await kept[0].aclose()


async def test_a_worker_taking_no_connections_gets_none() -> None:
    async with two_workers(open_both=False) as (first, second):
        streams, workers = await served_by(first, 3)
        assert workers == {0: 3}
        assert counts(first) == [3, CLOSED]
        second.open()
        more, workers = await served_by(first, 3)
        assert workers == {1: 3}  # it catches up
        second.close()  # draining
        last, workers = await served_by(first, 1)
        assert workers == {0: 1}
        for stream in streams + more + last:
            await stream.aclose()


async def test_a_hand_off_that_fails_is_served_where_it_was_accepted() -> None:
    async with two_workers(serve_both=False) as (first, second):
        second.inbox.close()  # (a worker gone): nothing can be sent to it
        streams, workers = await served_by(first, 3)
        assert workers == {0: 3}
        assert counts(first) == [3, 0]
        for stream in streams:
            await stream.aclose()


async def test_a_full_inbox_refuses_at_once_and_the_connection_stays() -> None:
    """A worker that does not read its inbox (busy, stuck) must not stall the others: with
    its queue full, a hand-off is refused without waiting, and the accepting worker serves
    the connection itself."""
    pair = seats([listening_socket("127.0.0.1", 0, reuse_port=False) for _ in range(2)])
    first, second = pair
    first.open()
    second.open()
    busy = 1_000_000
    first.given[0] = busy  # worker 0 serves that many already: worker 1 stays the least busy
    held: list[socket.socket] = []
    try:
        handed = 0
        with trio.fail_after(30):  # a guard against a hang, not a timing assertion

            def hand_until_refused() -> int:
                for sent in range(10_000):
                    ours, theirs = socket.socketpair()
                    held.append(theirs)
                    assert first.take(0.0) == 1
                    if not first.hand(1, ours):
                        held.append(ours)  # this worker's to serve
                        return sent
                raise AssertionError("never refused")

            handed = await trio.to_thread.run_sync(hand_until_refused, abandon_on_cancel=True)
        assert handed > 0
        assert counts(first) == [busy + 1, handed]  # the refused one counted where it stays
    finally:
        for sock in held:
            sock.close()
        for seat in pair:
            seat.release()
        for outbox in first.outboxes:
            outbox.close()
