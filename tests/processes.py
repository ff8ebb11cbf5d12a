"""circuitd as a real process (`python -m circuitd serve` on port 0) for the tests that need
one: signals, several workers, systemd's notify protocol."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw

KEY = "proc-key"


def spawn(
    tmp_path: Path,
    *args: str,
    env: Mapping[str, str],
    base_env: Mapping[str, str] = os.environ,
    **popen: Any,
) -> subprocess.Popen[Any]:
    """`circuitd serve --port 0 *args` in `tmp_path`, its ledger there, stderr piped: `env`
    over `base_env`, with `CIRCUIT_API_KEYS` and `CIRCUIT_DB` unless `env` sets them."""
    defaults = {"CIRCUIT_API_KEYS": KEY, "CIRCUIT_DB": str(tmp_path / "ledger.db")}
    return subprocess.Popen(
        [sys.executable, "-m", "circuitd", "serve", "--port", "0", *args],
        cwd=tmp_path,
        env={**base_env, **defaults, **env},
        stderr=subprocess.PIPE,
        **popen,
    )


def start(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    """`spawn` with text logs, once it listens: the process and its URL."""
    process: subprocess.Popen[str] = spawn(tmp_path, *args, env=env, text=True)
    assert process.stderr is not None
    for line in process.stderr:  # JSON log lines; wait for the one that says where we listen
        entry = json.loads(line)
        if entry["msg"] == "listening":
            return process, entry["urls"][0]
    raise AssertionError(f"circuitd exited early with {process.wait()}")


@contextmanager
def reaped(process: subprocess.Popen[Any]) -> Iterator[subprocess.Popen[Any]]:
    """The process, killed (and waited for) if it is still running when the block ends."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def count_rows(db: Path) -> int:
    connection = apsw.Connection(str(db))
    try:
        return int(connection.execute("SELECT count(*) FROM requests").fetchall()[0][0])
    finally:
        connection.close()
