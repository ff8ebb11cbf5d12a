"""What a process holds, read from /proc: resident memory, open file descriptors and
connections, CPU time, and which of a supervisor's children are its workers (not
multiprocessing's resource tracker)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def workers(pid: int) -> list[int]:
    """The serving processes under `pid`: its children but the resource tracker, or `pid`
    itself when it has none (one worker runs in the main process)."""
    found = [c for c in children(pid) if "resource_tracker" not in cmdline(c)]
    return found or [pid]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_parts_mb(pid: int) -> dict[str, float]:
    """Resident memory by kind: `anon` (the heap: Python's objects and malloc), `file` (mapped
    files: code, and the mmap'd metric files and SQLite's WAL index) and `shmem`."""
    kinds = {"RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}
    parts = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition("\t")
        if name in kinds:
            parts[kinds[name]] = int(rest.split()[0]) / 1024
    return parts


def connections(pid: int, port: int) -> int:
    """The established TCP connections on local `port` that `pid` holds (a server's side)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            held += os.readlink(fd) in inodes
    return held


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """A process and its children (a supervisor and its workers)."""
    return [pid, *children(pid)]


def tree_rss_mb(pid: int) -> float:
    """A process and its children, in MB."""
    return sum(rss_mb(p) for p in tree(pid))


def wait_idle(
    pids: list[int], *, busy: float = 0.05, window_s: float = 1.0, limit_s: float = 60
) -> float:
    """Waits until the processes (and their children) together use under `busy` of a core
    over `window_s`, at most `limit_s`; returns the seconds waited. A system that goes on
    working after its load stopped (a backlog) would otherwise slow the next one measured."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        every = [q for p in pids if Path(f"/proc/{p}").exists() for q in tree(p)]
        before = sum(_cpu_or_zero(q) for q in every)
        time.sleep(window_s)
        if (sum(_cpu_or_zero(q) for q in every) - before) / window_s < busy:
            break
    return time.monotonic() - started


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:  # gone meanwhile
        return 0.0
