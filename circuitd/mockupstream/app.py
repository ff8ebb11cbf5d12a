"""The mock's routes: both chat dialects over one answering pipeline (see `server`).

`App.handle` routes a parsed request. A chat request in either dialect is authenticated,
validated as its provider does, and turned into a `_Job` (its effective fault and how to
render the error, the JSON answer and the SSE frames); `_run` then answers any job the same
way: at once when no clock is needed, else from a task (latency, chunk delays, stalls).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from circuitd.core.embeddings import InputError
from circuitd.mockupstream import anthropic, anthropic_render, gemini, gemini_render
from circuitd.mockupstream.azure import AzureRoute, azure_route
from circuitd.mockupstream.control import Control
from circuitd.mockupstream.embeddings import decode_embeddings, render_embeddings
from circuitd.mockupstream.faults import (
    CUT,
    DELAY,
    NO_FAULT,
    STALL,
    Fault,
    Frames,
    Step,
    error_body,
    request_key,
    stream_steps,
)
from circuitd.mockupstream.protocol import Connection, Headers, Request
from circuitd.mockupstream.script import plan_completion, render_completion, render_stream, sse

__all__ = ["MODELS", "App"]

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


@dataclass(slots=True)
class _Job:
    """One valid request, ready to be answered in its dialect."""

    fault: Fault
    stream: bool
    headers: list[tuple[bytes, bytes]]  # on every answer: the request id
    error: Callable[[int, str | None], bytes]  # the error body for a failing fault
    complete: Callable[[], bytes]  # the JSON answer
    frames: Callable[[], Frames]  # the SSE answer
    retry_header: bool = True  # False: the dialect tells the wait in the error body (Gemini)


class App:
    def __init__(self, defaults: Fault | None, require_key: str | None) -> None:
        self.defaults = defaults
        self.auth = None if require_key is None else b"Bearer " + require_key.encode()
        self.api_key = None if require_key is None else require_key.encode()
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
        self._anthropic_models = anthropic_render.models_body()
        self._gemini_models = gemini_render.models_body()

    def connection(self) -> Connection:
        self.control.connections += 1
        return Connection(self.handle, self.control.open, error_body)

    def handle(self, request: Request, conn: Connection) -> None:
        path, method = request.path, request.method
        if path == "/v1/chat/completions" and method == "POST":
            self.chat(request, conn)
        elif path == "/v1/embeddings" and method == "POST":
            self.embeddings(request, conn)
        elif method == "POST" and (azure := azure_route(path, request.query)) is not None:
            route = self.chat if azure.operation == "chat/completions" else self.embeddings
            route(request, conn, azure)
        elif path == "/v1/messages" and method == "POST":
            self.messages(request, conn)
        elif path == "/v1/models" and method == "GET":
            self.models(request, conn)
        elif (target := gemini.route(path)) is not None and method == "POST":
            self.generate(request, conn, *target)
        elif path == "/v1beta/models" and method == "GET":
            problem = gemini.key_problem(request.headers, request.query, self.api_key)
            conn.respond(200, self._gemini_models) if problem is None else conn.respond(*problem)
        elif not (path.startswith("/_mock/") and self.control.route(request, conn)):
            status = 405 if path in ("/v1/chat/completions", "/v1/messages", "/v1/models") else 404
            conn.respond(status, error_body(status, f"Invalid URL ({method} {path})", code=None))

    def _authorised(self, request: Request, azure: AzureRoute | None = None) -> bool:
        if self.auth is None or request.headers.get(b"authorization") == self.auth:
            return True
        return azure is not None and request.headers.get(b"api-key") == self.api_key

    def _openai_start(
        self, request: Request, conn: Connection, azure: AzureRoute | None
    ) -> list[tuple[bytes, bytes]] | None:
        """Logs an OpenAI-dialect request and checks its key (and Azure's api-version): the
        answer's headers, or None once refused."""
        self.control.received(request)
        headers = [(b"x-request-id", self._request_id())]
        if not self._authorised(request, azure):
            self._answer(conn, 401, _bad_key(), headers)
            return None
        if azure is not None and azure.missing_version:
            self._answer(conn, 404, error_body(404, "Resource not found", code="404"), headers)
            return None
        return headers

    def _fault(self, mock: Fault | None, request: Request) -> Fault:
        queue = self.control.faults
        key = request_key(request.headers) if queue else None  # for faults of one key
        return (mock or NO_FAULT).over(queue.take(key)).over(self.defaults)

    def _request_id(self) -> bytes:
        return b"req_mock_%d" % next(self._ids)

    def models(self, request: Request, conn: Connection) -> None:
        if b"anthropic-version" in request.headers:
            problem = self._anthropic_key_problem(request)
            if problem is None:
                conn.respond(200, self._anthropic_models)
            else:
                conn.respond(401, anthropic_render.error_body(401, problem))
        elif self._authorised(request):
            conn.respond(200, self._models)
        else:
            conn.respond(401, _bad_key())

    # -- OpenAI: chat completions --------------------------------------------------------------

    def chat(self, request: Request, conn: Connection, azure: AzureRoute | None = None) -> None:
        headers = self._openai_start(request, conn, azure)
        if headers is None:
            return
        try:
            body = _chat_body.decode(request.body)
        except msgspec.ValidationError as exc:
            match = _PARAM_AT.search(str(exc)) or _PARAM_MISSING.search(str(exc))
            param = match.group(1) if match else None
            invalid = error_body(400, f"Invalid request: {exc}", param=param)
            self._answer(conn, 400, invalid, headers)
            return
        except msgspec.DecodeError:
            message = (
                "We could not parse the JSON body of your request. (HINT: This likely means"
                " you aren't using your HTTP library correctly. The OpenAI API expects a JSON"
                " payload, but what was sent was not valid JSON.)"
            )
            self._answer(conn, 400, error_body(400, message), headers)
            return
        if not body.messages:
            message = "Invalid 'messages': empty array. Expected an array with minimum length 1."
            self._answer(conn, 400, error_body(400, message, param="messages"), headers)
            return
        fault = self._fault(body.mock, request)
        self._run(
            conn,
            _Job(
                fault,
                bool(body.stream),
                headers,
                lambda status, message: error_body(status, message),
                lambda: self._completion(body, fault),
                lambda: self._chunks(body, fault),
            ),
        )

    def _completion(self, body: _ChatBody, fault: Fault) -> bytes:
        plan = plan_completion(body, tokens=fault.tokens, chunks=fault.chunks)
        return render_completion(
            plan,
            id=f"chatcmpl-mock{next(self._ids)}",
            created=int(time.time()),
            model=body.model,
            include_usage=not fault.omit_usage,
        )

    def _chunks(self, body: _ChatBody, fault: Fault) -> Frames:
        plan = plan_completion(body, tokens=fault.tokens, chunks=fault.chunks)
        options = body.stream_options
        payloads = render_stream(
            plan,
            id=f"chatcmpl-mock{next(self._ids)}",
            created=int(time.time()),
            model=body.model,
            include_usage=bool(options and options.include_usage) and not fault.omit_usage,
        )
        return Frames(
            head=[sse(payloads.head)],
            content=[sse(p) for p in payloads.content],
            tail=[sse(p) for p in payloads.tail],
            malformed=MALFORMED,
            error=sse(error_body(500, fault.message)),
        )

    # -- OpenAI: embeddings --------------------------------------------------------------------

    def embeddings(
        self, request: Request, conn: Connection, azure: AzureRoute | None = None
    ) -> None:
        headers = self._openai_start(request, conn, azure)
        if headers is None:
            return
        try:
            body, inputs = decode_embeddings(request.body)
        except (msgspec.DecodeError, InputError) as exc:
            invalid = error_body(400, f"Invalid request: {exc}", param="input")
            self._answer(conn, 400, invalid, headers)
            return
        fault = self._fault(body.mock, request)
        self._run(
            conn,
            _Job(
                fault,
                False,
                headers,
                lambda status, message: error_body(status, message),
                lambda: render_embeddings(body, inputs, model=body.model),
                _no_stream,
            ),
        )

    # -- Anthropic: messages -------------------------------------------------------------------

    def _anthropic_key_problem(self, request: Request) -> str | None:
        """Why Anthropic would refuse the request's key (`x-api-key`, or a Bearer token as
        recent official SDKs send the API key), or None."""
        if self.api_key is None:
            return None
        headers = request.headers
        key = headers.get(b"x-api-key")
        if key is None and b"authorization" not in headers:
            return "x-api-key header is required"
        if key == self.api_key or headers.get(b"authorization") == self.auth:
            return None
        return "invalid x-api-key"

    def messages(self, request: Request, conn: Connection) -> None:
        self.control.received(request)
        request_id = self._request_id()
        headers = [(b"request-id", request_id)]

        def error(status: int, message: str | None) -> bytes:
            return anthropic_render.error_body(status, message, request_id=request_id.decode())

        problem = self._anthropic_key_problem(request)
        if problem is not None:
            self._answer(conn, 401, error(401, problem), headers)
            return
        if b"anthropic-version" not in request.headers:
            self._answer(conn, 400, error(400, "anthropic-version: header is required"), headers)
            return
        try:
            body = anthropic.decode_request(request.body)
        except anthropic.RequestError as exc:
            self._answer(conn, 400, error(400, str(exc)), headers)
            return
        fault = self._fault(body.mock, request)
        reply = anthropic.plan_reply(body, fault)
        number = next(self._ids)
        message_id, tool_id = f"msg_mock{number:020d}", f"toolu_mock{number:018d}"
        omit_usage = bool(fault.omit_usage)

        def complete() -> bytes:
            return anthropic_render.render_message(
                reply, id=message_id, model=body.model, tool_id=tool_id, omit_usage=omit_usage
            )

        def frames() -> Frames:
            return anthropic_render.render_events(
                reply,
                id=message_id,
                model=body.model,
                tool_id=tool_id,
                omit_usage=omit_usage,
                error_message=fault.message,
            )

        self._run(conn, _Job(fault, bool(body.stream), headers, error, complete, frames))

    # -- Gemini: generateContent -----------------------------------------------------------------

    def generate(self, request: Request, conn: Connection, model: str, stream: bool) -> None:
        self.control.received(request)
        problem = gemini.key_problem(request.headers, request.query, self.api_key)
        if problem is None and stream and "alt=sse" not in request.query.split("&"):
            message = "The mock streams only as server-sent events: add ?alt=sse."
            problem = 400, gemini_render.error_body(400, message)
        if problem is not None:
            self._answer(conn, *problem)
            return
        try:
            body = gemini.decode_request(request.body)
        except gemini.RequestError as exc:
            self._answer(conn, 400, gemini_render.error_body(400, str(exc)))
            return
        fault = self._fault(body.mock, request)
        reply = gemini.plan_reply(body, fault)
        response_id, omit_usage = f"mock{next(self._ids):020d}", bool(fault.omit_usage)

        def error(status: int, message: str | None) -> bytes:
            return gemini_render.error_body(status, message, retry_after=fault.retry_after)

        def complete() -> bytes:
            return gemini_render.render_response(
                reply, id=response_id, model=model, omit_usage=omit_usage
            )

        def frames() -> Frames:
            return gemini_render.render_events(
                reply,
                id=response_id,
                model=model,
                omit_usage=omit_usage,
                error_message=fault.message,
            )

        self._run(conn, _Job(fault, stream, [], error, complete, frames, retry_header=False))

    # -- answering, whatever the dialect ---------------------------------------------------------

    def _run(self, conn: Connection, job: _Job) -> None:
        fault = job.fault
        if fault.timed:
            self.control.in_flight += 1
            conn.spawn(lambda: self._run_later(conn, job), self._ended)
            return
        if fault.failing:
            self._fail(conn, job)
        elif job.stream:
            steps = self._start_stream(conn, job)
            conn.send(b"".join(s for s in steps if isinstance(s, bytes)))
            if CUT in steps:  # (a stall is `timed`: never on this path)
                conn.cut()
            else:
                conn.end_stream()
        else:
            self._answer(conn, 200, job.complete(), job.headers)

    async def _run_later(self, conn: Connection, job: _Job) -> None:
        fault = job.fault
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.failing:
            self._fail(conn, job)
        elif not job.stream:
            self._answer(conn, 200, job.complete(), job.headers)
        else:
            for step in self._start_stream(conn, job):
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
        conn.respond(status, body, headers=headers)

    def _fail(self, conn: Connection, job: _Job) -> None:
        fault = job.fault
        assert fault.status is not None
        headers = list(job.headers)
        if fault.retry_after is not None and job.retry_header:
            headers.append((b"retry-after", f"{fault.retry_after:g}".encode()))
            headers.append((b"retry-after-ms", b"%d" % round(fault.retry_after * 1000)))
        self._answer(conn, fault.status, job.error(fault.status, fault.message), headers)

    def _start_stream(self, conn: Connection, job: _Job) -> list[bytes | Step]:
        """Start the SSE response and plan its frames, with the fault's markers between."""
        self.control.statuses[200] += 1
        conn.start_stream(200, SSE, [(b"cache-control", b"no-cache"), *job.headers])
        return list(stream_steps(job.frames(), job.fault))


def _no_stream() -> Frames:
    raise AssertionError("embeddings are never streamed")


def _bad_key() -> bytes:
    return error_body(401, "Incorrect API key provided.", code="invalid_api_key")
