"""Throughput and latency over worker counts: issue 8's scale target in one prepared run.

    .venv/bin/python bench/scale.py [--workers 1,2,4,8,16] [--seconds 10]
        [--gateway-cpus 0-11] [--load-cpus 12-15] [--threads 4] [--connections 16]
        [--rate 10000] [--load-procs 0] [--out FILE]

Made for a machine with many cores (the target: near-linear scaling to 8+ workers, 10,000
req/s with p95 ≤ 5 ms added on 16 cores); it runs anywhere, at any worker counts. For each
worker count N it starts the bench stack (bench/stack.py: the mock upstream and circuitd
with every feature on) with circuitd confined to `--gateway-cpus` and the mock upstream and
the load generators to `--load-cpus` (so that neither takes the other's cores), then:

1. wrk closed loop, JSON (`-t threads`, `-c` connections times N): the ceiling in req/s, p50 /
   p95 / p99, the workers' CPU balance (the least busy worker's CPU time over the busiest's)
   and the scaling: req/s over N times the one-worker req/s (1.00: linear);
2. with `--rate`: an open loop at that rate (bench/fixed_rate.py in `--load-procs`
   processes, default one per 2,000 req/s, their latencies merged exactly), p50 / p95 / p99
   and what circuitd adds over the mock direct at the same rate (direct measured right
   before, for each worker count). A worker count whose wrk ceiling is under 1.1 times the
   rate is not run open-loop: its latency would be its backlog.

Prints Markdown (appended to `--out` too). Requires wrk (`apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import procstat
import wrk
from fixed_rate import failures, percentile
from stack import KEY, ROOT, pinned, running_stack

PER_LOAD_PROC = 2000  # req/s one fixed_rate.py process sends on time (a conservative figure)


def cpu_list(text: str | None) -> set[int] | None:
    """ "0-11,14" → {0, ..., 11, 14}; None stays None (no confinement)."""
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


@dataclass(frozen=True)
class Open:
    """An open-loop run's merged latencies (ms)."""

    achieved_rps: float
    p50: float
    p95: float
    p99: float
    failures: int


def open_loop(url: str, args: argparse.Namespace, load_cpus: set[int] | None) -> Open:
    """`args.rate` req/s of JSON calls for `args.seconds`, from `procs` processes at once."""
    procs = args.load_procs or max(1, math.ceil(args.rate / PER_LOAD_PROC))
    with tempfile.TemporaryDirectory() as tmp:
        raws = [Path(tmp) / f"raw-{i}.json" for i in range(procs)]
        command = [sys.executable, str(ROOT / "bench" / "fixed_rate.py"), url, "--json"]
        load = ["--rate", str(args.rate / procs), "--seconds", str(args.seconds), "--key", KEY]
        running: list[subprocess.Popen[str]] = []
        try:
            for raw in raws:
                running.append(  # noqa: PERF401 - one at a time: a failed start leaves the rest to the finally
                    subprocess.Popen(
                        [*command, *load, "--raw", str(raw)],
                        stdout=subprocess.PIPE,
                        text=True,
                        preexec_fn=pinned(load_cpus),
                    )
                )
            summaries = [json.loads(p.communicate()[0]) for p in running]
        finally:
            for p in running:  # one that failed leaves none of the others behind
                if p.poll() is None:
                    p.kill()
                    p.wait()
        latencies = [ms for raw in raws for ms in json.loads(raw.read_bytes())["json_ms"]]
    return Open(
        sum(s["achieved_rps"] for s in summaries),
        percentile(latencies, 50),
        percentile(latencies, 95),
        percentile(latencies, 99),
        sum(failures(s) for s in summaries),
    )


def behind(run: Open, rate: float) -> str:
    """A note when the open loop did not get its rate answered: its latency is a backlog."""
    return "" if run.achieved_rps >= 0.95 * rate else " (fell behind: the tail is a backlog)"


def closed_loop(
    url: str, seconds: int, connections: int, args: argparse.Namespace, cpus: set[int] | None
) -> wrk.WrkResult:
    """wrk's JSON calls from `args.threads` threads over `connections` for `seconds`."""
    return wrk.run_wrk(
        url,
        stream=False,
        key=KEY,
        seconds=seconds,
        connections=connections,
        threads=args.threads,
        cpus=cpus,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4,8,16", help="worker counts, in turn")
    parser.add_argument("--seconds", type=int, default=10, help="per run")
    parser.add_argument("--gateway-cpus", help='circuitd\'s cores, e.g. "0-11" (default: any)')
    parser.add_argument("--load-cpus", help="the mock's and the load's cores (default: any)")
    parser.add_argument("--threads", type=int, default=4, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections per worker")
    parser.add_argument("--rate", type=float, default=0.0, help="open-loop req/s; 0: none")
    parser.add_argument("--load-procs", type=int, default=0, help="fixed_rate.py processes")
    parser.add_argument("--out", type=Path, help="append the Markdown to this file")
    args = parser.parse_args()
    if not wrk.available():
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    gateway_cpus, load_cpus = cpu_list(args.gateway_cpus), cpu_list(args.load_cpus)
    counts = [int(n) for n in args.workers.split(",")]
    rows: list[str] = []
    single: float | None = None
    for n in counts:
        with running_stack(
            Path(tempfile.mkdtemp()), workers=n, gateway_cpus=gateway_cpus, upstream_cpus=load_cpus
        ) as stack:
            connections = args.connections * n
            closed_loop(stack.gateway_url, 2, connections, args, load_cpus)  # warm-up
            pids = procstat.workers(stack.gateway_pid) or [stack.gateway_pid]
            before = [procstat.cpu_seconds(p) for p in pids]
            ceiling = closed_loop(stack.gateway_url, args.seconds, connections, args, load_cpus)
            busy = [procstat.cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
            balance = min(busy) / max(busy) if max(busy) else float("nan")
            single = ceiling.rps if n == counts[0] and n == 1 else single
            scaling = f"{ceiling.rps / (n * single):.2f}" if single else "-"
            opened = "| - | - | - | - | - | - |"
            if args.rate and ceiling.rps >= 1.1 * args.rate:
                direct = open_loop(stack.upstream_url, args, load_cpus)
                run = open_loop(stack.gateway_url, args, load_cpus)
                opened = (
                    f"| {run.achieved_rps:,.0f} | {run.p50:.2f} / {run.p95:.2f} / {run.p99:.2f} "
                    f"| {direct.p50:.2f} / {direct.p95:.2f} / {direct.p99:.2f} "
                    f"| {run.p95 - direct.p95:+.2f} | {run.p99 - direct.p99:+.2f} "
                    f"| {run.failures + direct.failures}{behind(run, args.rate)} |"
                )
            rows.append(
                f"| {n} | {connections} | {ceiling.rps:,.0f} | {scaling} "
                f"| {ceiling.p50_ms:.2f} / {ceiling.p95_ms:.2f} / {ceiling.p99_ms:.2f} "
                f"| {ceiling.errors} | {balance:.2f} {opened}"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    text = "\n".join(
        [
            f"bench/scale.py --workers {args.workers} --seconds {args.seconds} "
            f"--gateway-cpus {args.gateway_cpus or 'any'} --load-cpus {args.load_cpus or 'any'} "
            f"--threads {args.threads} --connections {args.connections} --rate {args.rate:g}",
            "",
            "| workers | wrk connections | req/s | scaling | p50 / p95 / p99 ms | errors "
            "| CPU balance | open-loop req/s | p50 / p95 / p99 ms | direct p50 / p95 / p99 ms "
            "| added p95 ms | added p99 ms | failures |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
