"""The mock's Gemini routes: `generateContent`, `streamGenerateContent` and `GET
/v1beta/models`, checked as Gemini checks them (`gemini`) and answered through the
`Pipeline` (`gemini_render` writes the bodies)."""

from __future__ import annotations

from circuitd.mockupstream import gemini, gemini_render
from circuitd.mockupstream.faults import Frames
from circuitd.mockupstream.pipeline import Job, Pipeline
from circuitd.mockupstream.protocol import Connection, Request

__all__ = ["generate", "models"]


def models(pipeline: Pipeline, request: Request, conn: Connection, body: bytes) -> None:
    """Answers `GET /v1beta/models` with `body` (Gemini's list) once the key is checked."""
    problem = gemini.key_problem(request.headers, request.query, pipeline.api_key)
    conn.respond(200, body) if problem is None else conn.respond(*problem)


def generate(
    pipeline: Pipeline, request: Request, conn: Connection, model: str, stream: bool
) -> None:
    pipeline.control.received(request)
    problem = gemini.key_problem(request.headers, request.query, pipeline.api_key)
    if problem is None and stream and "alt=sse" not in request.query.split("&"):
        message = "The mock streams only as server-sent events: add ?alt=sse."
        problem = 400, gemini_render.error_body(400, message)
    if problem is not None:
        pipeline.answer(conn, *problem)
        return
    try:
        body = gemini.decode_request(request.body)
    except gemini.RequestError as exc:
        pipeline.answer(conn, 400, gemini_render.error_body(400, str(exc)))
        return
    fault = pipeline.fault(body.mock, request)
    reply = gemini.plan_reply(body, fault)
    response_id, omit_usage = f"mock{pipeline.next_number():020d}", bool(fault.omit_usage)

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

    pipeline.run(conn, Job(fault, stream, [], error, complete, frames, retry_header=False))
