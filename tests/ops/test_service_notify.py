"""circuitd as systemd's `Type=notify` service sees it: a real process, a datagram socket that
stands in for `$NOTIFY_SOCKET`, and the kernel's word (SCM_CREDENTIALS) on who sent each
message, since with `NotifyAccess=main` systemd drops whatever the main PID did not send."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from circuitd.sdnotify import parse
from tests.processes import count_rows, spawn

KEY = "notify-key"
GUARD_S = 60  # a hang guard, not a timing assertion
WATCHDOG_USEC = 400_000  # pings every 0.2 s (0.1 s in each of several workers)


@dataclass
class Notification:
    pid: int  # the sender, as the kernel tells it
    fields: dict[str, str]
    raw: bytes


class NotifySocket:
    """A datagram socket at a path, read as promptly as systemd reads its own: the kernel
    queues at most `net.unix.max_dgram_qlen` datagrams (10 by default) and circuitd's
    non-blocking sends drop what does not fit, so a thread empties it into a queue."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.received: queue.Queue[Notification] = queue.Queue()
        self.seen: list[Notification] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            data, ancillary, _flags, _address = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            if not data:
                return  # shut down by `close`
            pids = [
                struct.unpack("3i", payload[:12])[0]
                for level, kind, payload in ancillary
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
            ]
            self.received.put(Notification(pids[0] if len(pids) == 1 else -1, parse(data), data))

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader with an empty read
        self.reader.join(GUARD_S)
        self.sock.close()

    def next(self) -> Notification:
        notification = self.received.get(timeout=GUARD_S)
        self.seen.append(notification)
        return notification

    def until(self, key: str) -> Notification:
        """The next notification that sets `key` (watchdog pings in between are skipped)."""
        while True:
            notification = self.next()
            if key in notification.fields:
                return notification


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify")
    try:
        yield listener
    finally:
        listener.close()


def start(
    tmp_path: Path,
    notify: NotifySocket,
    processes: list[subprocess.Popen[bytes]],
    *args: str,
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIRCUIT_", "WATCHDOG_"))}
    process: subprocess.Popen[bytes] = spawn(
        tmp_path,
        *args,
        env={
            "CIRCUIT_API_KEYS": KEY,
            "PROVIDER": "MOCK",
            "NOTIFY_SOCKET": notify.path,
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
        },
        base_env=env,
        start_new_session=True,  # its own process group, as under a terminal
    )
    processes.append(process)
    return process


def logged_so_far(process: subprocess.Popen[bytes]) -> list[dict[str, object]]:
    """The JSON log lines already written to the process's stderr (reads without waiting)."""
    assert process.stderr is not None
    fd = process.stderr.fileno()
    os.set_blocking(fd, False)
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    os.set_blocking(fd, True)
    return [json.loads(line) for line in data.splitlines() if line.startswith(b"{")]


async def stream_through_sigterm(url: str, process: subprocess.Popen[bytes]) -> bytes:
    """Starts a slow stream, sends SIGTERM (twice) once its first chunk is in; returns the
    rest."""
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "b"}],
        "stream": True,
        "mock": {"chunk_delay_ms": 50, "chunks": 20},  # slow enough to outlive SIGTERM
    }
    headers = {"authorization": f"Bearer {KEY}"}
    async with (
        httpx.AsyncClient(base_url=url) as client,
        client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        chunks = response.aiter_raw()
        assert (await chunks.__anext__()).startswith(b"data: ")
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGTERM)  # an impatient second one must not cut the drain
        return b"".join([chunk async for chunk in chunks])


async def test_one_worker_notifies_ready_reload_watchdog_and_stopping(
    tmp_path: Path, notify_socket: NotifySocket, processes: list[subprocess.Popen[bytes]]
) -> None:
    process = start(tmp_path, notify_socket, processes)
    ready = notify_socket.until("READY")
    assert ready.pid == process.pid
    [listening] = [e for e in logged_so_far(process) if e["msg"] == "listening"]
    url = str(listening["urls"][0])  # type: ignore[index]
    assert ready.raw == f"READY=1\nSTATUS=serving on {url}".encode()
    assert notify_socket.until("WATCHDOG").raw == b"WATCHDOG=1"

    process.send_signal(signal.SIGHUP)
    reloading = notify_socket.until("RELOADING")
    assert int(reloading.fields["MONOTONIC_USEC"]) > 0
    assert notify_socket.until("READY").raw == ready.raw

    rest = await stream_through_sigterm(url, process)
    assert rest.endswith(b"data: [DONE]\n\n")  # the drain let the stream finish
    assert notify_socket.until("STOPPING").raw == b"STOPPING=1\nSTATUS=draining"
    assert await trio.to_thread.run_sync(process.wait) == 0
    assert count_rows(tmp_path / "ledger.db") == 1
    assert {n.pid for n in notify_socket.seen} == {process.pid}


async def test_workers_report_to_the_supervisor_which_alone_notifies(
    tmp_path: Path, notify_socket: NotifySocket, processes: list[subprocess.Popen[bytes]]
) -> None:
    process = start(tmp_path, notify_socket, processes, "--workers", "2")
    ready = notify_socket.until("READY")
    assert ready.raw == b"READY=1\nSTATUS=2 workers serving"
    # Each worker logs "listening" before it reports READY: both have by now.
    listening = [e for e in logged_so_far(process) if e["msg"] == "listening"]
    assert len(listening) == 2
    url = str(listening[0]["urls"][0])  # type: ignore[index]
    assert notify_socket.until("WATCHDOG").raw == b"WATCHDOG=1"  # every worker pinged
    helpers = children(process.pid, b"spawn_main") + children(process.pid, b"resource_tracker")
    assert len(helpers) == 3

    process.send_signal(signal.SIGHUP)
    assert "RELOADING" in notify_socket.until("RELOADING").fields
    assert notify_socket.until("READY").raw == ready.raw  # once both have reloaded

    rest = await stream_through_sigterm(url, process)
    assert rest.endswith(b"data: [DONE]\n\n")
    assert notify_socket.until("STOPPING").raw == b"STOPPING=1\nSTATUS=draining"
    assert await trio.to_thread.run_sync(process.wait) == 0
    assert count_rows(tmp_path / "ledger.db") == 1
    # Only the main PID spoke (systemd would drop a worker's message), READY exactly twice.
    assert {n.pid for n in notify_socket.seen} == {process.pid}
    assert [n.raw for n in notify_socket.seen if "READY" in n.fields] == [ready.raw] * 2
    # Nothing outlives the main PID (systemd would SIGKILL it, and say so in the journal).
    assert still_running(helpers) == []


def children(pid: int, marker: bytes) -> list[int]:
    """The process's children whose command line has `marker`: `spawn_main` for the workers,
    `resource_tracker` for multiprocessing's helper."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    if not path.exists():
        pytest.skip("this kernel does not list a process's children in /proc")
    pids = [int(child) for child in path.read_text().split()]
    return [c for c in pids if marker in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_ctrl_c_to_the_process_group_drains_every_worker_cleanly(
    tmp_path: Path, notify_socket: NotifySocket, processes: list[subprocess.Popen[bytes]]
) -> None:
    # A terminal's Ctrl-C reaches every process of the group: each worker gets SIGINT, then
    # the supervisor's SIGTERM, possibly once it has drained and is writing its last rows.
    process = start(tmp_path, notify_socket, processes, "--workers", "2")
    notify_socket.until("READY")
    os.killpg(process.pid, signal.SIGINT)
    assert notify_socket.until("STOPPING").pid == process.pid
    assert process.wait(GUARD_S) == 0
    exits = [e for e in logged_so_far(process) if e["msg"] == "worker exited"]
    assert [e["exitcode"] for e in exits] == [0, 0]


def test_ctrl_c_while_the_workers_start_stops_them_cleanly(
    tmp_path: Path, notify_socket: NotifySocket, processes: list[subprocess.Popen[bytes]]
) -> None:
    # Ctrl-C while the workers still import: neither the SIGINT nor the supervisor's SIGTERM
    # may kill one half-started (they are born with both blocked, pending until the worker's
    # event loop receives them); each drains and exits 0, and so does the service.
    process = start(tmp_path, notify_socket, processes, "--workers", "2")
    guard = time.monotonic() + GUARD_S  # a hang guard, not a timing assertion
    while len(starting_workers(process.pid)) < 2:  # no READY yet: they import
        assert process.poll() is None and time.monotonic() < guard
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(GUARD_S) == 0
    exits = [e for e in logged_so_far(process) if e["msg"] == "worker exited"]
    assert [e["exitcode"] for e in exits] == [0, 0]


def starting_workers(pid: int) -> list[int]:
    """`children(pid, b"spawn_main")`, read while processes come and go (multiprocessing's
    own helpers start and end meanwhile)."""
    try:
        return children(pid, b"spawn_main")
    except (FileNotFoundError, ProcessLookupError):
        return []


def still_running(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def test_a_dead_worker_stops_the_service(
    tmp_path: Path, notify_socket: NotifySocket, processes: list[subprocess.Popen[bytes]]
) -> None:
    process = start(tmp_path, notify_socket, processes, "--workers", "2")
    notify_socket.until("READY")
    workers = children(process.pid, b"spawn_main")
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    assert notify_socket.until("STOPPING").pid == process.pid
    assert process.wait(GUARD_S) == 1  # the service manager restarts it (Restart=on-failure)
    died = [e for e in logged_so_far(process) if e["msg"] == "worker died; stopping"]
    assert len(died) == 1
