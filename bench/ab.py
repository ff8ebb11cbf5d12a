"""Before/after for one change: circuitd at a git revision against the working tree, under wrk.

    .venv/bin/python bench/ab.py [--base HEAD~1] [--workers 2] [--seconds 10] [--rounds 2]
        [--modes json,stream] [--env NAME=VALUE ...]

Checks `--base` out into a temporary git worktree, starts two stacks (bench/stack.py: each
its own mock upstream and circuitd in env-only mode; the base one runs the worktree's code
through PYTHONPATH), warms both, then runs wrk (`-t1 -c32`) against them in turn, round after
round, so that both see the same machine. `--env` sets variables for the working tree's
circuitd only: with `--base HEAD` it compares one setting against the default on the same
code (e.g. `--env CIRCUIT_LOG_LEVEL=info`; the stacks run at `warning`). Compare within one
run: the VM's own noise moves absolute numbers between runs more than most single changes
do. The CPU column is the gateway's processes' user + system time per request (from /proc):
a second view of the same change, which a slower round moves too, though less than req/s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import procstat
import wrk
from stack import KEY, ROOT, running_stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="the revision to compare against")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10, help="per wrk row")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="json,stream")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="working tree only"
    )
    args = parser.parse_args()
    tree_env = dict(item.split("=", 1) for item in args.env)
    if not wrk.available():
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    with ExitStack() as stack:
        checkout = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "base"
        git = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*git, "add", "--detach", str(checkout), args.base], check=True)
        stack.callback(subprocess.run, [*git, "remove", "--force", str(checkout)], check=False)
        systems = []
        tree = "working tree" + "".join(f" {item}" for item in args.env)
        for name, env in ((args.base, {"PYTHONPATH": str(checkout)}), (tree, tree_env)):
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            running = stack.enter_context(running_stack(workdir, workers=args.workers, env=env))
            systems.append((name, running.gateway_url, running.gateway_pid))
        for _, url, _ in systems:
            wrk.run_wrk(url, stream=False, key=KEY, seconds=3)
        print("| round | mode | system | req/s | p50 ms | p99 ms | errors | CPU µs/req |")
        print("|---|---|---|---|---|---|---|---|")
        for round_ in range(1, args.rounds + 1):
            for mode in args.modes.split(","):
                for name, url, pid in systems:
                    before = sum(procstat.cpu_seconds(p) for p in procstat.tree(pid))
                    r = wrk.run_wrk(url, stream=mode == "stream", key=KEY, seconds=args.seconds)
                    cpu = sum(procstat.cpu_seconds(p) for p in procstat.tree(pid)) - before
                    per_request = cpu / max(r.rps * args.seconds, 1) * 1e6
                    print(
                        f"| {round_} | {mode} | {name} | {r.rps:,.0f} | {r.p50_ms:.2f} "
                        f"| {r.p99_ms:.2f} | {r.errors} | {per_request:.0f} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
