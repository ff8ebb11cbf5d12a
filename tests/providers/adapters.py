"""What the adapter tests of every dialect share: an httpx MockTransport upstream that records
what it is sent, calls to open, and checks of what the relay gets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import httpx
import openai.types.chat as oc

from circuitd.providers.base import Deployment, Provider, UpstreamCall

Handler = Callable[[httpx.Request], httpx.Response]


class Upstream:
    """A MockTransport that records requests and answers with `handler`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.client = httpx.AsyncClient(transport=httpx.MockTransport(self._handle))

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    @property
    def sent(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.requests[-1].content)
        return body


def sse_response(chunks: list[bytes]) -> httpx.Response:
    """A 200 event stream whose body arrives in `chunks`."""

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


def chat_call(body: dict[str, Any], *, stream: bool = False) -> UpstreamCall:
    request = {**body, "stream": stream}
    return UpstreamCall(request_id="req_1", body=json.dumps(request).encode(), stream=stream)


async def stream_payloads(p: Provider, d: Deployment, c: UpstreamCall) -> list[str]:
    """The OpenAI chunk payloads a 200 stream gives the relay, batches joined."""
    async with p.open(d, c) as reply:
        assert reply.status == 200
        async with aclosing(reply.batches()) as batches:
            return [payload async for batch in batches for payload in batch]


def check_openai_chunks(payloads: list[str]) -> None:
    """Real `chat.completion.chunk`s (the openai SDK's types), then `[DONE]`."""
    assert payloads[-1] == "[DONE]"
    for payload in payloads[:-1]:
        oc.ChatCompletionChunk.model_validate_json(payload)


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    """`raw` cut at the given offsets (clamped, deduplicated, in order)."""
    points = sorted({min(c, len(raw)) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
