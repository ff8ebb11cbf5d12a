"""`POST /v1/messages` and `/v1/messages/count_tokens`: the Anthropic Messages API at the edge.

A Messages call runs through the chat pipeline unchanged (`App._chat`: auth, admission,
router, relay, settlement: one ledger row, the same headers, metrics and disconnect handling);
this module only translates at its two ends, so retries, fallback, the breaker and
settle-exactly-once stay the relay's own:

- in: `MessagesEdge.authenticate` takes the key from `x-api-key` (the Anthropic SDK's header)
  or `Authorization: Bearer`; `canonical` turns the body into the canonical OpenAI chat body
  (`wire.anthropic_inbound`), refusing what it cannot say with a 400.
- out: `MessagesEdge.send` wraps the ASGI `send` and rewrites whatever the pipeline answers:
  a JSON `chat.completion` → a `message`; an SSE stream → Anthropic events, translated frame
  by frame as the relay sends them (its frames are parsed with the gateway's SSE decoder, so
  no framing is assumed, and nothing is buffered); the relay's error frame → an `error`
  event; every error answer → Anthropic's error shape with its status kept. Answers also
  carry `request-id`, the header the Anthropic SDK reads (`message._request_id`).

`count_tokens` is an estimate (`core.tokens`: the heuristic or tiktoken, not Anthropic's
tokenizer, which is not public); it calls no upstream and writes no ledger row.
"""

from __future__ import annotations

import msgspec

from circuitd.core.sse import DONE, SSEDecoder
from circuitd.core.tokens import Tokenizer, estimate_prompt_tokens
from circuitd.errors import InvalidRequest
from circuitd.gateway.asgi import JSON, Headers, Message, Receive, Scope, Send, header, read_body
from circuitd.gateway.asgi import start_response as send_whole
from circuitd.gateway.auth import Authenticator, Principal
from circuitd.wire.anthropic_inbound import (
    InboundRequest,
    TranslationError,
    anthropic_request_to_openai,
    count_tokens_request,
    uncounted_text,
)
from circuitd.wire.anthropic_inbound_answer import error_body, openai_completion_to_anthropic
from circuitd.wire.anthropic_inbound_stream import ChunkTranslator
from circuitd.wire.openai import chat_request_decoder

__all__ = ["ROUTES", "MessagesEdge", "count_tokens"]

ROUTES = ("/v1/messages", "/v1/messages/count_tokens")
_DONE_DATA = DONE.removeprefix(b"data: ").strip().decode()
_REPLACED = (b"content-type", b"content-length")
_encoder = msgspec.json.Encoder()


class _TokenCount(msgspec.Struct):
    input_tokens: int


def _is_event_stream(headers: Headers) -> bool:
    return any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in headers)


class MessagesEdge:
    """One call's translation at both ends (see the module's docstring)."""

    def __init__(self, send: Send, request_id: str) -> None:
        self._send = send
        self._request_id = request_id
        self.request: InboundRequest | None = None
        self._stream: ChunkTranslator | None = None
        self._sse = SSEDecoder()
        self._start: Message | None = None  # a JSON answer's start, sent with its body
        self._body: list[bytes] = []

    def authenticate(self, auth: Authenticator, scope: Scope) -> Principal:
        return auth.authenticate_api_key(
            header(scope, b"x-api-key"), header(scope, b"authorization")
        )

    def canonical(self, body: bytes, *, counting: bool = False) -> bytes:
        """The canonical chat body for a Messages body (400 when it cannot be translated)."""
        try:
            translate = count_tokens_request if counting else anthropic_request_to_openai
            self.request = translate(body)
        except TranslationError as exc:
            raise InvalidRequest(str(exc)) from None
        return self.request.body

    async def answer(self, headers: Headers, body: bytes) -> None:
        """A 200 JSON answer already in Anthropic's shape (sent untranslated)."""
        headers = [*headers, (b"request-id", self._request_id.encode())]
        await send_whole(self._send, 200, headers, body)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if _is_event_stream(message["headers"]):
                request = self.request
                self._stream = ChunkTranslator(
                    model=request.model if request else "",
                    fallback_id=self._request_id,
                    stop_sequences=request.stop_sequences if request else (),
                )
                headers = [*message["headers"], (b"request-id", self._request_id.encode())]
                await self._send({**message, "headers": headers})
            else:
                self._start = message
            return
        if kind != "http.response.body":
            await self._send(message)
            return
        more = bool(message.get("more_body", False))
        if self._stream is not None:
            body = self._frames(self._stream, message.get("body", b""))
            await self._send({"type": "http.response.body", "body": body, "more_body": more})
            return
        self._body.append(message.get("body", b""))
        if not more:
            await self._send_json()

    def _frames(self, stream: ChunkTranslator, data: bytes) -> bytes:
        return b"".join(
            stream.end() if event.data == _DONE_DATA else stream.feed(event.data)
            for event in self._sse.feed(data)
        )

    async def _send_json(self) -> None:
        start, body = self._start, b"".join(self._body)
        assert start is not None, "a response body before its start"
        status: int = start["status"]
        if status >= 400:
            body = error_body(status, body, request_id=self._request_id)
        else:
            request = self.request
            body = openai_completion_to_anthropic(
                body,
                model=request.model if request else "",
                fallback_id=self._request_id,
                stop_sequences=request.stop_sequences if request else (),
            )
        headers: Headers = [(k, v) for k, v in start["headers"] if k not in _REPLACED]
        headers.append((b"request-id", self._request_id.encode()))
        await send_whole(self._send, status, headers, body, JSON[1])


async def count_tokens(
    edge: MessagesEdge,
    scope: Scope,
    receive: Receive,
    *,
    auth: Authenticator,
    tokenizer: Tokenizer,
    max_body_bytes: int,
    headers: Headers,
) -> None:
    """`POST /v1/messages/count_tokens`: `{"input_tokens": <estimate>}`."""
    edge.authenticate(auth, scope)
    body = edge.canonical(await read_body(scope, receive, max_body_bytes), counting=True)
    assert edge.request is not None
    view = chat_request_decoder.decode(body)
    tokens = estimate_prompt_tokens(view.messages, tokenizer)
    extra = uncounted_text(edge.request)
    if extra:
        tokens += tokenizer.count(extra)
    await edge.answer(headers, _encoder.encode(_TokenCount(tokens)))
