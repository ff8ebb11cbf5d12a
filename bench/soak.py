"""Soak: circuitd under a moderate fixed rate for minutes; memory and file descriptors over time.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 200] [--stream-share 0.3]
        [--workers 2] [--sample-s 10] [--warmup-s 60] [--out FILE]

Starts the mock upstream and circuitd (env-only mode, `--workers` processes) as bench/run.py
does, drives it open-loop with bench/fixed_rate.py (its own process), and every `--sample-s`
seconds reads each worker's RSS and open file descriptors from /proc. Reports, per worker,
RSS idle at start (before the load), after the warm-up and at the end, growth from after the
warm-up to the end (issue 8: ≤ 60 MB per worker after warm-up, ≤ 5% growth over 10 minutes,
no fd growth), and the load's own latency and statuses (a soak that failed calls proves
nothing). Prints Markdown, appended to `--out` too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import procstat
from stack import KEY, ROOT, running_stack


@dataclass(frozen=True)
class Sample:
    at_s: float  # since the load started (negative: before it)
    rss_mb: dict[int, float]  # per worker pid
    fds: dict[int, int]
    supervisor_rss_mb: float
    parts_mb: dict[int, dict[str, float]]  # per worker: RSS by kind (procstat.rss_parts_mb)


def sample(gateway_pid: int, workers: list[int], at_s: float) -> Sample:
    return Sample(
        at_s,
        {pid: procstat.rss_mb(pid) for pid in workers},
        {pid: procstat.open_fds(pid) for pid in workers},
        procstat.rss_mb(gateway_pid) if gateway_pid not in workers else 0.0,
        {pid: procstat.rss_parts_mb(pid) for pid in workers},
    )


def started_workers(gateway_pid: int, count: int, timeout: float = 30.0) -> list[int]:
    """The worker pids, once all `count` have been started by the supervisor."""
    deadline = time.monotonic() + timeout
    while (found := procstat.workers(gateway_pid)) and len(found) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(found)} of {count} workers after {timeout}s")
        time.sleep(0.1)  # polling /proc: there is no event for a child appearing
    return found


def nearest(samples: list[Sample], at_s: float) -> Sample:
    return min(samples, key=lambda s: abs(s.at_s - at_s))


def report(samples: list[Sample], load: dict, args: argparse.Namespace) -> str:
    start, end = samples[0], samples[-1]
    warm = nearest(samples, args.warmup_s)
    lines = [
        f"Soak: {args.minutes:g} min at {args.rate:g} req/s open loop "
        f"({args.stream_share:.0%} streams), circuitd with {args.workers} worker(s); "
        f"a sample every {args.sample_s:g} s; warm-up {args.warmup_s:g} s.",
        "",
        "| worker | RSS idle at start MB | after warm-up MB | end MB | max MB "
        "| growth after warm-up | fds start / after warm-up / end / max |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, pid in enumerate(end.rss_mb, 1):
        rss = [s.rss_mb[pid] for s in samples]
        fds = [s.fds[pid] for s in samples]
        growth = (end.rss_mb[pid] - warm.rss_mb[pid]) / warm.rss_mb[pid] * 100
        lines.append(
            f"| {n} | {start.rss_mb[pid]:.1f} | {warm.rss_mb[pid]:.1f} | {end.rss_mb[pid]:.1f} "
            f"| {max(rss):.1f} | {growth:+.1f}% "
            f"| {start.fds[pid]} / {warm.fds[pid]} / {end.fds[pid]} / {max(fds)} |"
        )
    lines.append(
        "\nRSS by kind, after warm-up → end (MB; anon is the heap, file the mapped files): "
        + "; ".join(
            f"worker {n}: "
            + ", ".join(
                f"{kind} {warm.parts_mb[pid][kind]:.1f} → {end.parts_mb[pid][kind]:.1f}"
                for kind in end.parts_mb[pid]
            )
            for n, pid in enumerate(end.parts_mb, 1)
        )
    )
    if end.supervisor_rss_mb:
        lines.append(
            f"\nSupervisor RSS: {start.supervisor_rss_mb:.1f} MB at start, "
            f"{end.supervisor_rss_mb:.1f} MB at the end."
        )
    lines.append(
        f"\nLoad: {load['achieved_rps']:.0f} req/s achieved; JSON p50 {load['json_p50']:.2f} ms, "
        f"p99 {load['json_p99']:.2f} ms; stream TTFT p50 {load['ttft_p50']:.2f} ms, "
        f"p99 {load['ttft_p99']:.2f} ms; statuses {load['statuses']}; "
        f"errors {load['errors'] or 'none'}."
    )
    lines.append(
        "\nRSS per worker over time (MB): "
        + ", ".join(
            f"{s.at_s:.0f}s " + "/".join(f"{v:.1f}" for v in s.rss_mb.values())
            for s in [*samples[:: max(1, len(samples) // 12)], end]
        )
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--stream-share", type=float, default=0.3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--out", type=Path, help="append the Markdown to this file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="circuitd-soak-"))
    seconds = args.minutes * 60
    with running_stack(workdir, workers=args.workers) as stack:
        workers = started_workers(stack.gateway_pid, args.workers)
        for _ in range(8 * args.workers):  # new connections: each worker has served by now
            httpx.get(stack.gateway_url + "/health", timeout=10.0)
        samples = [sample(stack.gateway_pid, workers, 0.0)]
        command = [sys.executable, str(ROOT / "bench" / "fixed_rate.py"), stack.gateway_url]
        options = ["--rate", str(args.rate), "--seconds", str(seconds), "--json"]
        load = subprocess.Popen(
            [*command, *options, "--stream-share", str(args.stream_share), "--key", KEY],
            stdout=subprocess.PIPE,
            text=True,
        )
        began = time.monotonic()
        while load.poll() is None:
            time.sleep(args.sample_s)  # sampling period, not synchronisation
            if load.poll() is None:
                samples.append(sample(stack.gateway_pid, workers, time.monotonic() - began))
                last = samples[-1]
                print(
                    f"{last.at_s:6.0f}s RSS {list(last.rss_mb.values())} fds "
                    f"{list(last.fds.values())}",
                    file=sys.stderr,
                    flush=True,
                )
        assert load.stdout is not None
        summary = json.loads(load.stdout.read())
    text = report(samples, summary, args)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0 if load.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
