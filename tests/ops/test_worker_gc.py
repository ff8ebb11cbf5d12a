"""A worker that owns its process tunes the process's cyclic GC once its gateway is built;
one inside a test's process (as the harness runs them) leaves it alone. Each case runs in a
fresh interpreter: the GC's settings are the whole process's. Such a worker also trims its
C heap now and then."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

from circuitd.server import HEAP_TRIM_INTERVAL_S, heap_trimmer, trim_heap

WORKER = """
import gc, sys, trio
from circuitd.config import load_config
from circuitd.server import GC_YOUNG_THRESHOLD, listening_socket, run_worker

env = {{"CIRCUIT_DB": sys.argv[1]}}
config = load_config(None, env)
before = gc.get_threshold()

async def main():
    stop = trio.Event()
    sock = listening_socket("127.0.0.1", 0, reuse_port=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: run_worker(
            config, env, sock, stop=stop, own_process={own}, task_status=task_status))
        young, *older = gc.get_threshold()
        print(young == GC_YOUNG_THRESHOLD, gc.get_freeze_count() > 0, older == list(before[1:]))
        stop.set()

trio.run(main)
"""


@pytest.mark.parametrize(
    ("own", "expected"), [(True, "True True True"), (False, "False False True")]
)
def test_only_a_worker_owning_its_process_tunes_the_gc(
    tmp_path: Path, own: bool, expected: str
) -> None:
    script = WORKER.format(own=own)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "ledger.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == expected


def test_glibc_has_a_heap_trimmer_and_it_returns_memory() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    trim = heap_trimmer()
    assert trim is not None
    assert trim(0) in (0, 1)  # 1: memory was returned to the system, 0: there was none


async def test_the_heap_is_trimmed_once_an_interval(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[float] = []

    def trim(pad: int) -> int:
        calls.append(trio.current_time())
        return 0

    with trio.move_on_after(3 * HEAP_TRIM_INTERVAL_S + 1):
        await trim_heap(trim, HEAP_TRIM_INTERVAL_S)
    assert calls == [HEAP_TRIM_INTERVAL_S * n for n in (1, 2, 3)]
