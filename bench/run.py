"""Side-by-side load runner: the mock upstream direct, circuitd, LiteLLM (`--litellm`) and
issue 8's bare passthroughs (`--passthrough`).

    .venv/bin/python bench/run.py --seconds 15 --users 32 --workers 2 [--litellm]
        [--passthrough] [--passthrough-fixes] [--scenarios ChatJSON,...] [--rate 500]
        [--fixed-rounds 3] [--transport http1|httpx] [--out FILE]

Starts `circuitd mock-upstream`, circuitd (pointed at the mock, one client key plus a key with
a tiny daily budget for BudgetHeavy) and, with `--litellm`, LiteLLM's proxy in
`bench/.venv-litellm` (installed on first use; skipped, with the reason, if that fails)
with as many workers, pointed at the same mock; with `--passthrough`, bench/passthrough.py's
bare hypercorn apps relaying to the mock through httpx's own pool and through circuitd's
`Http1Transport` (no feature at all: what the stack costs by itself); `--passthrough-fixes`
adds the `Http1Transport` one served, as circuitd is, through `circuitd.hypercorn_tcp` and
`circuitd.hypercorn_http1`. Then, each system in turn under the same load:

1. every locust scenario of bench/locustfile.py (`--users` closed-loop users, `--seconds`
   per row; FaultStorm, which storms the shared mock, runs last);
2. wrk, JSON and SSE (`-t1 -c32`), when wrk is installed: the ceiling with a cheap load
   generator. The "mock upstream direct" rows are the mock's own ceiling;
3. an open-loop fixed rate (`--rate` req/s, bench/fixed_rate.py), JSON and streams apart:
   p50/p99 to the microsecond and time to first token, and what each system adds over direct.
   A tail measured once on a shared machine is mostly the machine's: `--fixed-rounds` rounds
   (default 3), each running every system in turn, so that each system's figures are the
   median of its rounds and what it adds is the median of its differences from direct in the
   same round; a system that does not keep up in its first round (its tail is its backlog)
   is not repeated. Before each of these runs it waits (up to 60 s) for every system to go
   idle: one that goes on working through a backlog would otherwise tax the next one's tail.

Under wrk, each worker's CPU time is read from /proc before and after: the "balance" column is
the least busy worker's share of the busiest one's (1.00: evenly loaded).

Prints Markdown (appended to `--out` too), and writes results.json and chart.png
(bench/chart.py) under `--out-dir` (default: a fresh bench/out/run-*).
Requires the bench extra: `.venv/bin/pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import fixed_rate
import httpx
import litellm_stack
import passthrough
import procstat
import wrk
from stack import KEY, ROOT, running_stack

# The gateway's configuration (`{upstream}` is the mock's /v1 URL; the client key `KEY`
# comes from the env): passthrough to the mock, and the BudgetHeavy key, whose daily budget
# covers ~80 calls of the bench's request (gpt-4o-mini, ~150 prompt tokens, max_tokens 64).
CONFIG = """
[upstream]
transport = "%s"

[providers.openai]
kind = "openai"
base_url = "{upstream}"
api_key = "sk-bench"

[passthrough]
provider = "openai"

[[keys]]
id = "budget"
key = "bench-budget"
daily_usd_limit = 0.005
"""
SCENARIOS = "ChatJSON,ChatStream,Mixed,AuthFailures,BudgetHeavy,FaultStorm"


@dataclass(frozen=True)
class Target:
    name: str  # as printed
    kind: str  # BENCH_TARGET: direct, circuitd, litellm, passthrough
    url: str
    key: str
    pid: int | None  # for RSS; None for the mock
    slug: str = ""  # in file names; `kind` when empty

    @property
    def file_name(self) -> str:
        return self.slug or self.kind


@dataclass
class Row:
    tool: str  # locust, wrk, fixed
    system: str
    scenario: str
    rps: float
    p50_ms: float
    p95_ms: float  # wrk: p90
    p99_ms: float
    failures: int
    note: str = ""  # locust: statuses seen; wrk: worker balance
    ttft_p50_ms: float = float("nan")  # fixed-rate streams
    ttft_p99_ms: float = float("nan")


def run_locust(target: Target, scenario: str, args: argparse.Namespace, out: Path) -> Row:
    prefix = out / f"{scenario}-{target.file_name}"
    status_file = out / f"{scenario}-{target.file_name}-statuses.json"
    locust = [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py")]
    load = ["--headless", "-u", str(args.users), "-r", str(args.users), "-t", f"{args.seconds}s"]
    # In-flight calls finish (up to 30 s) and count: a slow failure is not left out.
    report = ["--stop-timeout", "30", "--csv", str(prefix), "--only-summary", "--loglevel", "ERROR"]
    # locust exits 1 when any request failed; the CSV says how many.
    subprocess.run(
        [*locust, *load, "--host", target.url, *report, scenario],
        check=False,
        env={
            **os.environ,
            "BENCH_KEY": target.key,
            "BENCH_TARGET": target.kind,
            "BENCH_MOCK_URL": args.mock_url,
            "BENCH_STATUS_FILE": str(status_file),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with open(f"{prefix}_stats.csv", newline="") as f:
        stats = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    statuses = json.loads(status_file.read_text()) if status_file.exists() else {}
    return Row(
        "locust",
        target.name,
        scenario,
        float(stats["Requests/s"]),
        float(stats["50%"]),
        float(stats["95%"]),
        float(stats["99%"]),
        int(stats["Failure Count"]),
        " ".join(f"{status} x{count}" for status, count in statuses.items()),
    )


def run_fixed(target: Target, stream: bool, args: argparse.Namespace) -> dict:
    """One fixed-rate run of `target`: bench/fixed_rate.py's summary."""
    command = [sys.executable, str(ROOT / "bench" / "fixed_rate.py"), target.url, "--json"]
    load = ["--rate", str(args.rate), "--seconds", str(args.seconds)]
    output = subprocess.run(
        [*command, *load, "--stream-share", "1" if stream else "0", "--key", target.key],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # Figures not measured (TTFT of JSON calls) are NaN, which JSON carries as null.
    summary: dict = {k: float("nan") if v is None else v for k, v in json.loads(output).items()}
    prefix = "stream" if stream else "json"
    summary["p50"], summary["p99"] = summary[f"{prefix}_p50"], summary[f"{prefix}_p99"]
    summary["failures"] = fixed_rate.failures(summary)
    return summary


def kept_up(summary: dict, rate: float) -> bool:
    """Answered every call, at the rate asked: its tail is latency, not a backlog."""
    return summary["failures"] == 0 and summary["achieved_rps"] >= 0.95 * rate


FIXED_FIGURES = ("achieved_rps", "p50", "p99", "json_p999", "ttft_p50", "ttft_p99")


def fixed_medians(
    rounds: list[dict], direct: list[dict], stream: bool, system: str, rate: float
) -> tuple[Row, dict]:
    """One system's fixed-rate rounds as one row: the median of each figure, and what it adds
    over direct as the median of its differences in the same rounds (`direct` round by round;
    empty for direct itself)."""

    def median(values: list[float]) -> float:
        measured = [v for v in values if v == v]  # NaN (not measured) would scramble the order
        return statistics.median(measured) if measured else float("nan")

    summary: dict = {k: median([r[k] for r in rounds]) for k in FIXED_FIGURES}
    summary["rounds"] = len(rounds)
    summary["failures"] = sum(r["failures"] for r in rounds)
    paired = list(zip(rounds, direct, strict=False))
    for k in ("p50", "p99", "ttft_p50", "ttft_p99"):
        summary[f"added_{k}"] = median([r[k] - d[k] for r, d in paired])
    summary["added_p99_rounds"] = [r["p99"] - d["p99"] for r, d in paired]
    prefix = "stream" if stream else "json"
    row = Row(
        "fixed",
        system,
        f"{prefix} @ {rate:g}/s",
        summary["achieved_rps"],
        summary["p50"],
        float("nan"),
        summary["p99"],
        summary["failures"],
        ttft_p50_ms=summary["ttft_p50"] if stream else float("nan"),
        ttft_p99_ms=summary["ttft_p99"] if stream else float("nan"),
    )
    return row, summary


def fmt(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"  # NaN: not measured


def markdown(rows: list[Row], fixed: dict[tuple[str, str], dict], args: argparse.Namespace) -> str:
    lines = [
        f"locust, {args.users} users, {args.seconds} s a row; failures are statuses the "
        "scenario does not expect (bench/locustfile.py):",
        "",
        "| system | scenario | req/s | p50 ms | p95 ms | p99 ms | failures | statuses |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {r.system} | {r.scenario} | {fmt(r.rps)} | {fmt(r.p50_ms)} | {fmt(r.p95_ms)} "
        f"| {fmt(r.p99_ms)} | {r.failures} | {r.note} |"
        for r in rows
        if r.tool == "locust"
    )
    if any(r.tool == "wrk" for r in rows):
        lines += [
            "",
            f"wrk -t1 -c32 -d{args.seconds}s --latency -s bench/wrk_chat.lua (streams: "
            "WRK_STREAM=1):",
            "",
            "| system | scenario | req/s | p50 ms | p90 ms | p99 ms | errors | balance |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r.tool == "wrk"):
            lines.append(
                f"| {r.system} | {r.scenario} | {fmt(r.rps)} | {fmt(r.p50_ms, 2)} "
                f"| {fmt(r.p95_ms, 2)} | {fmt(r.p99_ms, 2)} | {r.failures} | {r.note} |"
            )
    if args.rate <= 0:
        return "\n".join(lines)
    lines += [
        "",
        f"Open loop at a fixed {args.rate:g} req/s for {args.seconds} s (bench/fixed_rate.py; "
        "latency from each request's due time; TTFT: to the first content delta); the median "
        f"of up to {args.fixed_rounds} interleaved rounds, and what each system adds over "
        "direct as the median of its differences from direct in the same round; failures "
        "summed over the rounds:",
        "",
        "| system | load | rounds | achieved req/s | p50 ms | p99 ms | p99.9 ms | TTFT p50 ms "
        "| TTFT p99 ms | added p50 / p99 ms | added TTFT p50 / p99 ms | added p99 by round "
        "| failures |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r.tool == "fixed"):
        s = fixed[(r.system, r.scenario)]
        stream = r.scenario.startswith("stream")
        added, ttft_added, by_round = "", "", ""
        if s["added_p99_rounds"]:
            added = f"{fmt(s['added_p50'], 2)} / {fmt(s['added_p99'], 2)}"
            by_round = ", ".join(f"{v:+.2f}" for v in s["added_p99_rounds"])
            if stream:
                ttft_added = f"{fmt(s['added_ttft_p50'], 2)} / {fmt(s['added_ttft_p99'], 2)}"
        lines.append(
            f"| {r.system} | {r.scenario} | {s['rounds']} | {fmt(r.rps)} | {fmt(r.p50_ms, 2)} "
            f"| {fmt(r.p99_ms, 2)} | {fmt(s['json_p999'] if not stream else float('nan'), 2)} "
            f"| {fmt(s['ttft_p50'] if stream else float('nan'), 2)} "
            f"| {fmt(s['ttft_p99'] if stream else float('nan'), 2)} | {added} | {ttft_added} "
            f"| {by_round} | {r.failures} |"
        )
    return "\n".join(lines)


def targets(stack: ExitStack, args: argparse.Namespace, workdir: Path) -> Iterator[Target]:
    """The systems, started in turn (each stays up until the end of the run)."""
    gateway = stack.enter_context(
        running_stack(workdir, workers=args.workers, config=CONFIG % args.transport)
    )
    args.mock_url = gateway.upstream_url
    yield Target("mock upstream direct", "direct", gateway.upstream_url, KEY, None)
    yield Target(
        f"circuitd ({args.workers}w)", "circuitd", gateway.gateway_url, KEY, gateway.gateway_pid
    )
    if args.litellm:
        executable = litellm_stack.ensure_installed()
        if executable is not None:
            url, pid = stack.enter_context(
                litellm_stack.running_litellm(
                    executable, workdir, gateway.upstream_url + "/v1", workers=args.workers
                )
            )
            yield Target(f"LiteLLM ({args.workers}w)", "litellm", url, litellm_stack.KEY, pid)
    if args.passthrough:
        for transport, name in (("httpx", "httpx"), ("http1", "Http1Transport")):
            url, pid = stack.enter_context(
                passthrough.running_passthrough(
                    gateway.upstream_url, workers=args.workers, transport=transport
                )
            )
            yield Target(
                f"hypercorn + {name} passthrough ({args.workers}w)",
                "passthrough",
                url,
                KEY,
                pid,
                slug=f"passthrough-{transport}",
            )
    if args.passthrough_fixes:
        url, pid = stack.enter_context(
            passthrough.running_passthrough(
                gateway.upstream_url, workers=args.workers, transport="http1", fixes=True
            )
        )
        yield Target(
            f"hypercorn_tcp+http1 + Http1Transport passthrough ({args.workers}w)",
            "passthrough",
            url,
            KEY,
            pid,
            slug="passthrough-http1-fixes",
        )


def warm_up(target: Target, seconds: int) -> None:
    """A few seconds of traffic first, so that no system's first row pays its start-up."""
    if wrk.available():
        wrk.run_wrk(target.url, stream=False, key=target.key, seconds=seconds)
        wrk.run_wrk(target.url, stream=True, key=target.key, seconds=seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="per row")
    parser.add_argument("--users", type=int, default=32, help="locust users")
    parser.add_argument("--workers", type=int, default=2, help="circuitd's and LiteLLM's")
    parser.add_argument("--scenarios", default=SCENARIOS, help='comma-separated; "": none')
    parser.add_argument("--rate", type=float, default=500.0, help="fixed-rate req/s; 0: skip")
    parser.add_argument(
        "--fixed-rounds", type=int, default=3, help="fixed-rate rounds (interleaved), medians"
    )
    parser.add_argument("--transport", choices=("http1", "httpx"), default="http1")
    parser.add_argument("--litellm", action="store_true", help="add LiteLLM's proxy")
    parser.add_argument(
        "--passthrough", action="store_true", help="add the bare hypercorn passthroughs"
    )
    parser.add_argument(
        "--passthrough-fixes",
        action="store_true",
        help="add the Http1Transport passthrough served through circuitd's hypercorn changes",
    )
    parser.add_argument("--no-wrk", action="store_true", help="skip wrk even if installed")
    parser.add_argument("--out", type=Path, help="append the Markdown to this file")
    parser.add_argument("--out-dir", type=Path, help="results.json, chart.png, locust CSVs")
    args = parser.parse_args()

    out = args.out_dir or ROOT / "bench" / "out" / time.strftime("run-%Y%m%d-%H%M%S")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    # FaultStorm storms the mock every system shares and leaves breakers tripped: last.
    scenarios = sorted(filter(None, args.scenarios.split(",")), key=lambda s: s == "FaultStorm")
    rows: list[Row] = []
    fixed: dict[tuple[str, str], dict] = {}
    rss: dict[str, float] = {}
    with ExitStack() as stack:
        systems = list(targets(stack, args, out))
        for target in systems:
            warm_up(target, 3)
        for scenario in [s for s in scenarios if s != "FaultStorm"]:
            for target in systems:
                rows.append(run_locust(target, scenario, args, out))
                print(rows[-1], file=sys.stderr, flush=True)
        if wrk.available() and not args.no_wrk:
            for stream in (False, True):
                for target in systems:
                    pids = [] if target.pid is None else procstat.workers(target.pid)
                    before = [procstat.cpu_seconds(p) for p in pids]
                    result = wrk.run_wrk(
                        target.url, stream=stream, key=target.key, seconds=args.seconds
                    )
                    busy = [procstat.cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
                    balance = f"{min(busy) / max(busy):.2f}" if len(busy) > 1 and max(busy) else ""
                    rows.append(
                        Row(
                            "wrk",
                            target.name,
                            "stream" if stream else "JSON",
                            result.rps,
                            result.p50_ms,
                            result.p90_ms,
                            result.p99_ms,
                            result.errors,
                            balance,
                        )
                    )
                    print(rows[-1], file=sys.stderr, flush=True)
        busy_pids = [t.pid for t in systems if t.pid is not None]
        for stream in (False, True) if args.rate > 0 else ():
            runs: dict[str, list[dict]] = {t.name: [] for t in systems}
            for round_ in range(args.fixed_rounds):
                # Each round starts one system later: no system always runs right after
                # the same neighbour.
                for target in systems[round_:] + systems[:round_]:
                    done = runs[target.name]
                    if done and not kept_up(done[0], args.rate):
                        continue
                    # Tail latencies are the first to suffer from a neighbour still at work.
                    waited = procstat.wait_idle(busy_pids)
                    if waited > 2:
                        print(f"waited {waited:.0f} s for the systems to go idle", file=sys.stderr)
                    done.append(run_fixed(target, stream, args))
                    print(target.name, round_, done[-1], file=sys.stderr, flush=True)
            direct = next((runs[t.name] for t in systems if t.kind == "direct"), [])
            for target in systems:
                row, summary = fixed_medians(
                    runs[target.name],
                    [] if target.kind == "direct" else direct,
                    stream,
                    target.name,
                    args.rate,
                )
                rows.append(row)
                fixed[(target.name, row.scenario)] = summary
        for target in systems:
            if target.pid is not None:
                rss[target.name] = procstat.tree_rss_mb(target.pid)
        if "FaultStorm" in scenarios:
            for target in systems:
                httpx.post(args.mock_url + "/_mock/reset", timeout=5.0)
                rows.append(run_locust(target, "FaultStorm", args, out))
                print(rows[-1], file=sys.stderr, flush=True)

    text = markdown(rows, fixed, args)
    text += "\n\nRSS after the runs (all processes: supervisor and workers): " + ", ".join(
        f"{name} {mb:.0f} MB" for name, mb in rss.items()
    )
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {
                "args": {**vars(args), "out": str(args.out), "out_dir": str(out)},
                "rows": [asdict(r) for r in rows],
                "rss_mb": rss,
            },
            indent=1,
        )
    )
    try:
        import chart
    except ImportError as error:  # matplotlib is in the bench extra
        print(f"no chart: {error}", file=sys.stderr)
    else:
        chart.draw([asdict(r) for r in rows], out / "chart.png")
        print(f"\nchart: {out / 'chart.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
