"""systemd's notify protocol (sd_notify(3)), with the standard library only.

Under `Type=notify` systemd passes `NOTIFY_SOCKET` (a datagram socket: a path, or `@name` in
the abstract namespace) and, with `WatchdogSec=`, `WATCHDOG_USEC` and `WATCHDOG_PID`. circuitd
sends `READY=1` once it serves, `STOPPING=1` when it starts draining and `WATCHDOG=1` at half the
watchdog period while its event loop runs. Every method is a no-op without `NOTIFY_SOCKET`
(a terminal, a container, the tests) and never raises: a lost notification is logged at debug
level, it never takes the gateway down.

With several workers only the supervisor (the main PID) talks to systemd. Each worker speaks
the same messages to it over a pipe (`PipeNotifier`), and `Quorum` turns them into the
service's state: ready once every worker serves, alive while every worker still pings.

Sending is synchronous: one non-blocking datagram (or a pipe write of a few bytes), cheap
enough to call from trio code.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping
from multiprocessing.connection import Connection

log = logging.getLogger("circuitd.sdnotify")

# How long a change of state (READY, RELOADING, STOPPING) may wait for room in systemd's receive
# queue, which holds only `net.unix.max_dgram_qlen` datagrams (10 by default): a lost READY=1
# would have systemd kill the service at TimeoutStartSec. Pings and status lines never wait.
STATE_WAIT_S = 1.0


class Notifier:
    """Sends notifications to the service manager; `Notifier()` sends nothing."""

    def __init__(
        self, address: str | bytes | None = None, watchdog_usec: int | None = None
    ) -> None:
        self.address = address  # a path, or b"\0name" for the abstract namespace
        self.watchdog_usec = watchdog_usec  # None: no watchdog (or not ours to ping)

    @classmethod
    def from_env(cls, env: Mapping[str, str], pid: int | None = None) -> Notifier:
        """Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (the watchdog is this
        process's only when `WATCHDOG_PID` is unset or equals `pid`, default this process)."""
        address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        if address is None:
            return cls()
        return cls(address, _watchdog_usec(env, os.getpid() if pid is None else pid))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between two `watchdog()` calls (half the period, as systemd advises), or
        None when there is no watchdog to ping."""
        if not self.enabled or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def ready(self, status: str | None = None) -> None:
        self.notify(_with_status("READY=1", status), wait_s=STATE_WAIT_S)

    def stopping(self, status: str | None = None) -> None:
        self.notify(_with_status("STOPPING=1", status), wait_s=STATE_WAIT_S)

    def reloading(self, status: str | None = None) -> None:
        """`RELOADING=1` with `MONOTONIC_USEC` (required by `Type=notify-reload`, systemd ≥ 253);
        send `ready()` when the reload is done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify(_with_status(f"RELOADING=1\nMONOTONIC_USEC={usec}", status), STATE_WAIT_S)

    def watchdog(self) -> None:
        """Pings the watchdog; nothing when there is none (or it watches another process)."""
        if self.watchdog_usec is not None:
            self.notify("WATCHDOG=1")

    def status(self, text: str) -> None:
        self.notify(_with_status("", text))

    def notify(self, message: str, wait_s: float = 0.0) -> None:
        """Sends one raw message (`KEY=VALUE` lines), waiting at most `wait_s` for room in a
        full queue (0: a full queue drops it); never raises."""
        if self.address is None or not message:
            return
        try:
            self._send(message.encode(), wait_s)
        except OSError as exc:
            level = logging.WARNING if wait_s else logging.DEBUG  # a lost change of state
            log.log(level, "notification not sent", extra={"notify": message, "error": str(exc)})

    def _send(self, data: bytes, wait_s: float) -> None:
        assert self.address is not None
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            if wait_s <= 0:
                sock.setblocking(False)
                sock.sendto(data, self.address)
                return
            # Connected: only then does a datagram socket wait for room in the receiver's
            # queue (unconnected, it always polls writable and the send fails at once).
            sock.settimeout(wait_s)
            sock.connect(self.address)
            sock.send(data)


class PipeNotifier(Notifier):
    """A worker's notifier: the same messages, to its supervisor over a pipe (the write end
    of a `multiprocessing` pipe, which a spawned process receives as an argument)."""

    def __init__(self, connection: Connection, watchdog_usec: int | None = None) -> None:
        super().__init__("<supervisor>", watchdog_usec)  # any address: enabled
        self.connection = connection

    def _send(self, data: bytes, wait_s: float) -> None:
        # Never waits, whatever `wait_s`: the supervisor reads at once. Non-blocking (set in the
        # worker, where the pipe is used): a write of a few bytes to a pipe is atomic, so a
        # stuck supervisor makes it fail whole, never block the event loop.
        if os.get_blocking(self.connection.fileno()):
            os.set_blocking(self.connection.fileno(), False)
        self.connection.send_bytes(data)


def parse(data: bytes) -> dict[str, str]:
    """A notification's `KEY=VALUE` lines as a dict (lines without `=` are ignored)."""
    fields: dict[str, str] = {}
    for line in data.decode(errors="replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


class Quorum:
    """The supervisor's view of its workers' notifications (sans-I/O).

    `receive` takes one worker's message and returns the messages the supervisor sends on to
    systemd: `READY=1` once every worker has said it serves (again after a reload),
    `WATCHDOG=1` each time every running worker has pinged since the last forwarded ping (a
    worker whose event loop hangs stops pinging, so the service's watchdog fires). Workers
    ping at half the supervisor's interval so that, whatever their phases, a forwarded ping is
    never later than one interval. Nothing is announced ready once the service stops.
    """

    def __init__(self, workers: Iterable[int]) -> None:
        self.running = set(workers)
        self.ready: set[int] = set()
        self.pinged: set[int] = set()
        self.announced = False
        self.stopping = False

    def receive(self, worker: int, data: bytes) -> list[str]:
        if worker not in self.running:
            return []
        fields = parse(data)
        if fields.get("READY") == "1":
            self.ready.add(worker)
        if fields.get("WATCHDOG") == "1":
            self.pinged.add(worker)
        return self._due()

    def reloading(self) -> None:
        """The supervisor asked every worker to reload: ready again once each says so."""
        self.ready.clear()
        self.announced = False

    def stop(self) -> None:
        self.stopping = True

    def exited(self, worker: int) -> list[str]:
        """Forgets a worker; the others may now complete a round it held back."""
        self.running.discard(worker)
        self.ready.discard(worker)
        self.pinged.discard(worker)
        return self._due()

    def _due(self) -> list[str]:
        out: list[str] = []
        if not self.running:
            return out
        if not (self.announced or self.stopping) and self.ready >= self.running:
            self.announced = True
            out.append(f"READY=1\nSTATUS={len(self.running)} workers serving")
        if self.pinged >= self.running:
            self.pinged.clear()
            out.append("WATCHDOG=1")
        return out


def _socket_address(value: str) -> str | bytes | None:
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value:
        # e.g. systemd ≥ 254's vsock: addresses, used for VMs; not ours to serve.
        log.debug("NOTIFY_SOCKET not supported: notifications off", extra={"notify_socket": value})
    return None


def _watchdog_usec(env: Mapping[str, str], pid: int) -> int | None:
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    watched = env.get("WATCHDOG_PID", "").strip()
    if watched:
        try:
            if int(watched) != pid:
                return None  # the watchdog is another process's (e.g. our supervisor's)
        except ValueError:
            return None
    return usec


def _with_status(message: str, status: str | None) -> str:
    if status is None:
        return message
    line = "STATUS=" + " ".join(status.splitlines())
    return f"{message}\n{line}" if message else line
