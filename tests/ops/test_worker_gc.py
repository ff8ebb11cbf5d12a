"""A worker that owns its process tunes the process's cyclic GC once its gateway is built;
one inside a test's process (as the harness runs them) leaves it alone. Each case runs in a
fresh interpreter: the GC's settings are the whole process's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
