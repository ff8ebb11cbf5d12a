"""The supervisor of several worker processes (`[server] workers > 1`).

The parent has bound one listening socket per worker; it starts one process per seat (the
socket, and what the workers hand connections on with: `circuitd.handoff`) and
then runs a small single-threaded loop over three kinds of event, all plain file descriptors:

- a signal (through `signal.set_wakeup_fd`, so handlers never run our logic between two
  bytecodes of the loop): SIGTERM/SIGINT are forwarded to every worker, which drains; SIGHUP
  is forwarded, which reloads;
- a worker's notification over its pipe (`READY=1` once it serves, `WATCHDOG=1` while its
  event loop runs): `Quorum` turns them into the service's, which only the supervisor, the
  main PID, sends to systemd;
- a worker's exit: one that dies on its own takes the others down (the service manager
  restarts us).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from circuitd.handoff import Seat
from circuitd.sdnotify import STATE_WAIT_S, Notifier, Quorum

log = logging.getLogger("circuitd")

# Runs one worker in its process: (its seat, the pipe to the supervisor, the watchdog period
# it pings within, or None). Must be picklable: a module-level function.
WorkerMain = Callable[[Seat, Connection, int | None], None]

# What the supervisor forwards to its workers, and what they are born blocking (see below).
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    notifications: Connection | None  # closed (None) at end of file


def supervise(
    worker_main: WorkerMain, seats: list[Seat], notifier: Notifier, stop_wait_s: float = 30.0
) -> int:
    """Runs one worker per seat until they have all exited; returns the exit status.
    `stop_wait_s`: how long workers may drain if another cannot start."""
    metrics_dir = _fresh_metrics_dir()
    # Workers ping at half our period, so that a round in which every one has pinged always
    # completes within our own (see `Quorum`).
    usec = notifier.watchdog_usec if notifier.watchdog_interval() is not None else None
    worker_usec = None if usec is None else usec // 2
    context = multiprocessing.get_context("spawn")
    wakeup_read, wakeup_write = socket.socketpair()
    wakeup_read.setblocking(False)
    wakeup_write.setblocking(False)
    previous_wakeup = signal.set_wakeup_fd(wakeup_write.fileno())
    previous_handlers = {signum: signal.signal(signum, _note_only) for signum in SIGNALS}
    # Workers are born with these signals blocked (a mask survives fork and exec, a handler
    # does not): a terminal's Ctrl-C or a forwarded signal waits until a worker's event loop
    # receives it (`server._on_signals`) instead of killing it while it imports. Ours wait,
    # pending, until the workers are started. Starting multiprocessing's resource tracker
    # unblocks SIGINT and SIGTERM: it is started first, so that no worker's start does.
    resource_tracker.ensure_running()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    workers: list[_Worker] = []
    try:
        _start_all(context, worker_main, seats, worker_usec, workers, stop_wait_s)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return _Loop(workers, wakeup_read, notifier, metrics_dir.path).run()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # if a start failed
        signal.set_wakeup_fd(previous_wakeup)
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        wakeup_read.close()
        wakeup_write.close()
        for worker in workers:
            if worker.notifications is not None:
                worker.notifications.close()
        if metrics_dir.owned:
            shutil.rmtree(metrics_dir.path, ignore_errors=True)
        _stop_resource_tracker()


def _start_all(
    context: multiprocessing.context.SpawnContext,
    worker_main: WorkerMain,
    seats: list[Seat],
    worker_usec: int | None,
    workers: list[_Worker],
    stop_wait_s: float,
) -> None:
    """Starts one process per seat, appending each to `workers`. If one cannot start (no
    fork under a tasks limit, no memory), those already started drain (`stop_wait_s` at
    most, then they are killed) and are reaped before the error goes on: no worker serves on
    without a supervisor, and our exit, which waits for them (the resource tracker's stop,
    the interpreter's own exit), does not hang. (A start that fails after multiprocessing
    has spawned the child, in writing it its preparation data, leaves that child to exit
    with us: it never got its seat.)"""
    try:
        for index, seat in enumerate(seats):
            reader, writer = context.Pipe(duplex=False)
            try:
                process = context.Process(
                    target=worker_main, args=(seat, writer, worker_usec), name=f"circuitd-{index}"
                )
                process.start()
            except BaseException:
                reader.close()
                raise
            finally:
                writer.close()  # the worker holds its own copy; EOF on `reader` once it is gone
            seat.release()
            workers.append(_Worker(index, process, reader))
    except BaseException:
        for seat in seats:
            seat.release()  # those not yet released (closing twice is harmless)
        for worker in workers:
            worker.process.terminate()  # SIGTERM: it drains, as on a stop
        deadline = time.monotonic() + stop_wait_s
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join()
        raise


def _stop_resource_tracker() -> None:
    """Spawning starts multiprocessing's resource tracker, a helper process that exits only
    once every holder of its pipe has: a moment after us, too late for systemd, which SIGKILLs
    it and says so in the journal. Closing our end and reaping it first keeps the stop clean.
    (`_stop` is private, there in CPython 3.11 to 3.13; where it is not, the moment stays.)"""
    stop = getattr(resource_tracker._resource_tracker, "_stop", None)
    if callable(stop):
        stop()


def _note_only(signum: int, _frame: object) -> None:
    """The wakeup fd carries the signal to the loop; the handler itself does nothing."""


class _Loop:
    def __init__(
        self, workers: list[_Worker], wakeup: socket.socket, notifier: Notifier, metrics: str
    ) -> None:
        self.running = list(workers)
        self.wakeup = wakeup
        self.notifier = notifier
        self.metrics_dir = metrics
        self.quorum = Quorum(w.index for w in workers)
        self.stopping = False
        self.status = 0

    def run(self) -> int:
        while self.running:
            pipes = [w.notifications for w in self.running if w.notifications is not None]
            sentinels = [w.process.sentinel for w in self.running]
            ready = multiprocessing.connection.wait([self.wakeup, *pipes, *sentinels])
            if self.wakeup in ready:
                self._on_signals()
            # Notifications before exits: a worker's last words are read before it is gone.
            for worker in list(self.running):
                if worker.notifications is not None and worker.notifications in ready:
                    self._on_notification(worker)
            for worker in list(self.running):
                if worker.process.sentinel in ready:
                    self._on_exit(worker)
        return self.status

    def _on_signals(self) -> None:
        try:
            received = self.wakeup.recv(64)
        except BlockingIOError:
            return
        for signum in received:
            log.info("signal received", extra={"signal": signum})
            if signum == signal.SIGHUP:
                if not self.stopping:
                    self.notifier.reloading()
                    self.quorum.reloading()
                    self._signal_all(signal.SIGHUP)
            else:
                self._stop_all()

    def _on_notification(self, worker: _Worker) -> None:
        assert worker.notifications is not None
        try:
            data = worker.notifications.recv_bytes()
        except (EOFError, OSError):
            worker.notifications.close()
            worker.notifications = None
            return
        self._send(self.quorum.receive(worker.index, data))

    def _on_exit(self, worker: _Worker) -> None:
        self.running.remove(worker)
        process = worker.process
        process.join()  # reaps it: `exitcode` is only known after this
        if process.pid is not None:
            # its live gauges no longer count
            mark_process_dead(process.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
        log.info("worker exited", extra={"worker": process.name, "exitcode": process.exitcode})
        if process.exitcode != 0:
            self.status = 1
            if not self.stopping:
                log.error("worker died; stopping", extra={"worker": process.name})
                self._stop_all()
        # After `_stop_all`: the others being ready must not read as the service being ready.
        self._send(self.quorum.exited(worker.index))

    def _stop_all(self) -> None:
        if self.stopping:
            log.info("already stopping")  # the workers drain; once is enough
            return
        self.stopping = True
        self.quorum.stop()
        self.notifier.stopping(status="draining")
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signum: int) -> None:
        for worker in self.running:
            if worker.process.pid is not None and worker.process.exitcode is None:
                # `exitcode` reaps a worker that has just exited: its pid is not reused yet.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signum)

    def _send(self, messages: list[str]) -> None:
        # This loop is no event loop: it may wait for room in systemd's queue, pings included.
        for message in messages:
            self.notifier.notify(message, wait_s=STATE_WAIT_S)


@dataclass(frozen=True)
class _MetricsDir:
    path: str
    owned: bool  # made by us (removed at exit), not given by the operator


def _fresh_metrics_dir() -> _MetricsDir:
    """prometheus-client's multiprocess directory, emptied: the workers (spawned after this)
    inherit the variable, which switches the library to multiprocess mode."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        for entry in Path(given).glob("*.db"):
            entry.unlink()
        return _MetricsDir(given, owned=False)
    path = tempfile.mkdtemp(prefix="circuitd-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return _MetricsDir(path, owned=True)
