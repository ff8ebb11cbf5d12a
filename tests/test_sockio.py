"""`circuitd.sockio` on a real socket pair: what a write takes at once, and a read that
waits first — its data, EOF, a spurious wake-up, a close by another task, cancellation."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from circuitd import sockio
from circuitd.sockio import read_when_ready, write_now


def socket_pair() -> tuple[trio.socket.SocketType, trio.socket.SocketType]:
    return trio.socket.socketpair()


async def test_a_write_takes_what_the_buffer_holds_then_nothing() -> None:
    a, b = socket_pair()
    with a, b:
        chunk = b"x" * 65536
        total = 0
        while (sent := write_now(a, chunk)) > 0:
            total += sent
        assert total > 0 and write_now(a, chunk) == 0
        b.close()  # the peer gone: the error is the socket's
        with pytest.raises(OSError) as failed:
            write_now(a, chunk)
        assert failed.value.errno in (errno.EPIPE, errno.ECONNRESET)


async def test_a_read_waits_for_its_data_and_sees_eof() -> None:
    a, b = socket_pair()
    with a, b:
        got: list[bytes] = []

        async def reader() -> None:
            got.append(await read_when_ready(a, 1024))
            got.append(await read_when_ready(a, 1024))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []  # nothing sent yet: it waits
            await b.send(b"answer")
            await trio.testing.wait_all_tasks_blocked()
            assert got == [b"answer"]
            b.close()
        assert got == [b"answer", b""]


async def test_a_spurious_wake_up_waits_again(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = socket_pair()
    with a, b:
        real_read = sockio.os.read
        calls = 0

        def read_once_too_early(fd: int, size: int) -> bytes:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise BlockingIOError(errno.EAGAIN, "woken, but nothing to read")
            return real_read(fd, size)

        monkeypatch.setattr(sockio.os, "read", read_once_too_early)
        await b.send(b"late")
        assert await read_when_ready(a, 1024) == b"late"
        assert calls == 2


async def test_a_close_by_another_task_or_a_cancel_ends_the_wait() -> None:
    a, b = socket_pair()
    with b:
        async with trio.open_nursery() as nursery:
            failed: list[BaseException] = []

            async def reader() -> None:
                try:
                    await read_when_ready(a, 1024)
                except trio.ClosedResourceError as exc:
                    failed.append(exc)

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            a.close()
        assert len(failed) == 1
        with pytest.raises(trio.ClosedResourceError):
            await read_when_ready(a, 1024)  # closed before
        c, d = socket_pair()
        with c, d:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_when_ready, c, 1024)
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
            assert nursery.cancel_scope.cancelled_caught
