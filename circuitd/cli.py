"""The `circuitd` command: serve, check-config, mock-upstream, version."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

import msgspec

from circuitd import __version__
from circuitd.config import Config, ConfigError, ConfigSource


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="circuitd", description="An LLM gateway daemon.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="TOML config file (default: $CIRCUIT_CONFIG, else env)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080; 0 = any free port)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")

    check = commands.add_parser("check-config", help="validate a config and print every error")
    check.add_argument("path", nargs="?", help="TOML config file (default: env-only mode)")

    commands.add_parser(
        "mock-upstream", help="run the fake OpenAI-dialect provider (see --help)", add_help=False
    )
    usage = commands.add_parser("usage", help="spend and tokens from the ledger (operator view)")
    usage.add_argument("--config", help="TOML config file (for the database path)")
    usage.add_argument("--key", help="one key id (default: every key)")
    usage.add_argument("--start", help="first day, YYYY-MM-DD (default: this month's first)")
    usage.add_argument("--end", help="last day, YYYY-MM-DD (default: today, UTC)")
    usage.add_argument("--group-by", choices=["model", "provider", "day"])
    usage.add_argument("--json", action="store_true", help="print the report as JSON")

    commands.add_parser("version", help="print the version")
    return parser


def _load(source: ConfigSource) -> tuple[Config, dict[str, str]] | None:
    try:
        return source.load()
    except ConfigError as exc:
        print(f"circuitd: invalid configuration ({exc.source}):", file=sys.stderr)
        for error in exc.errors:
            print(f"  - {error}", file=sys.stderr)
        return None


def _usage(args: argparse.Namespace) -> int:
    from circuitd.errors import GatewayError
    from circuitd.gateway.usage import parse_usage_query, read_report, utc_today

    loaded = _load(ConfigSource(args.config))
    if loaded is None:
        return 1
    config, _ = loaded
    if not Path(config.store.path).exists():
        print(f"circuitd: no ledger at {config.store.path}", file=sys.stderr)
        return 1
    today = utc_today()
    given = {"start": args.start, "end": args.end, "group_by": args.group_by}
    try:
        query = parse_usage_query(urlencode({k: v for k, v in given.items() if v}).encode(), today)
    except GatewayError as exc:
        print(f"circuitd: {exc.message}", file=sys.stderr)
        return 2
    limit = next((k.daily_usd_limit for k in config.keys if k.id == args.key), None)
    report = read_report(
        config.store.path,
        args.key,
        query,
        today=today,
        daily_limit_usd=limit if limit is not None else config.limits.daily_usd,
    )
    if args.json:
        print(msgspec.json.encode(report).decode())
        return 0
    who = f"key {args.key}" if args.key else "all keys"
    print(f"{who}, {report.period_start} .. {report.period_end} (UTC)")
    rows = report.data or []
    if rows:
        print(
            f"  {'group':<32} {'requests':>9} {'tokens in':>11} {'tokens out':>11} {'cost USD':>12}"
        )
        for g in rows:
            print(
                f"  {g.group or '-':<32} {g.request_count:>9} {g.tokens_input:>11} "
                f"{g.tokens_output:>11} {g.total_cost_usd:>12.6f}"
            )
    print(
        f"  {'total':<32} {report.request_count:>9} {report.tokens_input:>11} "
        f"{report.tokens_output:>11} {report.total_cost_usd:>12.6f}"
    )
    if report.budget_usd is not None:
        print(f"  today: {report.budget_spent_usd:.6f} of {report.budget_usd:.2f} USD daily budget")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["mock-upstream"]:
        from circuitd.mockupstream.server import main as mock_main

        return mock_main(args_list[1:])
    args = _parser().parse_args(args_list)
    if args.command == "version":
        print(f"circuitd {__version__}")
        return 0
    if args.command == "check-config":
        loaded = _load(ConfigSource(args.path))
        if loaded is None:
            return 1
        print(f"{args.path or '<env>'}: OK")
        return 0
    if args.command == "usage":
        return _usage(args)
    # Until the config has been read a reload has nothing to do (reading it is one), and
    # SIGHUP's default action would end the process while it imports (`systemctl reload`
    # just after `start`). The server's own handlers take over from here.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        from circuitd.server import serve  # imports hypercorn: not needed by the other commands
    except KeyboardInterrupt:  # Ctrl-C before it listens for signals: nothing serves yet
        return 130
    # Command-line flags go through the same validated path as their environment variables.
    flags = {"host": "CIRCUIT_HOST", "port": "CIRCUIT_PORT", "workers": "CIRCUIT_WORKERS"}
    overrides = tuple(
        (var, str(value)) for k, var in flags.items() if (value := getattr(args, k)) is not None
    )
    source = ConfigSource(args.config, overrides)
    loaded = _load(source)
    if loaded is None:
        return 1
    config, env = loaded
    try:
        return serve(config, env, source)
    except KeyboardInterrupt:  # Ctrl-C before it listens for signals: nothing serves yet
        return 130


if __name__ == "__main__":
    sys.exit(main())
