"""The `circuitd` command: serve, check-config, mock-upstream, version."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
    # Command-line flags go through the same validated path as their environment variables.
    flags = {"host": "CIRCUIT_HOST", "port": "CIRCUIT_PORT", "workers": "CIRCUIT_WORKERS"}
    overrides = tuple(
        (var, str(value)) for k, var in flags.items() if (value := getattr(args, k)) is not None
    )
    source = ConfigSource(args.config, overrides)
    loaded = _load(source)
    if loaded is None:
        return 1
    from circuitd.server import serve  # imports hypercorn: not needed by the other commands

    config, env = loaded
    return serve(config, env, source)


if __name__ == "__main__":
    sys.exit(main())
