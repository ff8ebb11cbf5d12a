"""The processes a bench runs against: `circuitd mock-upstream` and `circuitd serve` pointed
at it (env-only mode, one client key), on free loopback ports, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"
CIRCUITD = [sys.executable, "-m", "circuitd"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


def pinned(cpus: set[int] | None) -> Callable[[], None] | None:
    """A `preexec_fn` that confines the child to `cpus` (None: no confinement)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (workers), in MB."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


@dataclass(frozen=True)
class Stack:
    upstream_url: str  # the mock upstream's root (its control API is under /_mock/)
    gateway_url: str
    gateway_pid: int


@contextmanager
def running_stack(
    workdir: Path,
    *,
    workers: int = 1,
    config: str | None = None,
    env: Mapping[str, str] | None = None,
    gateway_cpus: set[int] | None = None,
    upstream_cpus: set[int] | None = None,
) -> Iterator[Stack]:
    """The mock upstream and circuitd (in env-only mode, or from `config` TOML text, in
    which `{upstream}` stands for the mock's `/v1` URL) for the duration of the block.
    circuitd's log lines go to `workdir/circuitd.log`. `*_cpus`: the cores each may run on
    (its workers inherit it), so that on a big machine the load and the gateway do not share."""
    workdir = workdir.resolve()  # the gateway runs in it: relative paths would not hold
    up_port, gw_port = free_port(), free_port()
    upstream_v1 = f"http://127.0.0.1:{up_port}/v1"
    serve = [*CIRCUITD, "serve", "--port", str(gw_port), "--workers", str(workers)]
    if config is not None:
        path = workdir / "circuitd.toml"
        path.write_text(config.replace("{upstream}", upstream_v1))
        serve += ["--config", str(path)]
    upstream = subprocess.Popen(
        [*CIRCUITD, "mock-upstream", "--port", str(up_port)],
        stdout=subprocess.DEVNULL,
        preexec_fn=pinned(upstream_cpus),
    )
    log = open(workdir / "circuitd.log", "wb")  # noqa: SIM115 - closed in finally
    gateway = subprocess.Popen(
        serve,
        stderr=log,
        env={
            **os.environ,
            "PROVIDER": "OPENAI",
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": upstream_v1,
            "CIRCUIT_API_KEYS": KEY,
            "CIRCUIT_DB": str(workdir / "ledger.db"),
            "CIRCUIT_LOG_LEVEL": "warning",
            **(env or {}),
        },
        cwd=workdir,
        preexec_fn=pinned(gateway_cpus),
    )
    try:
        wait_listening(up_port)
        wait_listening(gw_port)
        yield Stack(f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{gw_port}", gateway.pid)
    finally:
        for process in (gateway, upstream):
            process.send_signal(signal.SIGTERM)
        for process in (gateway, upstream):
            process.wait(timeout=60)
        log.close()
