"""Relays one upstream call to the client: JSON answers whole, SSE streams chunk by chunk.

Both run inside `watch_client`, a nursery whose second task waits for the client to go away
and then cancels the upstream call (so a vanished client stops the provider's generation and
its billing). A stream that fails after its first byte was sent ends with an explicit error
event, never a clean `[DONE]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass

import msgspec
import trio

from circuitd.core.pricing import micro_to_usd
from circuitd.core.sse import DONE
from circuitd.core.tokens import Tokenizer
from circuitd.errors import (
    ErrorBody,
    ErrorEnvelope,
    GatewayError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from circuitd.gateway.asgi import Headers, Receive, Send, start_response
from circuitd.gateway.settle import CallRecord, charge
from circuitd.providers.base import Deployment, Reply, UpstreamCall, UpstreamFailure
from circuitd.wire.openai import chunk_decoder, completion_decoder

_encoder = msgspec.json.Encoder()
_DONE_PAYLOAD = "[DONE]"
CLIENT_CLOSED = 499  # nginx's "client closed request": the status recorded for disconnects


@dataclass(slots=True)
class ClientWatch:
    disconnected: bool = False
    error: GatewayError | None = None


async def _watch(receive: Receive, scope: trio.CancelScope, watch: ClientWatch) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            watch.disconnected = True
            scope.cancel()
            return


@asynccontextmanager
async def watch_client(receive: Receive) -> AsyncIterator[ClientWatch]:
    """Runs the body while watching for the client to disconnect; on disconnect the body is
    cancelled and `watch.disconnected` is set. A `GatewayError` raised by the body is re-raised
    as itself once the nursery is closed (not wrapped in an exception group)."""
    watch = ClientWatch()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch, receive, nursery.cancel_scope, watch)
        try:
            yield watch
        except GatewayError as exc:
            watch.error = exc
        nursery.cancel_scope.cancel()
    if watch.error is not None and not watch.disconnected:
        raise watch.error


class GatewayMeta(msgspec.Struct):
    """The `x_gateway` object added to JSON answers."""

    request_id: str
    provider: str
    deployment: str
    attempts: int
    latency_ms: float
    cost_usd: float
    cache_hit: bool = False


def upstream_error(status: int, body: bytes, content_type: bytes) -> GatewayError:
    """Maps a non-2xx upstream answer: request-caused 4xx are relayed as they are; the rest
    become the gateway's 502/504 with the upstream's message summarised."""
    if 400 <= status < 500 and status != 408:
        return UpstreamRejected(status, body, content_type)
    summary = body[:300].decode("utf-8", "replace").strip()
    message = f"Upstream answered {status}" + (f": {summary}" if summary else "")
    if status in (408, 504):
        return UpstreamTimeout(message)
    return UpstreamError(message)


def _failure_error(failure: UpstreamFailure) -> GatewayError:
    if failure.timeout:
        return UpstreamTimeout(f"Upstream timed out: {failure}")
    return UpstreamError(f"Upstream failed: {failure}")


def inject_meta(body: bytes, meta: GatewayMeta) -> bytes:
    """Adds `"x_gateway": {...}` to a JSON object without re-encoding the rest of it."""
    end = body.rstrip().rfind(b"}")
    if end < 0:
        return body
    head = body[:end].rstrip()
    separator = b"" if head.endswith(b"{") else b","
    return head + separator + b'"x_gateway":' + _encoder.encode(meta) + b"}"


def _headers(base: Headers, deployment: Deployment, record: CallRecord) -> Headers:
    return [
        *base,
        (b"x-circuit-provider", deployment.provider.name.encode()),
        (b"x-circuit-deployment", deployment.name.encode()),
        (b"x-circuit-attempts", str(record.attempts).encode()),
    ]


async def _raise_for_status(reply: Reply) -> None:
    if reply.status >= 300:
        body = await reply.read()
        raise upstream_error(reply.status, body, reply.content_type)


async def relay_json(
    record: CallRecord,
    deployment: Deployment,
    call: UpstreamCall,
    *,
    receive: Receive,
    send: Send,
    headers: Headers,
    deadline: float,
    tokenizer: Tokenizer,
) -> None:
    record.deployment = deployment
    record.attempts += 1
    body = b""
    async with watch_client(receive) as client:
        with trio.move_on_at(deadline) as timer:
            try:
                async with deployment.provider.open(deployment, call) as reply:
                    await _raise_for_status(reply)
                    record.upstream_started = True
                    body = await reply.read()
            except UpstreamFailure as failure:
                raise _failure_error(failure) from failure
    if client.disconnected:
        record.status, record.status_code, record.error_code = "disconnected", CLIENT_CLOSED, None
        return
    if timer.cancelled_caught:
        raise UpstreamTimeout("Upstream did not answer within the call's deadline.")
    try:
        record.usage = completion_decoder.decode(body).usage
    except msgspec.DecodeError as exc:
        raise UpstreamError("Upstream answered with a malformed chat.completion body.") from exc
    meta = GatewayMeta(
        request_id=record.request_id,
        provider=deployment.provider.name,
        deployment=deployment.name,
        attempts=record.attempts,
        latency_ms=round((trio.current_time() - record.started) * 1000, 3),
        cost_usd=micro_to_usd(charge(record, tokenizer).cost_micro_usd),
    )
    await start_response(send, 200, _headers(headers, deployment, record), inject_meta(body, meta))
    record.status, record.status_code, record.error_code = "ok", 200, None


def _error_event(error: GatewayError) -> bytes:
    envelope = ErrorEnvelope(ErrorBody(error.message, error.type, error.code))
    return b"data: " + _encoder.encode(envelope) + b"\n\n"


async def relay_stream(
    record: CallRecord,
    deployment: Deployment,
    call: UpstreamCall,
    *,
    receive: Receive,
    send: Send,
    headers: Headers,
    deadline: float,
    client_wants_usage: bool,
) -> None:
    """Forwards upstream events as they arrive; counts usage and relayed text on the way."""
    record.deployment = deployment
    record.attempts += 1
    failure: GatewayError | None = None
    done = False
    finished = False  # a finish_reason was seen: the answer is complete even without [DONE]
    async with watch_client(receive) as client:
        with trio.move_on_at(deadline) as timer:
            try:
                async with deployment.provider.open(deployment, call) as reply:
                    await _raise_for_status(reply)
                    record.upstream_started = True
                    stream_headers = [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        *_headers(headers, deployment, record),
                    ]
                    await send(
                        {"type": "http.response.start", "status": 200, "headers": stream_headers}
                    )
                    record.status_code = 200
                    async with aclosing(reply.events()) as events:
                        async for payload in events:
                            if payload == _DONE_PAYLOAD:
                                done = True
                                break
                            try:
                                chunk = chunk_decoder.decode(payload)
                            except msgspec.DecodeError as exc:
                                raise UpstreamFailure("malformed stream chunk") from exc
                            if chunk.error is not None:
                                raise UpstreamFailure(f"error event: {chunk.error}")
                            if chunk.usage is not None:
                                record.usage = chunk.usage
                                if not chunk.choices and not client_wants_usage:
                                    continue  # the usage chunk only the gateway asked for
                            for choice in chunk.choices:
                                delta = choice.delta
                                if delta is not None and delta.content:
                                    if record.ttft is None:
                                        record.ttft = trio.current_time() - record.started
                                    record.relayed.append(delta.content)
                                if choice.finish_reason is not None:
                                    finished = True
                            await send(
                                {
                                    "type": "http.response.body",
                                    "body": b"data: " + payload.encode() + b"\n\n",
                                    "more_body": True,
                                }
                            )
            except UpstreamFailure as exc:
                failure = _failure_error(exc)
                if record.status_code != 200:
                    raise failure from exc  # nothing sent yet: a plain error response
        if timer.cancelled_caught:
            failure = UpstreamTimeout("Upstream stream exceeded the call's deadline.")
            if record.status_code != 200:
                raise failure
        if failure is None and not (done or finished):
            failure = UpstreamError("Upstream stream ended before completion.")
        if failure is None:
            await send({"type": "http.response.body", "body": DONE, "more_body": False})
            record.status, record.error_code = "ok", None
        else:
            await send(
                {"type": "http.response.body", "body": _error_event(failure), "more_body": False}
            )
            record.status = "partial" if record.relayed else "error"
            record.status_code, record.error_code = failure.status, failure.code
    if client.disconnected:
        record.status, record.status_code, record.error_code = "disconnected", CLIENT_CLOSED, None
