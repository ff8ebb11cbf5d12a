"""Several worker processes each serve about as many connections, wherever the kernel's
SO_REUSEPORT hash puts them: 8 keep-alive connections over 4 workers are 2 each (the hash
alone gives that 4% of the time)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.processes import KEY, reaped, start

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def workers_of(pid: int) -> list[int]:
    """The worker processes of the circuitd whose pid is `pid` (multiprocessing's children)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if parent == pid and b"spawn_main" in command:
            found.append(int(stat.parent.name))
    return found


def connections_served(pids: list[int], port: int) -> Counter[int]:
    """Per process, its established TCP connections on `port` (the server's side)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
            if local_port == port and state == "01":  # ESTABLISHED
                inodes.add(f"socket:[{inode}]")
    served = Counter[int]({pid: 0 for pid in pids})
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    served[pid] += 1
            except OSError:
                continue
    return served


def test_keep_alive_connections_are_spread_evenly_over_the_workers(tmp_path: Path) -> None:
    process, url = start(tmp_path, "--workers", "4")
    with reaped(process):
        assert process.stderr is not None
        listening = 1
        while listening < 4:  # every worker serving, before the first connection
            listening += json.loads(process.stderr.readline())["msg"] == "listening"
        port = urlsplit(url).port
        assert port is not None
        connections = []
        for _ in range(8):
            connection = http.client.HTTPConnection("127.0.0.1", port)
            connection.request("GET", "/v1/models", headers={"authorization": f"Bearer {KEY}"})
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200
            connections.append(connection)
        workers = workers_of(process.pid)
        assert len(workers) == 4
        assert sorted(connections_served(workers, port).values()) == [2, 2, 2, 2]
        for connection in connections:  # each still answers where it is served now
            connection.request("GET", "/v1/models", headers={"authorization": f"Bearer {KEY}"})
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200
            connection.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
