"""Side-by-side load runner: mock upstream direct vs. through circuitd, under locust.

    .venv/bin/python bench/run.py --seconds 20 --users 32 --workers 1 [--transport h11|httpx]

Starts `circuitd mock-upstream`, then circuitd (env-only mode, pointed at the mock, one client
key), and runs each locust scenario against each target in turn with the same load. Prints a
Markdown table (req/s, median/p95/p99 latency, failures) and the gateway's RSS after the run.
Requires the bench extra: `.venv/bin/pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from stack import KEY, ROOT, rss_mb, running_stack

# Env-only mode's passthrough to the mock upstream, as a file so that the upstream transport
# can be chosen (`{upstream}` is the mock's /v1 URL; the client key comes from the env).
CONFIG = """
[upstream]
transport = "%s"

[providers.openai]
kind = "openai"
base_url = "{upstream}"
api_key = "sk-bench"

[passthrough]
provider = "openai"
"""


def run_locust(host: str, scenario: str, users: int, seconds: int, out: Path) -> dict[str, str]:
    prefix = out / f"{scenario}-{host.rsplit(':', 1)[1]}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "bench" / "locustfile.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{seconds}s",
            "--host",
            host,
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "ERROR",
            scenario,
        ],
        check=True,
        env={**os.environ, "BENCH_KEY": KEY},
        stdout=subprocess.DEVNULL,
    )
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Name"] == "Aggregated"]
    return rows[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--scenarios", default="ChatJSON,ChatStream")
    parser.add_argument("--transport", choices=("h11", "httpx"), default="h11")
    args = parser.parse_args()

    out = Path(tempfile.mkdtemp(prefix="circuitd-bench-"))
    with running_stack(out, workers=args.workers, config=CONFIG % args.transport) as stack:
        print("| target | scenario | req/s | p50 ms | p95 ms | p99 ms | failures |")
        print("|---|---|---|---|---|---|---|")
        for scenario in args.scenarios.split(","):
            for name, host in (
                ("mock upstream direct", stack.upstream_url),
                ("circuitd", stack.gateway_url),
            ):
                stats = run_locust(host, scenario, args.users, args.seconds, out)
                print(
                    f"| {name} | {scenario} | {float(stats['Requests/s']):.0f} "
                    f"| {stats['50%']} | {stats['95%']} | {stats['99%']} "
                    f"| {stats['Failure Count']} |",
                    flush=True,
                )
        rss = rss_mb(stack.gateway_pid)
        print(f"\ncircuitd RSS after the runs: {rss:.0f} MB ({args.workers} worker(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
