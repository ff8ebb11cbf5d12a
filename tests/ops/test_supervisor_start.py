"""A worker that cannot start takes the started ones down with it: none serves on without a
supervisor (the parent, waiting for it at exit, would hang), and no seat's socket stays open
in the parent. The supervisor runs in a process of its own: it installs signal handlers and
a wakeup fd, and a regression must fail the test, not hang the suite."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.context
import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from circuitd.handoff import Seat, seats
from circuitd.sdnotify import Notifier
from circuitd.supervisor import supervise

ROOT = Path(__file__).resolve().parents[2]
STARTED: list[multiprocessing.process.BaseProcess] = []


def wait_for_sigterm(_seat: Seat, _notifications: Connection, _usec: int | None) -> None:
    """A worker that serves nothing and exits 0 on SIGTERM (born with it blocked)."""
    signal.sigwait({signal.SIGTERM})


def stuck(_seat: Seat, _notifications: Connection, _usec: int | None) -> None:
    """A worker that never finishes draining (SIGTERM stays blocked)."""
    signal.sigwait({signal.SIGUSR1})


class SecondFails(multiprocessing.context.SpawnProcess):
    """The first worker starts; the second cannot (as fork fails under a tasks limit)."""

    def start(self) -> None:
        if STARTED:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        super().start()
        STARTED.append(self)


def failed_start(worker: str) -> None:
    """Runs in the child: three seats, the second start fails; prints what is left."""
    multiprocessing.get_context("spawn").Process = SecondFails  # type: ignore[misc]
    listening = []
    for _ in range(3):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        listening.append(sock)
    places = seats(listening)
    try:
        supervise(globals()[worker], places, Notifier(), stop_wait_s=0.5)
    except BlockingIOError as error:
        raised = str(error)
    [first] = STARTED
    left = {
        "raised": raised,
        "exitcode": first.exitcode,
        "open": [s.fileno() for seat in places for s in (seat.listening, seat.inbox)],
    }
    print(json.dumps(left), flush=True)


@pytest.mark.parametrize(
    ("worker", "exitcode"),
    [
        ("wait_for_sigterm", 0),  # drained on SIGTERM and reaped, not left serving
        ("stuck", -signal.SIGKILL),  # did not drain in time: killed, reaped
    ],
)
def test_a_failed_start_stops_the_started_workers_and_releases_every_seat(
    tmp_path: Path, worker: str, exitcode: int
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", f"import {__name__} as t; t.failed_start({worker!r})"],
        cwd=ROOT,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its worker too: killed together if it hangs
    )
    try:
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    left = json.loads(out)
    assert "temporarily unavailable" in left["raised"]
    assert left["exitcode"] == exitcode
    assert left["open"] == [-1] * 6  # every seat's listening socket and inbox closed
