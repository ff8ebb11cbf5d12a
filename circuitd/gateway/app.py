"""The ASGI application: routing, request ids, the chat pipeline, and error responses.

`App` holds no state of its own beyond the `Gateway` it was given. Every error raised on the
request path is a `GatewayError`, turned into an OpenAI-shaped response in `_send_error`.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from functools import partial

import msgspec
import trio

from circuitd import __version__
from circuitd.errors import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    UpstreamRejected,
)
from circuitd.gateway.asgi import (
    JSON,
    BodyReceive,
    Headers,
    Message,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    start_response,
)
from circuitd.gateway.auth import Principal
from circuitd.gateway.embeddings import decode_embeddings_request, embedding_candidates
from circuitd.gateway.messages import ROUTES as MESSAGES_ROUTES
from circuitd.gateway.messages import MessagesEdge, count_tokens
from circuitd.gateway.relay import (
    CLIENT_CLOSED,
    ClientWatch,
    json_attempt,
    stream_attempt,
    watch_client,
)
from circuitd.gateway.rewrite import client_wants_usage, upstream_body
from circuitd.gateway.router import Router, route
from circuitd.gateway.runtime import Gateway
from circuitd.gateway.settle import CallRecord
from circuitd.gateway.usage import budget_status, parse_usage_query, read_report, utc_today
from circuitd.obs.logs import request_ids_var
from circuitd.obs.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from circuitd.obs.metrics import route_label, status_class
from circuitd.providers.base import Deployment, Operation, UpstreamCall
from circuitd.wire.openai import ChatRequestView, chat_request_decoder

log = logging.getLogger("circuitd.app")

_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
_encoder = msgspec.json.Encoder()


def new_request_id() -> str:
    """`req_` + the time in ms (12 hex digits) + 48 random bits: unique, and increasing, so
    the ledger's B-trees keyed by it (the unique index of `requests`, `provider_attempts`)
    take each batch's rows at their right edge. With random ids every row landed on a
    different leaf page of each (a write, and after the other worker's commit a read, per
    row); `bench/RESULTS.md` has the figures. The random bits only keep ids apart, they
    guard nothing (clients see the ids): `random`'s generator, seeded from the OS per
    process and again after a fork, not `secrets`, which asks the kernel on every call."""
    return f"req_{time.time_ns() // 1_000_000:012x}{random.getrandbits(48):012x}"


def client_request_id(scope: Scope) -> str | None:
    """The client's `x-request-id` when it is sane. It is echoed and logged, but the ledger
    is keyed by the gateway's own id: a client reusing ids must not merge (or hide) calls."""
    given = header(scope, b"x-request-id")
    if given is not None and _SANE_REQUEST_ID.fullmatch(given):
        return given.decode()
    return None


def decode_chat_request(body: bytes) -> ChatRequestView:
    try:
        view = chat_request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. "
            "(HINT: This likely means you aren't using your HTTP library correctly.)"
        ) from None
    if not view.model:
        raise InvalidRequest("`model` must be a non-empty string.", param="model")
    if not view.messages:
        raise InvalidRequest("`messages` must contain at least one message.", param="messages")
    return view


class App:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id, client_id = new_request_id(), client_request_id(scope)
        token = request_ids_var.set((request_id, client_id))
        base: Headers = [
            (b"x-request-id", (client_id or request_id).encode()),
            (b"x-circuit-request-id", request_id.encode()),
        ]
        started = trio.current_time()
        status = 0

        server = self.gateway.snapshot.config.server
        body = BodyReceive(receive, scope, server.max_body_bytes, server.body_timeout_s, started)

        async def send_and_count(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if not body.done and not await body.finish():  # an answer before the body
                    message["headers"] = [*message["headers"], (b"connection", b"close")]
            await send(message)

        path, method = scope["path"], scope["method"]
        try:
            await self._route(
                scope, body, send_and_count, path, method, request_id, client_id, base
            )
        finally:
            request_ids_var.reset(token)
            route = route_label(path)
            metrics = self.gateway.metrics
            metrics.child(metrics.requests, route, status_class(status or 499)).inc()
            metrics.child(metrics.request_duration, route).observe(trio.current_time() - started)

    async def _route(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        method: str,
        request_id: str,
        client_id: str | None,
        base: Headers,
    ) -> None:
        try:
            if path == "/v1/chat/completions":
                if method != "POST":
                    raise MethodNotAllowed(f"Use POST for {path}.")
                await self._chat(scope, receive, send, request_id, client_id, base)
            elif path == "/v1/embeddings":
                if method != "POST":
                    raise MethodNotAllowed(f"Use POST for {path}.")
                await self._chat(
                    scope, receive, send, request_id, client_id, base, operation="embeddings"
                )
            elif path in MESSAGES_ROUTES:
                edge = MessagesEdge(send, request_id)
                send = edge.send  # every answer here is Anthropic-shaped, errors included
                if method != "POST":
                    raise MethodNotAllowed(f"Use POST for {path}.")
                if path == "/v1/messages":
                    await self._chat(scope, receive, send, request_id, client_id, base, edge)
                else:
                    snapshot = self.gateway.snapshot
                    await count_tokens(
                        edge,
                        scope,
                        receive,
                        auth=snapshot.auth,
                        tokenizer=self.gateway.settler.tokenizer,
                        max_body_bytes=snapshot.config.server.max_body_bytes,
                        headers=base,
                    )
            elif path == "/health":
                await self._health(send, base)
            elif path == "/v1/models":
                if method != "GET":
                    raise MethodNotAllowed(f"Use GET for {path}.")
                snapshot = self.gateway.snapshot
                snapshot.auth.authenticate(header(scope, b"authorization"))
                await start_response(send, 200, base, snapshot.models_body)
            elif path == "/v1/usage":
                if method != "GET":
                    raise MethodNotAllowed(f"Use GET for {path}.")
                await self._usage(scope, send, base)
            elif path == "/metrics":
                body = self.gateway.metrics.exposition()
                await start_response(send, 200, base, body, content_type=METRICS_CONTENT_TYPE)
            else:
                raise NotFound(f"Unknown route: {method} {path}")
        except GatewayError as error:
            await _send_error(send, error, base)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _usage(self, scope: Scope, send: Send, base: Headers) -> None:
        """The caller's own usage: spend, tokens and today's budget, from the roll-ups."""
        snapshot = self.gateway.snapshot
        principal = snapshot.auth.authenticate(header(scope, b"authorization"))
        today = utc_today()
        query = parse_usage_query(scope.get("query_string", b""), today)
        report = await trio.to_thread.run_sync(
            partial(
                read_report,
                snapshot.config.store.path,
                principal.key_id,
                query,
                today=today,
                daily_limit_usd=principal.daily_usd_limit,
            )
        )
        live = self.gateway.admission.usage(principal, self.gateway.wall_clock())
        report = msgspec.structs.replace(report, budgets=[budget_status(u) for u in live])
        await start_response(send, 200, base, _encoder.encode(report))

    async def _health(self, send: Send, base: Headers) -> None:
        gateway = self.gateway
        snapshot = gateway.snapshot
        body = _encoder.encode(
            {
                "status": "draining" if gateway.draining else "ok",
                "version": __version__,
                "pid": os.getpid(),  # which worker answered
                "uptime_s": round(time.time() - gateway.started_wall, 3),
                "providers": {name: p.kind for name, p in snapshot.providers.items()},
                "auth": "open" if snapshot.auth.open else "keys",
                "write_queue": gateway.writer.statistics(),
                "circuit_breakers": gateway.breakers.snapshots(),
            }
        )
        await start_response(send, 503 if gateway.draining else 200, base, body)

    async def _chat(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        client_id: str | None,
        base: Headers,
        edge: MessagesEdge | None = None,  # a Messages call: translated at both ends
        operation: Operation = "chat/completions",  # or embeddings (`gateway.embeddings`)
    ) -> None:
        gateway = self.gateway
        record = CallRecord(request_id, trio.current_time(), gateway.wall_clock(), client_id)
        response_started = False
        watch: ClientWatch | None = None

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = True
            final = message["type"] == "http.response.body" and not message.get("more_body")
            if watch is not None and final:
                # The server reports the end of a completed response as a disconnect; it must
                # neither count as the client leaving nor cancel us inside this `send`.
                watch.completing = True
            await send(message)

        try:
            if gateway.draining:
                raise ServiceUnavailable("The gateway is shutting down; retry shortly.")
            snapshot = gateway.snapshot  # one config for the whole call, even across a reload
            config = snapshot.config
            if edge is None:
                principal = snapshot.auth.authenticate(header(scope, b"authorization"))
            else:
                principal = edge.authenticate(snapshot.auth, scope)
            record.key_id = principal.key_id
            body = await read_body(scope, receive, config.server.max_body_bytes)
            if edge is not None:
                body = edge.canonical(body)
            embeddings = None
            if operation == "embeddings":
                embeddings = decode_embeddings_request(body, gateway.settler.tokenizer)
                view, record.prompt_tokens = embeddings.view, embeddings.input_tokens
            else:
                view = decode_chat_request(body)
            record.request, record.stream = view, bool(view.stream)
            candidates = self._candidates(snapshot.router, view, principal)
            record.resolved = True
            if embeddings is not None:
                candidates = embedding_candidates(candidates, view.model)
            record.ticket = await gateway.admission.admit(
                principal,
                view,
                candidates,
                now=record.started,
                now_wall=record.started_wall,
                tokens=embeddings.tokens if embeddings else None,
            )
            base = [*base, *record.ticket.headers()]  # x-ratelimit-* on the answer
            deadline = record.started + config.upstream.total_timeout_s

            async with watch_client(scope, receive) as watch:

                async def attempt(deployment: Deployment) -> None:
                    call = UpstreamCall(
                        request_id,
                        upstream_body(body, view, deployment.upstream_model),
                        record.stream,
                        operation,
                    )
                    if record.stream:
                        await stream_attempt(
                            record,
                            deployment,
                            call,
                            send=tracking_send,
                            headers=base,
                            deadline=deadline,
                            client_wants_usage=client_wants_usage(view),
                        )
                    else:
                        await json_attempt(
                            record,
                            deployment,
                            call,
                            send=tracking_send,
                            headers=base,
                            deadline=deadline,
                            tokenizer=gateway.settler.tokenizer,
                        )

                streams = gateway.metrics.active_streams
                if record.stream:
                    streams.inc()
                try:
                    await route(
                        record,
                        candidates,
                        attempt,
                        breakers=gateway.breakers,
                        retry=config.retry,
                        deadline=deadline,
                        metrics=gateway.metrics,
                    )
                finally:
                    if record.stream:
                        streams.dec()
            if watch.disconnected:
                record.status, record.status_code = "disconnected", CLIENT_CLOSED
                record.error_code = None
        except GatewayError as error:
            record.fail(error)
            if not response_started:
                await _send_error(send, error, base)
        except trio.Cancelled:
            record.status, record.status_code, record.error_code = "error", 503, "cancelled"
            raise
        except Exception:
            log.exception("unexpected error while serving a chat completion")
            record.status, record.status_code, record.error_code = "error", 500, "internal_error"
            if not response_started:
                await _send_error(send, GatewayError("Internal gateway error."), base)
        finally:
            await gateway.settler.settle(record, trio.current_time())  # cannot be cut short

    @staticmethod
    def _candidates(
        router: Router, view: ChatRequestView, principal: Principal
    ) -> list[Deployment]:
        """The model's deployments, then those of each `circuit_breaker.fallback_models`."""
        candidates = list(router.resolve(view.model))
        principal.check_model(view.model)
        for alias in view.circuit_breaker.fallback_models if view.circuit_breaker else ():
            principal.check_model(alias)
            candidates.extend(d for d in router.resolve(alias) if d not in candidates)
        return candidates


async def _send_error(send: Send, error: GatewayError, base: Headers) -> None:
    content_type = error.content_type if isinstance(error, UpstreamRejected) else JSON[1]
    await start_response(send, error.status, [*base, *error.headers], error.body(), content_type)
