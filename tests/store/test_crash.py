"""SIGKILL mid-write: the database stays intact and keeps every committed batch.

A child process writes rows through WriteBehind forever and prints the running total after
each commit; the test reads those lines (no sleeps), kills the child, then checks the file.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from circuitd.store.sqlite import Database

CHILD = """
import sys
import trio
from circuitd.store.sqlite import Database
from circuitd.store.writer import WriteBehind
from tests.store.factory import make_row


class Reporting:
    def __init__(self, path):
        self.db = Database.open(path)
        self.total = 0

    def write_batch(self, rows):
        inserted = self.db.write_batch(rows)
        self.total += inserted
        print(self.total, flush=True)  # after COMMIT returned
        return inserted

    def close(self):
        self.db.close()


async def main(path):
    writer = WriteBehind(
        queue_size=512, batch_rows=64, flush_interval=0.005, block_timeout=3600, opener=Reporting
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run, path)
        for i in range(10_000_000):
            day = 20 + i % 3
            await writer.submit(make_row(i, timestamp=f"2026-11-{day}T12:00:00.000Z"))


trio.run(main, sys.argv[1])
"""

KILL_AFTER_ROWS = 3_000


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_mid_write_keeps_committed_rows(tmp_path: Path) -> None:
    path = tmp_path / "circuit.db"
    repo = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed = 0
    try:
        assert child.stdout is not None
        while committed < KILL_AFTER_ROWS:
            line = child.stdout.readline()
            if not line:
                _, err = child.communicate()
                pytest.fail(f"writer process ended early: {err[-2000:]}")
            committed = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    assert child.returncode == -signal.SIGKILL

    with Database.open(path) as db:
        assert db.integrity_check() == "ok"
        count = db.count_requests()
        assert count >= committed
        # roll-ups commit with their rows: they agree even after a kill
        assert db.usage_summary(None, "2026-11-01", "2026-11-30")[0].requests == count
