"""`circuitd.hypercorn_exchange`: the app's queue (`Inbox`) on its own, and what differs from
hypercorn's `HTTPStream` on purpose. The exchanges themselves are compared with hypercorn's
own in tests/test_hypercorn_http1.py."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from circuitd.hypercorn_exchange import Inbox
from circuitd.hypercorn_http1 import HTTP1Protocol
from tests.test_hypercorn_http1 import HOST, UNREAD, exchange, serving


def message(n: int) -> dict[str, object]:
    return {"type": "http.request", "body": b"%d" % n, "more_body": True}


async def test_the_inbox_gives_messages_in_order_and_waits_for_the_next() -> None:
    inbox = Inbox(limit=10)
    got: list[object] = []

    async def app() -> None:
        got.extend([(await inbox.receive())["body"] for _ in range(3)])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app)
        await trio.testing.wait_all_tasks_blocked()  # the app waits: nothing has come
        inbox.put_nowait(message(1))
        inbox.put_nowait(message(2))
        await trio.testing.wait_all_tasks_blocked()
        inbox.put_nowait(message(3))
    assert got == [b"1", b"2", b"3"]
    with pytest.raises(trio.WouldBlock):
        inbox.receive_nowait()


async def test_a_full_inbox_holds_the_protocol_until_the_app_reads() -> None:
    inbox = Inbox(limit=2)
    put: list[int] = []

    async def protocol() -> None:
        for n in range(4):
            await inbox.put(message(n))
            put.append(n)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(protocol)
        await trio.testing.wait_all_tasks_blocked()
        assert put == [0, 1]  # the third waits for room
        assert (await inbox.receive())["body"] == b"0"
        await trio.testing.wait_all_tasks_blocked()
        assert put == [0, 1, 2]  # room for one more, and the fourth waits
        inbox.put_nowait({"type": "http.disconnect"})  # never held up, even when full
        for expected in (b"1", b"2", None, b"3"):
            assert (await inbox.receive()).get("body") == expected


async def test_receive_is_a_checkpoint_and_can_be_cancelled_while_waiting() -> None:
    inbox = Inbox(limit=1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await inbox.receive()  # cancelled even with nothing queued
    assert scope.cancelled_caught
    with trio.move_on_after(0) as waiting:  # (a deadline already past: no clock involved)
        await inbox.receive()
    assert waiting.cancelled_caught
    inbox.put_nowait(message(7))
    assert (await inbox.receive())["body"] == b"7"  # nothing lost to the cancellations


async def test_a_host_it_does_not_serve_gets_a_404_and_the_close() -> None:
    # (hypercorn's HTTPStream answered the 404 but left the connection open.)
    async with serving(HTTP1Protocol, server_names=["example"]) as port:
        got, closed = await exchange(port, [b"GET / HTTP/1.1\r\nhost: other\r\n\r\n"], 1)
        assert ([status for status, _ in got], closed) == ([404], True)
        got, closed = await exchange(port, [b"GET / HTTP/1.1\r\n" + HOST + b"\r\n"], 1)
        assert ([status for status, _ in got], closed) == ([200], False)


def connection_tasks() -> int:
    """The server's connection handlers alive (trio's serve_listeners runs one each)."""

    def walk(task: trio.lowlevel.Task) -> int:
        here = int(task.name.endswith("_run_handler"))
        return here + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


async def test_an_answer_without_reading_the_body_frees_the_connection_s_reader() -> None:
    # The reader waits for room in the app's queue (one message here) when the app answers
    # without reading: the exchange's end must release it, or the connection's tasks and
    # its queued body stay until shutdown.
    UNREAD[:] = [trio.Event()]
    async with serving(HTTP1Protocol, app_queue=1) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(
            b"POST /unread HTTP/1.1\r\n" + HOST + b"content-length: 99999\r\n\r\n"
        )
        for _ in range(3):  # three reads: one queued, the next waits for room
            await stream.send_all(b"x" * 1000)
            await trio.testing.wait_all_tasks_blocked()
        assert connection_tasks() == 1
        UNREAD[0].set()
        received = b""
        while data := await stream.receive_some(65536):
            received += data
        assert received.startswith(b"HTTP/1.1 413 ")
        await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert connection_tasks() == 0


async def test_a_1xx_response_start_is_informational_and_the_answer_follows() -> None:
    # (hypercorn's stream took the 1xx for the answer and failed on the next start.)
    async with serving(HTTP1Protocol) as port:
        request = b"GET /informational-first HTTP/1.1\r\n" + HOST + b"\r\n"
        got, closed = await exchange(port, [request, request], 2)
    assert (got, closed) == ([(103, b""), (200, b"ok"), (103, b""), (200, b"ok")], False)
