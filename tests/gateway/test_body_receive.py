"""`BodyReceive`, the request body's `receive`, on circuitd's own `Inbox` queue."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from circuitd.errors import RequestTimeout
from circuitd.gateway.asgi import BodyReceive
from circuitd.hypercorn_exchange import Inbox

SCOPE = {"type": "http", "headers": [(b"content-length", b"2")]}


async def test_a_body_already_here_is_taken_without_a_schedule_point() -> None:
    inbox = Inbox(limit=4)
    inbox.put_nowait({"type": "http.request", "body": b"{}", "more_body": False})
    receive = BodyReceive(inbox.receive, SCOPE, 1024, 30.0, trio.current_time())
    with trio.testing.assert_no_checkpoints():  # the call runs on to its upstream request
        message = await receive()
    assert (message["body"], receive.done, receive.received) == (b"{}", True, 2)


async def test_a_body_still_to_come_is_waited_for_until_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = Inbox(limit=4)
    receive = BodyReceive(inbox.receive, SCOPE, 1024, 30.0, trio.current_time())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(inbox.put, {"type": "http.request", "body": b"{", "more_body": True})
        assert (await receive())["body"] == b"{"
    assert not receive.done
    with pytest.raises(RequestTimeout):
        await receive()  # the rest never comes
    assert trio.current_time() == pytest.approx(30.0)
