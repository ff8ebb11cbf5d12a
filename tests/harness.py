"""Runs circuitd in the test's trio loop on a real socket (127.0.0.1, port 0)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import apsw
import trio

from circuitd.config import Config, load_config
from circuitd.server import listening_socket, run_worker


@dataclass
class Running:
    url: str  # e.g. http://127.0.0.1:PORT
    config: Config
    db_path: Path
    stop: trio.Event
    done: trio.Event

    async def drain(self) -> None:
        """Graceful stop, as on SIGTERM: returns once in-flight calls and the writer are done."""
        self.stop.set()
        await self.done.wait()

    def rows(self, where: str = "1=1") -> list[dict[str, object]]:
        """Rows of `requests` (call after `drain`, which flushes the write-behind queue)."""
        connection = apsw.Connection(str(self.db_path))
        try:
            cursor = connection.execute(f"SELECT * FROM requests WHERE {where} ORDER BY rowid")
            first = next(cursor, None)
            if first is None:  # (a finished statement has no description to give)
                return []
            names = [d[0] for d in cursor.getdescription()]
            return [dict(zip(names, row, strict=True)) for row in (first, *cursor)]
        finally:
            connection.close()


@asynccontextmanager
async def running_gateway(
    tmp_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    config_text: str | None = None,
) -> AsyncIterator[Running]:
    db_path = tmp_path / "ledger.db"
    full_env = {"CIRCUIT_DB": str(db_path), **(env or {})}
    config_path = None
    if config_text is not None:
        config_path = tmp_path / "circuitd.toml"
        config_path.write_text(config_text)
    config = load_config(config_path, full_env)
    sock = listening_socket("127.0.0.1", 0, reuse_port=False)
    stop, done = trio.Event(), trio.Event()

    async def serve(task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await run_worker(config, full_env, sock, stop=stop, task_status=task_status)
        finally:
            done.set()

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve)
        running = Running(binds[0], config, db_path, stop, done)
        try:
            yield running
        finally:
            await running.drain()
