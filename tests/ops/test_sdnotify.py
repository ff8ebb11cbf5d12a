"""The sd_notify protocol against real datagram sockets standing in for systemd."""

from __future__ import annotations

import logging
import multiprocessing
import os
import platform
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from circuitd import sdnotify
from circuitd.sdnotify import Notifier, PipeNotifier, Quorum, parse
from circuitd.server import keep_alive


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound at a path, and the NOTIFY_SOCKET value that names it."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        yield sock, str(path)


def received(sock: socket.socket) -> list[bytes]:
    """Every datagram queued on `sock` (they are queued when `sendto` returns)."""
    out: list[bytes] = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def test_messages_are_exact_datagrams(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "30000000"})
    assert notifier.enabled
    notifier.ready()
    notifier.ready(status="serving on http://127.0.0.1:8080")
    notifier.watchdog()
    notifier.status("draining\n3 streams")
    notifier.stopping()
    notifier.notify("EXTEND_TIMEOUT_USEC=5000000")
    assert received(sock) == [
        b"READY=1",
        b"READY=1\nSTATUS=serving on http://127.0.0.1:8080",
        b"WATCHDOG=1",
        b"STATUS=draining 3 streams",
        b"STOPPING=1",
        b"EXTEND_TIMEOUT_USEC=5000000",
    ]


def test_reloading_carries_the_monotonic_clock(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier.from_env({"NOTIFY_SOCKET": address}).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    [datagram] = received(sock)
    fields = parse(datagram)
    assert datagram.startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_abstract_namespace_socket() -> None:
    name = f"circuitd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.setblocking(False)
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        notifier.ready()
        notifier.stopping()
        assert received(sock) == [b"READY=1", b"STOPPING=1"]


def test_without_notify_socket_everything_is_a_no_op() -> None:
    for env in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}):
        notifier = Notifier.from_env({**env, "WATCHDOG_USEC": "30000000"})
        assert not notifier.enabled
        assert notifier.watchdog_interval() is None
        notifier.ready()
        notifier.watchdog()
        notifier.reloading()
        notifier.status("x")
        notifier.stopping()


@pytest.mark.parametrize(
    ("watchdog", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "1000"}, 0.0005),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),  # ours
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),  # another process's
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-1"}, None),
        ({"WATCHDOG_USEC": "30s"}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(watchdog: dict[str, str], interval: float | None) -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", **watchdog}
    assert Notifier.from_env(env, pid=4242).watchdog_interval() == interval


def test_watchdog_pid_defaults_to_this_process() -> None:
    env = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_env(env).watchdog_interval() == 2.0


def test_another_process_watchdog_gets_no_pings(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
    notifier = Notifier.from_env(env)
    notifier.watchdog()
    notifier.ready()  # everything else still goes out
    assert received(sock) == [b"READY=1"]


def test_without_watchdog_no_pings(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    notifier.watchdog()
    notifier.stopping()
    assert received(sock) == [b"STOPPING=1"]


def test_send_failures_are_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="circuitd.sdnotify")
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    notifier.status("x")
    notifier.ready()
    assert [r.getMessage() for r in caplog.records] == ["notification not sent"] * 2
    # A lost change of state matters (systemd would time the start out); a status line not.
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.WARNING]


def queue_limit() -> int:
    try:
        return int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    except (OSError, ValueError):
        return 1000


def test_a_full_queue_drops_instead_of_blocking(
    listener: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    # The kernel queues at most net.unix.max_dgram_qlen datagrams per receiver; past that a
    # blocking sender would wait for the reader. Nobody reads here: the sends must not wait.
    sock, address = listener
    limit = queue_limit()
    caplog.set_level(logging.DEBUG, logger="circuitd.sdnotify")
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    for _ in range(limit + 2):
        notifier.status("x")
    assert any(r.getMessage() == "notification not sent" for r in caplog.records)
    assert 0 < len(received(sock)) <= limit + 1


def test_a_change_of_state_waits_for_room_in_a_full_queue(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, address = listener
    monkeypatch.setattr(sdnotify, "STATE_WAIT_S", 60.0)  # a hang guard here
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    for _ in range(queue_limit() + 2):
        notifier.status("x")  # the queue is full now
    sender = threading.Thread(target=notifier.ready)
    sender.start()
    wait_until_polling(sender)
    first = received(sock)  # makes room for the waiting READY=1
    sender.join()
    assert b"READY=1" in first + received(sock)


# poll(2) and ppoll(2), in which a socket with a timeout waits for room to send.
POLL_SYSCALLS = {"x86_64": {"7", "271"}, "aarch64": {"73"}}


def wait_until_polling(thread: threading.Thread) -> None:
    """Returns once `thread` waits in poll(2), as the kernel says (no sleep: a bounded spin)."""
    calls = POLL_SYSCALLS.get(platform.machine())
    if calls is None:
        pytest.skip(f"poll's syscall number on {platform.machine()} is not listed here")
    path = Path(f"/proc/self/task/{thread.native_id}/syscall")
    deadline = time.monotonic() + 60  # a hang guard
    while True:
        assert thread.is_alive(), "the notification went (or was dropped) without waiting"
        try:
            if path.read_text().split(" ", 1)[0] in calls:
                return
        except FileNotFoundError:
            continue  # it has just ended: the assertion above says so
        assert time.monotonic() < deadline


def test_the_wait_for_room_is_bounded(
    listener: tuple[socket.socket, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sock, address = listener
    monkeypatch.setattr(sdnotify, "STATE_WAIT_S", 0.01)
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    for _ in range(queue_limit() + 2):
        notifier.status("x")
    notifier.stopping()  # nobody reads: given up after the wait, with a warning
    assert [r.levelno for r in caplog.records if r.name == "circuitd.sdnotify"][-1] == (
        logging.WARNING
    )
    assert b"STOPPING=1" not in received(sock)


def test_pipe_notifier_speaks_the_same_messages() -> None:
    reader, writer = multiprocessing.Pipe(duplex=False)
    with reader, writer:
        notifier = PipeNotifier(writer, watchdog_usec=15_000_000)
        assert notifier.watchdog_interval() == 7.5
        notifier.ready(status="serving")
        notifier.watchdog()
        notifier.stopping()
        assert [reader.recv_bytes() for _ in range(3)] == [
            b"READY=1\nSTATUS=serving",
            b"WATCHDOG=1",
            b"STOPPING=1",
        ]
        assert not reader.poll()
        assert PipeNotifier(writer).watchdog_interval() is None
        PipeNotifier(writer).watchdog()
        assert not reader.poll()


def test_pipe_notifier_survives_a_gone_supervisor(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="circuitd.sdnotify")
    reader, writer = multiprocessing.Pipe(duplex=False)
    reader.close()
    with writer:
        PipeNotifier(writer).ready()  # EPIPE (SIGPIPE is ignored by Python)
    assert [r.getMessage() for r in caplog.records] == ["notification not sent"]


def test_parse() -> None:
    assert parse(b"READY=1\nSTATUS=a=b\nnoise\n") == {"READY": "1", "STATUS": "a=b"}
    assert parse(b"") == {}


def test_quorum_is_ready_when_every_worker_is() -> None:
    quorum = Quorum(range(3))
    assert quorum.receive(0, b"READY=1\nSTATUS=serving") == []
    assert quorum.receive(0, b"READY=1") == []  # the same worker twice is still one
    assert quorum.receive(2, b"READY=1") == []
    assert quorum.receive(1, b"READY=1") == ["READY=1\nSTATUS=3 workers serving"]
    assert quorum.receive(1, b"READY=1") == []  # announced once
    assert quorum.receive(1, b"STOPPING=1") == []


def test_quorum_pings_when_every_running_worker_has() -> None:
    quorum = Quorum(range(3))
    assert quorum.receive(0, b"WATCHDOG=1") == []
    assert quorum.receive(0, b"WATCHDOG=1") == []
    assert quorum.receive(1, b"WATCHDOG=1") == []
    assert quorum.receive(2, b"WATCHDOG=1") == ["WATCHDOG=1"]
    # A new round: a hung worker (2) holds back the service's ping.
    assert quorum.receive(0, b"WATCHDOG=1") == []
    assert quorum.receive(1, b"WATCHDOG=1") == []
    assert quorum.receive(0, b"WATCHDOG=1") == []
    assert quorum.receive(9, b"WATCHDOG=1") == []  # not a worker of ours
    # Once it is gone, the round it held back is complete.
    assert quorum.exited(2) == ["WATCHDOG=1"]
    assert quorum.receive(1, b"WATCHDOG=1") == []
    assert quorum.receive(0, b"WATCHDOG=1") == ["WATCHDOG=1"]


def test_quorum_ignores_exited_workers() -> None:
    quorum = Quorum([0, 1])
    assert quorum.receive(0, b"READY=1") == []
    assert quorum.exited(1) == ["READY=1\nSTATUS=1 workers serving"]
    assert quorum.receive(1, b"READY=1") == []
    assert quorum.receive(0, b"READY=1") == []
    assert quorum.exited(0) == []  # nobody left: nothing to say


def test_quorum_is_ready_again_after_every_worker_reloaded() -> None:
    quorum = Quorum([0, 1])
    quorum.receive(0, b"READY=1")
    assert quorum.receive(1, b"READY=1") == ["READY=1\nSTATUS=2 workers serving"]
    quorum.reloading()
    assert quorum.receive(1, b"RELOADING=1\nMONOTONIC_USEC=5") == []  # the supervisor's to say
    assert quorum.receive(1, b"READY=1") == []
    assert quorum.receive(0, b"READY=1") == ["READY=1\nSTATUS=2 workers serving"]


def test_quorum_says_nothing_of_readiness_once_stopping() -> None:
    quorum = Quorum([0, 1])
    quorum.receive(0, b"READY=1")
    quorum.stop()
    assert quorum.receive(1, b"READY=1") == []
    # but pings go on: the drain may outlast the watchdog period
    quorum.receive(0, b"WATCHDOG=1")
    assert quorum.receive(1, b"WATCHDOG=1") == ["WATCHDOG=1"]


async def test_keep_alive_pings_once_per_interval(
    autojump_clock: trio.testing.MockClock, listener: tuple[socket.socket, str]
) -> None:
    # A task of the serving loop: it pings only while that loop runs its tasks.
    sock, address = listener
    with trio.move_on_after(4.5):
        await keep_alive(Notifier(address, watchdog_usec=2_000_000), 1.0)
    assert received(sock) == [b"WATCHDOG=1"] * 5  # at 0, 1, ..., 4 s
