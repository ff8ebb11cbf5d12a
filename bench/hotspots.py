"""Where a worker's time goes under load: py-spy on one circuitd worker while wrk runs.

    .venv/bin/python bench/hotspots.py [--stream] [--workers 1] [--seconds 10]
        [--under "App._chat"] [--raw out.txt]

Starts the bench stack (bench/stack.py), warms it, then records one worker with
`py-spy record --gil` (on-CPU Python time only: a thread waiting in SQLite or a socket is not
counted) for the length of a wrk run, and prints the share of samples by package (the leaf
frame's), the top functions by self time, and the top functions by inclusive time — or,
with `--under F`, what the functions whose name starts with F spend their time in.
py-spy needs to read the worker's memory: run as root or with ptrace allowed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import procstat
import wrk
from stack import KEY, running_stack

_FILE = re.compile(r"\(([^()]*)\)$")
_LINE = re.compile(r":\d+\)$")
PACKAGES = ("trio", "hypercorn", "h11", "httpx", "circuitd", "prometheus_client", "msgspec")


def package(frame: str) -> str:
    found = _FILE.search(frame)
    path = found.group(1) if found else frame
    for name in PACKAGES:
        if f"/{name}/" in path or path.startswith(f"{name}/"):
            return name
    return "stdlib and other"


def stacks(raw: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) output, line numbers dropped: one entry per function."""
    out = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            out.append(([_LINE.sub(")", f) for f in stack.split(";")], int(count)))
    return out


def report(samples: list[tuple[list[str], int]], under: str | None, top: int = 25) -> str:
    total = sum(n for _, n in samples) or 1
    by_package: Counter[str] = Counter()
    by_self: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    children: Counter[str] = Counter()
    for frames, n in samples:
        by_package[package(frames[-1])] += n
        by_self[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
        if under is not None:
            at = next((i for i, f in enumerate(frames) if f.startswith(under)), None)
            if at is not None:
                children[frames[at + 1] if at + 1 < len(frames) else "<self>"] += n

    def table(title: str, counts: Counter[str]) -> list[str]:
        rows = [f"{n / total * 100:5.1f}%  {name}" for name, n in counts.most_common(top)]
        return ["", title, *rows]

    lines = [f"{total} samples"]
    lines += table("by package (leaf frame)", by_package)
    lines += table("self time", by_self)
    if under is None:
        lines += table("inclusive time", inclusive)
    else:
        lines += table(f"inside {under}*", children)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", action="store_true", help="SSE instead of JSON")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--under", help="break down the time of functions named like this")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw output here")
    args = parser.parse_args()
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None or not wrk.available():
        print("needs py-spy (the bench extra) and wrk", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as workdir:
        raw = args.raw or Path(workdir) / "profile.txt"
        with running_stack(Path(workdir), workers=args.workers) as stack:
            wrk.run_wrk(stack.gateway_url, stream=args.stream, key=KEY, seconds=3)
            worker = procstat.workers(stack.gateway_pid)[0]
            record = [spy, "record", "--gil", "-r", "200", "-f", "raw", "-o", str(raw)]
            seconds = str(max(1, args.seconds - 1))
            with subprocess.Popen(
                [*record, "-d", seconds, "-p", str(worker)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ):
                result = wrk.run_wrk(
                    stack.gateway_url, stream=args.stream, key=KEY, seconds=args.seconds
                )
            print(f"wrk: {result.rps:,.0f} req/s with {args.workers} worker(s)")
        print(report(stacks(raw), args.under))
    return 0


if __name__ == "__main__":
    sys.exit(main())
