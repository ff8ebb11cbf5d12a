"""The POST plumbing every adapter shares (`circuitd.providers.http`), through the OpenAI
adapter, against the scripted h11 server of `tests.gateway.test_upstream_pool`: the request
a prepared endpoint sends, and bodies read as sent or decoded when the upstream compressed
them. Both transports: circuitd's `Http1Transport` and httpcore's pool."""

from __future__ import annotations

import gc
import gzip
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager

import h11
import httpx
import pytest
import trio
import trio.testing

from circuitd.providers.base import Deployment, UpstreamCall
from circuitd.providers.http import FINISH_GRACE_S, PREPARED_URLS, Endpoints, Received
from circuitd.providers.openai import OpenAIProvider
from circuitd.upstream import Http1Transport
from tests.gateway.test_upstream_pool import Peer, Server, scripted_server

CHAT = b'{"id":"chatcmpl-1","object":"chat.completion","choices":[]}'
EVENTS = b'data: {"id":"c","choices":[]}\n\ndata: {"id":"d","choices":[]}\n\ndata: [DONE]\n\n'


Script = Callable[[Peer, Server], Awaitable[None]]


def answering(
    body: bytes, heads: list[h11.Request], *, encoding: str | None, content_type: str
) -> Script:
    """Answers every request with `body` (gzipped with `encoding`), noting what came."""

    async def script(peer: Peer, server: Server) -> None:
        while (request := await peer.request()) is not None:
            head, sent = request
            server.requests.append((peer.index, sent))
            heads.append(head)
            payload = gzip.compress(body) if encoding else body
            headers = [("content-type", content_type), ("content-length", str(len(payload)))]
            if encoding:
                headers.append(("content-encoding", encoding))
            h = peer.http
            data = h.send(h11.Response(status_code=200, headers=headers))
            await peer.stream.send_all(data + h.send(h11.Data(data=payload)))
            await peer.stream.send_all(h.send(h11.EndOfMessage()))
            h.start_next_cycle()

    return script


@asynccontextmanager
async def provider_for(transport: str, url: str) -> AsyncIterator[OpenAIProvider]:
    pool = Http1Transport() if transport == "http1" else None
    async with httpx.AsyncClient(transport=pool, timeout=10.0) as client:
        yield OpenAIProvider(
            "up", client, base_url=url + "/v1", api_key="sk-test", headers={"x-tenant": "t1"}
        )


def deployment(provider: OpenAIProvider) -> Deployment:
    return Deployment("up/gpt", provider, "gpt-4o-mini", None, read_timeout_s=7.0)


@pytest.mark.parametrize("transport", ["http1", "httpx"])
@pytest.mark.parametrize("encoding", [None, "gzip"])
async def test_json_body_is_read_whole_and_decoded(transport: str, encoding: str | None) -> None:
    heads: list[h11.Request] = []
    script = answering(CHAT, heads, encoding=encoding, content_type="application/json")
    async with scripted_server(script) as server, provider_for(transport, server.url) as up:
        call = UpstreamCall("req_1", b'{"model":"gpt-4o-mini"}', False)
        for _ in range(2):  # the second on the prepared endpoint
            async with up.open(deployment(up), call) as reply:
                assert reply.status == 200
                assert await reply.read() == CHAT
    assert [body for _, body in server.requests] == [call.body, call.body]
    head = heads[0]
    assert head.method == b"POST" and head.target == b"/v1/chat/completions"
    sent = dict(head.headers)
    assert sent[b"content-length"] == str(len(call.body)).encode()
    assert sent[b"authorization"] == b"Bearer sk-test"
    assert sent[b"x-tenant"] == b"t1"
    assert sent[b"content-type"] == b"application/json"
    assert sent[b"host"] == server.url.removeprefix("http://").encode()
    assert b"gzip" in sent[b"accept-encoding"]


@pytest.mark.parametrize("transport", ["http1", "httpx"])
@pytest.mark.parametrize("encoding", [None, "gzip"])
async def test_event_stream_is_split_and_decoded(transport: str, encoding: str | None) -> None:
    script = answering(EVENTS, [], encoding=encoding, content_type="text/event-stream")
    async with scripted_server(script) as server, provider_for(transport, server.url) as up:
        call = UpstreamCall("req_1", b'{"model":"gpt-4o-mini","stream":true}', True)
        async with up.open(deployment(up), call) as reply:
            payloads = [p async for batch in reply.batches() for p in batch]
    assert payloads == ['{"id":"c","choices":[]}', '{"id":"d","choices":[]}', "[DONE]"]


async def test_a_stream_read_to_done_leaves_no_generator_to_the_garbage_collector() -> None:
    # Each async generator met from here on reports a finalization by the garbage collector
    # (trio's own hook does it in a task of its own, waking the loop: per stream, that was
    # the event splitter under the payloads, left suspended at [DONE]).
    finalized: list[str] = []
    hooks = sys.get_asyncgen_hooks()
    trio_finalizer = hooks.finalizer
    assert trio_finalizer is not None

    def finalizer(agen: AsyncGenerator[object, None]) -> None:
        finalized.append(agen.ag_code.co_name)
        trio_finalizer(agen)

    script = answering(EVENTS, [], encoding=None, content_type="text/event-stream")
    sys.set_asyncgen_hooks(hooks.firstiter, finalizer)
    try:
        async with scripted_server(script) as server, provider_for("http1", server.url) as up:
            call = UpstreamCall("req_1", b'{"model":"gpt-4o-mini","stream":true}', True)
            async with (
                up.open(deployment(up), call) as reply,
                aclosing(reply.batches()) as batches,
            ):
                async for batch in batches:
                    if batch[-1] == "[DONE]":
                        break  # as the relay does
        gc.collect()
    finally:
        sys.set_asyncgen_hooks(*hooks)
    assert finalized == []


def test_received_reads_its_header_fields_in_one_pass_as_httpx_would() -> None:
    raw = [
        (b"Content-Type", b"text/event-stream"),
        (b"RETRY-after", b"7"),
        (b"x-other", b"1"),
        (b"content-type", b"charset=utf-8"),  # repeated: joined, as `Headers.get` does
        (b"Content-Encoding", b"gzip"),
    ]
    response = httpx.Response(429, headers=raw)
    received = Received(response)
    assert received.response is response and received.status == 429
    assert received.content_type == response.headers["content-type"].encode()
    assert received.retry_after == response.headers["retry-after"] == "7"
    assert received.encoded
    bare = Received(httpx.Response(200, headers=[(b"content-length", b"0")]))
    assert (bare.content_type, bare.retry_after, bare.encoded) == (None, None, False)


def test_prepared_urls_are_bounded() -> None:
    # Where the model is in the URL and the client names the model (env-only Gemini), every
    # name is a URL: past the bound they are built per call, not kept.
    client = httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=9.0))
    endpoints = Endpoints(client, {"x-goog-api-key": "k"})
    up = OpenAIProvider("up", client, base_url="http://127.0.0.1:9/v1", api_key=None)
    for n in range(PREPARED_URLS + 44):
        url = f"http://127.0.0.1:9/v1/models/m{n}:generateContent"
        request = endpoints.request(url, b"{}", deployment(up))
        assert str(request.url) == url
        assert request.headers["x-goog-api-key"] == "k"
        assert request.headers["content-length"] == "2"
        assert request.extensions["timeout"]["read"] == 7.0  # the deployment's own
        assert request.content == b"{}"
    assert len(endpoints) == PREPARED_URLS


def ending_late(ends: list[trio.Event] | None) -> Script:
    """Answers each request with the event stream `EVENTS` in one chunk, then ends the
    chunked body once the test sets that request's event in `ends` (never, with None)."""

    async def script(peer: Peer, server: Server) -> None:
        while (request := await peer.request()) is not None:
            server.requests.append((peer.index, request[1]))
            h = peer.http
            head = h11.Response(status_code=200, headers=[("content-type", "text/event-stream")])
            await peer.stream.send_all(h.send(head) + h.send(h11.Data(data=EVENTS)))
            if ends is None:
                await trio.sleep_forever()
            await ends[len(server.requests) - 1].wait()
            await peer.stream.send_all(h.send(h11.EndOfMessage()))
            h.start_next_cycle()

    return script


@pytest.mark.parametrize("transport", ["http1", "httpx"])
async def test_after_done_the_body_is_read_to_its_end_so_its_connection_is_kept(
    transport: str, autojump_clock: trio.testing.MockClock
) -> None:
    # The chunked body's end comes only after [DONE] has reached the reader: a reader that
    # stopped at [DONE] closed the connection, and each stream paid for a new one.
    ends = [trio.Event(), trio.Event()]
    async with (
        scripted_server(ending_late(ends)) as server,
        provider_for(transport, server.url) as up,
    ):
        call = UpstreamCall("req_1", b'{"model":"gpt-4o-mini","stream":true}', True)
        for end in ends:
            async with up.open(deployment(up), call) as reply:
                async for batch in reply.batches():
                    if batch[-1] == "[DONE]":
                        end.set()  # the client has its answer: now the body may end
    assert [peer for peer, _ in server.requests] == [0, 0]  # one connection for both


async def test_a_body_that_does_not_end_after_done_is_given_up_after_the_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        scripted_server(ending_late(None)) as server,
        provider_for("http1", server.url) as up,
    ):
        call = UpstreamCall("req_1", b'{"model":"gpt-4o-mini","stream":true}', True)
        for _ in range(2):
            started = trio.current_time()
            async with up.open(deployment(up), call) as reply:
                payloads = [p async for batch in reply.batches() for p in batch]
            assert payloads[-1] == "[DONE]"
            assert trio.current_time() - started == pytest.approx(FINISH_GRACE_S)
    assert [peer for peer, _ in server.requests] == [0, 1]  # the first could not be kept
