"""wrk (`apt-get install wrk`) with bench/wrk_chat.lua: the closed-loop ceiling of a server,
with a load generator in C that costs far less CPU than locust."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from stack import ROOT, pinned

SCRIPT = ROOT / "bench" / "wrk_chat.lua"
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_PERCENTILE = re.compile(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_P95 = re.compile(r"^p95_us (\d+)$", re.MULTILINE)  # printed by wrk_chat.lua's done()


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors
    p95_ms: float = float("nan")


def available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str,
    *,
    stream: bool,
    key: str,
    seconds: int,
    connections: int = 32,
    threads: int = 1,
    cpus: set[int] | None = None,
) -> WrkResult:
    """POSTs the bench's chat completion to `url` (the server's root) for `seconds`, on
    `cpus` when given."""
    load = [f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    output = subprocess.run(
        ["wrk", *load, "-s", str(SCRIPT), url.rstrip("/") + "/v1/chat/completions"],
        env={**os.environ, "WRK_STREAM": "1" if stream else "0", "BENCH_KEY": key},
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=pinned(cpus),
    ).stdout
    return parse(output)


def parse(output: str) -> WrkResult:
    percentiles = {p: float(v) * _UNITS_MS[u] for p, v, u in _PERCENTILE.findall(output)}
    rps = _RPS.search(output)
    if rps is None or len(percentiles) != 3:
        raise ValueError(f"unexpected wrk output:\n{output}")
    non_2xx = _NON_2XX.search(output)
    socket_errors = _ERRORS.search(output)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    p95 = _P95.search(output)
    return WrkResult(
        float(rps.group(1)),
        percentiles["50"],
        percentiles["90"],
        percentiles["99"],
        errors,
        int(p95.group(1)) / 1000 if p95 else float("nan"),
    )
