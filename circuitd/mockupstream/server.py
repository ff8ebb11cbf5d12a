"""`circuitd mock-upstream`: a fast fake LLM provider speaking the OpenAI, Anthropic and Gemini
dialects.

Routes (`app`): `POST /v1/chat/completions` (OpenAI: JSON, or SSE with `"stream": true`; a
tool call answer when the request's tools ask for one, see `chat`),
`POST /v1/messages` (Anthropic Messages, see `anthropic`), `GET /v1/models` (Anthropic's shape
when the request has an `anthropic-version` header), `POST /v1beta/models/{model}:generateContent`
and `:streamGenerateContent?alt=sse` (Gemini, see `gemini`), `GET /v1beta/models`, and the
control API under `/_mock/` (see `control`). Requests are validated as each provider does
(malformed JSON, missing fields -> 400 in the dialect's error shape, see each dialect's
`*_routes`); any key is
accepted unless `require_key` is set: then OpenAI routes want `Authorization: Bearer KEY` (else
401 `invalid_api_key`), Anthropic routes `x-api-key: KEY` or the Bearer form (else 401
`authentication_error`), Gemini routes `x-goog-api-key: KEY` or `?key=KEY` (else 403, or 400
API_KEY_INVALID); Anthropic routes also want `anthropic-version` (else 400). All routes share
the completion script, the fault layers and the stats (`pipeline`). Faults are chosen per
request (see `faults`).
Responses needing no clock are written synchronously from `data_received`; the rest
(latency, chunk delays, stalls, long-polls) run in one task per response, cancelled when the
client goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable

import msgspec

from circuitd.mockupstream.app import MODELS, App
from circuitd.mockupstream.faults import Fault

__all__ = ["MODELS", "App", "MockUpstream", "main", "run", "start_server"]


class MockUpstream:
    """A running mock upstream in the current event loop."""

    def __init__(self, server: asyncio.Server, app: App, host: str) -> None:
        self._server = server
        self.app = app
        self.host = host
        self.port: int = server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        """Stop listening and drop every connection (in-flight streams are cut)."""
        self._server.close()
        for conn in list(self.app.control.open):
            conn.abort()
        await self._server.wait_closed()


async def start_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    defaults: Fault | None = None,
    require_key: str | None = None,
) -> MockUpstream:
    app = App(defaults, require_key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(app.connection, host, port, backlog=1024)
    return MockUpstream(server, app, host)


def new_event_loop(use_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """uvloop's loop when asked for and installed, else asyncio's."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def run(
    host: str,
    port: int,
    *,
    defaults: Fault | None = None,
    require_key: str | None = None,
    use_uvloop: bool = True,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; `ready(port)` once bound (port 0: a free port)."""

    async def serve() -> None:
        server = await start_server(host, port, defaults=defaults, require_key=require_key)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            if ready is not None:
                ready(server.port)
            await stop.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await server.close()

    with asyncio.Runner(loop_factory=lambda: new_event_loop(use_uvloop)) as runner:
        runner.run(serve())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="circuitd mock-upstream",
        description=(
            "A fast fake LLM provider speaking the OpenAI, Anthropic and Gemini dialects,"
            " with fault injection."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--status", type=int, help="answer every chat request with this error")
    parser.add_argument("--retry-after", type=float, help="seconds, with --status")
    parser.add_argument("--latency-ms", type=float, help="delay before the response headers")
    parser.add_argument("--chunk-delay-ms", type=float, help="delay between stream chunks")
    parser.add_argument("--chunks", type=int, help="content chunks per stream")
    parser.add_argument("--tokens", type=int, help="completion length in tokens")
    parser.add_argument("--omit-usage", action="store_true", default=None, help="never send usage")
    parser.add_argument(
        "--error-event-after", type=int, help="end streams with an error event after N chunks"
    )
    parser.add_argument(
        "--require-key",
        help="accept only `Authorization: Bearer KEY` (Anthropic: `x-api-key`, Gemini:"
        " `x-goog-api-key`)",
    )
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own event loop")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    fields = (
        "status",
        "retry_after",
        "latency_ms",
        "chunk_delay_ms",
        "chunks",
        "tokens",
        "error_event_after",
    )
    given = {f: getattr(args, f) for f in (*fields, "omit_usage") if getattr(args, f) is not None}
    try:
        defaults = msgspec.convert(given, Fault)
    except msgspec.ValidationError as exc:
        parser.error(str(exc))

    def ready(port: int) -> None:
        print(f"mock-upstream listening on http://{args.host}:{port}", flush=True)

    run(
        args.host,
        args.port,
        defaults=defaults,
        require_key=args.require_key,
        use_uvloop=not args.no_uvloop,
        ready=ready,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
