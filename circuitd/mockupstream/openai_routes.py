"""The mock's OpenAI routes: chat completions and embeddings, at `/v1/...` and at Azure's
paths (`azure`), checked as OpenAI checks them and answered through the `Pipeline`."""

from __future__ import annotations

import re

import msgspec

from circuitd.core.embeddings import InputError
from circuitd.mockupstream.azure import AzureRoute
from circuitd.mockupstream.chat import ChatAnswer, chat_decoder, plan_chat
from circuitd.mockupstream.embeddings import decode_embeddings, render_embeddings
from circuitd.mockupstream.faults import Frames, error_body
from circuitd.mockupstream.openai_render import sse
from circuitd.mockupstream.pipeline import Job, Pipeline
from circuitd.mockupstream.protocol import Connection, Request

__all__ = ["MODELS", "authorised", "bad_key", "chat", "embeddings", "models_body"]

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "mock-1")

_encode = msgspec.json.Encoder().encode
_PARAM_AT = re.compile(r"at `\$\.(\w+)")
_PARAM_MISSING = re.compile(r"missing required field `(\w+)`")
_NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means"
    " you aren't using your HTTP library correctly. The OpenAI API expects a JSON"
    " payload, but what was sent was not valid JSON.)"
)


def models_body() -> bytes:
    """`GET /v1/models` in OpenAI's shape."""
    data = [
        {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "mock"} for m in MODELS
    ]
    return _encode({"object": "list", "data": data})


def bad_key() -> bytes:
    return error_body(401, "Incorrect API key provided.", code="invalid_api_key")


def authorised(pipeline: Pipeline, request: Request, azure: AzureRoute | None = None) -> bool:
    """Whether the request carries the key the server requires (Bearer; Azure: `api-key`)."""
    if pipeline.auth is None or request.headers.get(b"authorization") == pipeline.auth:
        return True
    return azure is not None and request.headers.get(b"api-key") == pipeline.api_key


def _start(
    pipeline: Pipeline, request: Request, conn: Connection, azure: AzureRoute | None
) -> list[tuple[bytes, bytes]] | None:
    """Logs a request and checks its key (and Azure's api-version): the answer's headers, or
    None once refused."""
    pipeline.control.received(request)
    headers = [(b"x-request-id", pipeline.request_id())]
    if not authorised(pipeline, request, azure):
        pipeline.answer(conn, 401, bad_key(), headers)
        return None
    if azure is not None and azure.missing_version:
        pipeline.answer(conn, 404, error_body(404, "Resource not found", code="404"), headers)
        return None
    return headers


def _error(status: int, message: str | None) -> bytes:
    return error_body(status, message)


def chat(
    pipeline: Pipeline, request: Request, conn: Connection, azure: AzureRoute | None = None
) -> None:
    headers = _start(pipeline, request, conn, azure)
    if headers is None:
        return
    try:
        body = chat_decoder.decode(request.body)
    except msgspec.ValidationError as exc:
        match = _PARAM_AT.search(str(exc)) or _PARAM_MISSING.search(str(exc))
        param = match.group(1) if match else None
        invalid = error_body(400, f"Invalid request: {exc}", param=param)
        pipeline.answer(conn, 400, invalid, headers)
        return
    except msgspec.DecodeError:
        pipeline.answer(conn, 400, error_body(400, _NOT_JSON), headers)
        return
    if not body.messages:
        message = "Invalid 'messages': empty array. Expected an array with minimum length 1."
        pipeline.answer(conn, 400, error_body(400, message, param="messages"), headers)
        return
    fault = pipeline.fault(body.mock, request)

    def answer() -> ChatAnswer:  # when it is due: a failing request takes no id
        return plan_chat(body, fault, id=f"chatcmpl-mock{pipeline.next_number()}", model=body.model)

    def complete() -> bytes:
        return answer().json()

    def frames() -> Frames:
        return answer().frames(sse)

    pipeline.run(conn, Job(fault, bool(body.stream), headers, _error, complete, frames))


def embeddings(
    pipeline: Pipeline, request: Request, conn: Connection, azure: AzureRoute | None = None
) -> None:
    headers = _start(pipeline, request, conn, azure)
    if headers is None:
        return
    try:
        body, inputs = decode_embeddings(request.body)
    except (msgspec.DecodeError, InputError) as exc:
        invalid = error_body(400, f"Invalid request: {exc}", param="input")
        pipeline.answer(conn, 400, invalid, headers)
        return
    fault = pipeline.fault(body.mock, request)

    def complete() -> bytes:
        return render_embeddings(body, inputs, model=body.model)

    pipeline.run(conn, Job(fault, False, headers, _error, complete, _no_stream))


def _no_stream() -> Frames:
    raise AssertionError("embeddings are never streamed")
