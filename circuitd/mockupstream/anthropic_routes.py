"""The mock's Anthropic routes: `POST /v1/messages` and Anthropic's `GET /v1/models`, checked
as Anthropic checks them (`anthropic`) and answered through the `Pipeline`
(`anthropic_render` writes the bodies)."""

from __future__ import annotations

from circuitd.mockupstream import anthropic, anthropic_render
from circuitd.mockupstream.faults import Frames
from circuitd.mockupstream.pipeline import Job, Pipeline
from circuitd.mockupstream.protocol import Connection, Request

__all__ = ["key_problem", "messages", "models"]


def key_problem(pipeline: Pipeline, request: Request) -> str | None:
    """Why Anthropic would refuse the request's key (`x-api-key`, or a Bearer token as
    recent official SDKs send the API key), or None."""
    if pipeline.api_key is None:
        return None
    headers = request.headers
    key = headers.get(b"x-api-key")
    if key is None and b"authorization" not in headers:
        return "x-api-key header is required"
    if key == pipeline.api_key or headers.get(b"authorization") == pipeline.auth:
        return None
    return "invalid x-api-key"


def models(pipeline: Pipeline, request: Request, conn: Connection, body: bytes) -> None:
    """Answers `GET /v1/models` with `body` (Anthropic's list) once the key is checked."""
    problem = key_problem(pipeline, request)
    if problem is None:
        conn.respond(200, body)
    else:
        conn.respond(401, anthropic_render.error_body(401, problem))


def messages(pipeline: Pipeline, request: Request, conn: Connection) -> None:
    pipeline.control.received(request)
    request_id = pipeline.request_id()
    headers = [(b"request-id", request_id)]

    def error(status: int, message: str | None) -> bytes:
        return anthropic_render.error_body(status, message, request_id=request_id.decode())

    problem = key_problem(pipeline, request)
    if problem is not None:
        pipeline.answer(conn, 401, error(401, problem), headers)
        return
    if b"anthropic-version" not in request.headers:
        pipeline.answer(conn, 400, error(400, "anthropic-version: header is required"), headers)
        return
    try:
        body = anthropic.decode_request(request.body)
    except anthropic.RequestError as exc:
        pipeline.answer(conn, 400, error(400, str(exc)), headers)
        return
    fault = pipeline.fault(body.mock, request)
    reply = anthropic.plan_reply(body, fault)
    number = pipeline.next_number()
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

    pipeline.run(conn, Job(fault, bool(body.stream), headers, error, complete, frames))
