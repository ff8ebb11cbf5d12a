"""`circuitd mock-upstream`: a fast fake LLM provider speaking the OpenAI dialect.

Routes: `POST /v1/chat/completions` (JSON, or SSE with `"stream": true`), `GET /v1/models`,
and the control API under `/_mock/` (see `control`). Requests are validated as OpenAI does
(malformed JSON, missing `model`/`messages` -> 400 `invalid_request_error`); any Bearer key
is accepted unless `require_key` is set, then others get OpenAI's 401 `invalid_api_key`.
Faults are chosen per request (see `faults`). Responses needing no clock are written
synchronously from `data_received`; the rest (latency, chunk delays, stalls, long-polls) run
in one task per response, cancelled when the client goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from circuitd.mockupstream.control import Control
from circuitd.mockupstream.faults import NO_FAULT, Fault, error_body
from circuitd.mockupstream.protocol import Connection, Headers, Request
from circuitd.mockupstream.script import plan_completion, render_completion, render_stream, sse

__all__ = ["MODELS", "MockUpstream", "main", "run", "start_server"]

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "mock-1")
SSE = b"text/event-stream; charset=utf-8"
MALFORMED = b"data: {not json\n\n"


class _StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool | None = None


class _Message(msgspec.Struct, frozen=True):
    role: str
    content: str | list[Any] | None = None


class _ChatBody(msgspec.Struct, frozen=True):
    """The fields the mock reads; the rest of the body is ignored (and kept in the log)."""

    model: str
    messages: list[_Message]
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    mock: Fault | None = None


_chat_body = msgspec.json.Decoder(_ChatBody)
_encode = msgspec.json.Encoder().encode
_PARAM_AT = re.compile(r"at `\$\.(\w+)")
_PARAM_MISSING = re.compile(r"missing required field `(\w+)`")


class _Step:
    """Markers between the SSE frames of a stream: where time or a fault intervenes."""


DELAY, STALL, CUT = _Step(), _Step(), _Step()


class App:
    def __init__(self, defaults: Fault | None, require_key: str | None) -> None:
        self.defaults = defaults
        self.auth = None if require_key is None else b"Bearer " + require_key.encode()
        self.control = Control()
        self._ids = itertools.count(1)
        self._models = _encode(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "mock"}
                    for m in MODELS
                ],
            }
        )

    def connection(self) -> Connection:
        self.control.connections += 1
        return Connection(self.handle, self.control.open, error_body)

    def handle(self, request: Request, conn: Connection) -> None:
        path, method = request.path, request.method
        if path == "/v1/chat/completions" and method == "POST":
            self.chat(request, conn)
        elif path == "/v1/models" and method == "GET":
            if self._authorised(request):
                conn.respond(200, self._models)
            else:
                conn.respond(401, _bad_key())
        elif not (path.startswith("/_mock/") and self.control.route(request, conn)):
            status = 405 if path in ("/v1/chat/completions", "/v1/models") else 404
            conn.respond(status, error_body(status, f"Invalid URL ({method} {path})", code=None))

    def _authorised(self, request: Request) -> bool:
        return self.auth is None or request.headers.get(b"authorization") == self.auth

    # -- chat ------------------------------------------------------------------------------

    def chat(self, request: Request, conn: Connection) -> None:
        control = self.control
        control.received(request)
        if not self._authorised(request):
            self._answer(conn, 401, _bad_key())
            return
        try:
            body = _chat_body.decode(request.body)
        except msgspec.ValidationError as exc:
            match = _PARAM_AT.search(str(exc)) or _PARAM_MISSING.search(str(exc))
            param = match.group(1) if match else None
            self._answer(conn, 400, error_body(400, f"Invalid request: {exc}", param=param))
            return
        except msgspec.DecodeError:
            message = (
                "We could not parse the JSON body of your request. (HINT: This likely means"
                " you aren't using your HTTP library correctly. The OpenAI API expects a JSON"
                " payload, but what was sent was not valid JSON.)"
            )
            self._answer(conn, 400, error_body(400, message))
            return
        if not body.messages:
            message = "Invalid 'messages': empty array. Expected an array with minimum length 1."
            self._answer(conn, 400, error_body(400, message, param="messages"))
            return
        fault = (body.mock or NO_FAULT).over(control.faults.take()).over(self.defaults)
        if fault.timed:
            control.in_flight += 1
            conn.spawn(lambda: self._answer_later(conn, body, fault), self._ended)
            return
        if fault.failing:
            self._fail(conn, fault)
        elif body.stream:
            steps = self._stream(conn, body, fault)
            frames = [s for s in steps if isinstance(s, bytes)]
            conn.send(b"".join(frames))
            if CUT in steps:  # (a stall is `timed`: never on this path)
                conn.cut()
            else:
                conn.end_stream()
        else:
            self._complete(conn, body, fault)

    async def _answer_later(self, conn: Connection, body: _ChatBody, fault: Fault) -> None:
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.failing:
            self._fail(conn, fault)
        elif not body.stream:
            self._complete(conn, body, fault)
        else:
            for step in self._stream(conn, body, fault):
                if step is DELAY:
                    await asyncio.sleep((fault.chunk_delay_ms or 0) / 1000)
                elif step is STALL:
                    await conn.wait_closed()  # the peer leaving also cancels this task
                elif step is CUT:
                    conn.cut()
                    return
                elif isinstance(step, bytes):
                    conn.send(step)
                    await conn.drain()
            conn.end_stream()

    def _ended(self, completed: bool) -> None:
        control = self.control
        control.in_flight -= 1
        if not completed:  # the client went away (or the server is closing)
            control.disconnects += 1
        control.notify()

    def _answer(self, conn: Connection, status: int, body: bytes, headers: Headers = ()) -> None:
        self.control.statuses[status] += 1
        conn.respond(status, body, headers=[*self._headers(), *headers])

    def _headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-request-id", b"req_mock_%d" % next(self._ids))]

    def _fail(self, conn: Connection, fault: Fault) -> None:
        assert fault.status is not None
        headers = []
        if fault.retry_after is not None:
            headers.append((b"retry-after", f"{fault.retry_after:g}".encode()))
            headers.append((b"retry-after-ms", b"%d" % round(fault.retry_after * 1000)))
        self._answer(conn, fault.status, error_body(fault.status, fault.message), headers)

    def _complete(self, conn: Connection, body: _ChatBody, fault: Fault) -> None:
        plan = plan_completion(body, tokens=fault.tokens, chunks=fault.chunks)
        rendered = render_completion(
            plan,
            id=f"chatcmpl-mock{next(self._ids)}",
            created=int(time.time()),
            model=body.model,
            include_usage=not fault.omit_usage,
        )
        self._answer(conn, 200, rendered)

    def _stream(self, conn: Connection, body: _ChatBody, fault: Fault) -> list[bytes | _Step]:
        """Start the SSE response and plan its frames, with the fault's markers between."""
        self.control.statuses[200] += 1
        conn.start_stream(200, SSE, [(b"cache-control", b"no-cache"), *self._headers()])
        plan = plan_completion(body, tokens=fault.tokens, chunks=fault.chunks)
        options = body.stream_options
        payloads = render_stream(
            plan,
            id=f"chatcmpl-mock{next(self._ids)}",
            created=int(time.time()),
            model=body.model,
            include_usage=bool(options and options.include_usage) and not fault.omit_usage,
        )
        return list(_steps(payloads.head, payloads.content, payloads.tail, fault))


def _steps(
    head: bytes, content: list[bytes], tail: list[bytes], fault: Fault
) -> Iterator[bytes | _Step]:
    yield sse(head)
    for k in range(len(content) + 1):  # k: content chunks sent so far
        if k == fault.malformed_after:
            yield MALFORMED
        if k == fault.stall_after:
            yield STALL
            return
        if k == fault.cut_after:
            yield CUT
            return
        if fault.chunk_delay_ms:
            yield DELAY
        if k < len(content):
            yield sse(content[k])
    yield from (sse(payload) for payload in tail)


def _bad_key() -> bytes:
    return error_body(401, "Incorrect API key provided.", code="invalid_api_key")


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
        description="A fast fake LLM provider speaking the OpenAI dialect, with fault injection.",
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
    parser.add_argument("--require-key", help="accept only `Authorization: Bearer KEY`")
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own event loop")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    fields = ("status", "retry_after", "latency_ms", "chunk_delay_ms", "chunks", "tokens")
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
