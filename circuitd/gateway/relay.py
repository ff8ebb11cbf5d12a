"""One upstream attempt, relayed to the client: JSON answers whole, SSE streams chunk by chunk.

An attempt either answers the client or raises `AttemptFailed`, which says what the upstream
did (status, Retry-After, timeout, connect error, cut) so that the router can record it in the
breaker and decide on a retry or a fallback. Nothing is sent to the client before an attempt
has an answer worth relaying, so retries stay possible until the first byte. A stream that
fails after it started ends with an explicit error event, never a clean `[DONE]`, and raises
`AttemptFailed(started=True)`: no retry can follow it.

`watch_client` wraps the whole call (every attempt and the waits between them) in a cancel
scope that is cancelled when the client goes away, so a vanished client stops the provider's
generation and its billing. circuitd's HTTP/1.1 server hands the app that scope
(`CANCEL_ON_DISCONNECT`); elsewhere (HTTP/2, another server) a second task waits for
`http.disconnect` and cancels it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass

import msgspec
import trio

from circuitd.core.backoff import parse_retry_after
from circuitd.core.pricing import micro_to_usd
from circuitd.core.sse import DONE
from circuitd.core.tokens import Tokenizer
from circuitd.errors import (
    ErrorBody,
    ErrorEnvelope,
    GatewayError,
    InvalidRequest,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from circuitd.gateway.asgi import (
    CANCEL_ON_DISCONNECT,
    Headers,
    Receive,
    Scope,
    Send,
    start_response,
)
from circuitd.gateway.settle import CallRecord, charge
from circuitd.providers.base import (
    Deployment,
    Reply,
    UnsupportedRequest,
    UpstreamCall,
    UpstreamFailure,
)
from circuitd.wire.openai import chunk_decoder, completion_decoder
from circuitd.wire.openai_chat import DONE as DONE_PAYLOAD

_encoder = msgspec.json.Encoder()
CLIENT_CLOSED = 499  # nginx's "client closed request": the status recorded for disconnects


class AttemptFailed(Exception):
    """An attempt's failure: the client-facing error plus what the breaker and retry policy
    need to know about the upstream's behaviour."""

    def __init__(
        self,
        error: GatewayError,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        timeout: bool = False,
        connect_error: bool = False,
        cut: bool = False,
        started: bool = False,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.status = status
        self.retry_after = retry_after
        self.timeout = timeout
        self.connect_error = connect_error
        self.cut = cut
        self.started = started  # bytes reached the client: no retry, the call is settled

    @classmethod
    def from_failure(cls, failure: UpstreamFailure, *, started: bool = False) -> AttemptFailed:
        if failure.timeout:
            error: GatewayError = UpstreamTimeout(f"Upstream timed out: {failure}")
        else:
            error = UpstreamError(f"Upstream failed: {failure}")
        return cls(
            error,
            status=failure.status,
            timeout=failure.timeout,
            connect_error=failure.connect,
            cut=started or not (failure.timeout or failure.connect or failure.status),
            started=started,
        )


@dataclass(slots=True)
class ClientWatch:
    disconnected: bool = False
    # Set just before the last bytes are sent: the server reports the end of a completed
    # response as `http.disconnect` too, and that must not count as the client going away.
    completing: bool = False
    error: GatewayError | None = None


async def _watch(receive: Receive, scope: trio.CancelScope, watch: ClientWatch) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not watch.completing:
                watch.disconnected = True
                scope.cancel()
            return


@asynccontextmanager
async def watch_client(scope: Scope, receive: Receive) -> AsyncIterator[ClientWatch]:
    """Runs the body while watching for the client to disconnect; on disconnect the body is
    cancelled and `watch.disconnected` is set. A `GatewayError` raised by the body is re-raised
    as itself once the body is left (not wrapped in an exception group)."""
    watch = ClientWatch()
    cancel_scope = (scope.get("extensions") or {}).get(CANCEL_ON_DISCONNECT)
    if isinstance(cancel_scope, trio.CancelScope):  # the server cancels it: no task needed
        with cancel_scope:
            try:
                yield watch
            except GatewayError as exc:
                watch.error = exc
        watch.disconnected = cancel_scope.cancel_called
    else:
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
    become the gateway's 502/504 with the upstream's message summarised. An upstream 401/403
    refuses the *deployment's* key, which is the operator's problem, not the client's."""
    if 400 <= status < 500 and status not in (401, 403, 408):
        return UpstreamRejected(status, body, content_type)
    if status in (401, 403):  # its message may quote (part of) that key: never relayed
        return UpstreamError(f"Upstream answered {status}: the deployment's key was refused.")
    summary = body[:300].decode("utf-8", "replace").strip()
    message = f"Upstream answered {status}" + (f": {summary}" if summary else "")
    if status in (408, 504):
        return UpstreamTimeout(message)
    return UpstreamError(message)


async def _check_status(reply: Reply) -> None:
    if reply.status >= 300:
        body = await reply.read()
        raise AttemptFailed(
            upstream_error(reply.status, body, reply.content_type),
            status=reply.status,
            retry_after=parse_retry_after(reply.retry_after, time.time()),
        )


def attempt_deadline(deployment: Deployment, call_deadline: float) -> float:
    """An attempt ends at the call's deadline, or sooner if its deployment says so."""
    if deployment.attempt_timeout_s is None:
        return call_deadline
    return min(call_deadline, trio.current_time() + deployment.attempt_timeout_s)


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


async def json_attempt(
    record: CallRecord,
    deployment: Deployment,
    call: UpstreamCall,
    *,
    send: Send,
    headers: Headers,
    deadline: float,
    tokenizer: Tokenizer,
) -> None:
    body = b""
    with trio.move_on_at(attempt_deadline(deployment, deadline)) as timer:
        try:
            async with deployment.provider.open(deployment, call) as reply:
                await _check_status(reply)
                record.upstream_started = True
                body = await reply.read()
        except UpstreamFailure as failure:
            raise AttemptFailed.from_failure(failure) from failure
        except UnsupportedRequest as exc:  # the request cannot be said in the provider's dialect
            raise AttemptFailed(InvalidRequest(str(exc)), status=400) from exc
    if timer.cancelled_caught:
        timeout = UpstreamTimeout("Upstream did not answer within the call's deadline.")
        raise AttemptFailed(timeout, timeout=True)
    try:
        completion = completion_decoder.decode(body)
    except msgspec.DecodeError as exc:
        malformed = UpstreamError("Upstream answered with a malformed chat.completion body.")
        raise AttemptFailed(malformed, status=200, cut=True) from exc
    record.usage = completion.usage
    if completion.usage is None:  # kept only to estimate what the provider did not report
        record.relayed.extend(
            c.message.content for c in completion.choices if c.message and c.message.content
        )
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


async def stream_attempt(
    record: CallRecord,
    deployment: Deployment,
    call: UpstreamCall,
    *,
    send: Send,
    headers: Headers,
    deadline: float,
    client_wants_usage: bool,
) -> None:
    """Forwards upstream events as they arrive; counts usage and relayed text on the way.

    The client's response starts with the first chunk of substance (content, tool calls, a
    finish reason or usage), not with the upstream's status line nor its content-free role
    chunk, which is held back: a stream that fails before that (a 200 followed by an error
    event, a stall, a cut) is still an ordinary failed attempt, retried or routed elsewhere.
    It ends with the upstream's `[DONE]`: the client has its whole answer then, while the
    adapter reads the upstream's body to its end (so that its connection is kept).
    """
    failure: AttemptFailed | None = None
    started = done = False
    finished = False  # a finish_reason was seen: the answer is complete even without [DONE]
    substance = False  # a chunk of substance was seen: the client's response may start
    frames: list[bytes] = []  # to write: held content-free chunks, then this batch's

    async def flush(last: bytes = b"") -> None:
        """Writes the frames gathered so far (and `last`, which ends the body) at once,
        starting the response first if it has not started."""
        nonlocal started
        if not started:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        *_headers(headers, deployment, record),
                    ],
                }
            )
            started = True
            record.status_code = 200
        body = b"".join(frames) + last
        frames.clear()
        await send({"type": "http.response.body", "body": body, "more_body": not last})

    with trio.move_on_at(attempt_deadline(deployment, deadline)) as timer:
        try:
            async with deployment.provider.open(deployment, call) as reply:
                await _check_status(reply)
                record.upstream_started = True
                async with aclosing(reply.batches()) as batches:
                    async for batch in batches:
                        if done:
                            continue  # (an adapter's batches end at [DONE]; none past it)
                        # A batch arrived at once: it is written at once (after the payloads
                        # before a broken one, so what the client got is what was counted).
                        broken: UpstreamFailure | None = None
                        for payload in batch:
                            if payload == DONE_PAYLOAD:
                                done = True
                                break
                            try:
                                chunk = chunk_decoder.decode(payload)
                            except msgspec.DecodeError as exc:
                                broken = UpstreamFailure("malformed stream chunk")
                                broken.__cause__ = exc
                                break
                            if chunk.error is not None:  # a server-side failure told in-stream
                                broken = UpstreamFailure(f"error event: {chunk.error}", status=500)
                                break
                            if chunk.usage is not None:
                                record.usage = chunk.usage
                                if not chunk.choices and not client_wants_usage:
                                    continue  # the usage chunk only the gateway asked for
                            substance = substance or chunk.usage is not None
                            for choice in chunk.choices:
                                delta = choice.delta
                                if delta is not None and delta.content:
                                    if record.ttft is None:
                                        record.ttft = trio.current_time() - record.started
                                    record.relayed.append(delta.content)
                                if choice.finish_reason is not None:
                                    finished = True
                                substance = (
                                    substance
                                    or choice.finish_reason is not None
                                    or (
                                        delta is not None
                                        and bool(delta.content or delta.tool_calls or delta.refusal)
                                    )
                                )
                            # Until the first chunk of substance, frames are only held: a
                            # failure now can still be retried.
                            frames.append(b"data: " + payload.encode() + b"\n\n")
                        if done:
                            # The answer is whole: the client has it now, its frames with the
                            # end, while the adapter reads the upstream's body to its end.
                            await flush(DONE)
                            continue
                        if substance and frames:
                            await flush()
                        if broken is not None:
                            raise broken
        except UpstreamFailure as exc:
            failure = AttemptFailed.from_failure(exc, started=started)
            if not started:
                raise failure from exc
        except UnsupportedRequest as exc:
            raise AttemptFailed(InvalidRequest(str(exc)), status=400) from exc
    if done:  # answered in full: nothing after the upstream's [DONE] is the call's
        record.status, record.error_code = "ok", None
        return
    if timer.cancelled_caught:
        error = UpstreamTimeout("Upstream stream exceeded the call's deadline.")
        failure = AttemptFailed(error, timeout=True, started=started)
        if not started:
            raise failure
    if failure is None and not finished:
        cut = UpstreamError("Upstream stream ended before completion.")
        if not started:
            raise AttemptFailed(cut, cut=True)
        failure = AttemptFailed(cut, cut=True, started=True)
    if failure is None:
        await flush(DONE)  # (a finish_reason, then the body's end without [DONE])
        record.status, record.error_code = "ok", None
        return
    await send(
        {"type": "http.response.body", "body": _error_event(failure.error), "more_body": False}
    )
    record.status = "partial" if record.relayed else "error"
    record.status_code, record.error_code = failure.error.status, failure.error.code
    raise failure
