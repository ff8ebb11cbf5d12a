"""CPU per log line: the "call settled" line circuitd writes for each call at `info`.

    python bench/log_bench.py [--lines 20000] [--out /tmp/circuitd-log-bench.jsonl]

Configures logging as `circuitd serve` does (`obs.logs.configure_logging`), with stderr sent
to `--out`, then logs `--lines` lines with the settlement's fields and prints this process's
CPU time per line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from circuitd.obs.logs import configure_logging

FIELDS = {
    "key_id": "key-a",
    "model": "gpt-4o-mini",
    "provider": "openai",
    "deployment": "openai/gpt-4o-mini",
    "stream": False,
    "status": "ok",
    "status_code": 200,
    "error_code": None,
    "latency_ms": 3.2,
    "ttft_ms": None,
    "tokens_input": 178,
    "tokens_output": 16,
    "usage_source": "provider",
    "cost_usd": 0.000037,
    "attempts": 1,
    "persisted": True,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--out", default="/tmp/circuitd-log-bench.jsonl")
    args = parser.parse_args()
    stdout = sys.stdout
    with open(args.out, "w") as out:
        sys.stderr = out
        configure_logging("info")
        log = logging.getLogger("circuitd.calls")
        start = time.process_time()
        for _ in range(args.lines):
            log.info("call settled", extra=FIELDS)
        cpu = time.process_time() - start
    print(f"{cpu / args.lines * 1e6:.1f} µs CPU per line ({args.lines:,} lines)", file=stdout)


if __name__ == "__main__":
    main()
