"""The Anthropic adapter over httpx's MockTransport: what is sent, and what the relay gets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest
import trio

from circuitd.core.sse import encode_event
from circuitd.providers.anthropic import AnthropicProvider
from circuitd.providers.base import Deployment, UnsupportedRequest, UpstreamCall, UpstreamFailure
from tests.providers.adapters import Upstream, chat_call, sse_response, stream_payloads
from tests.providers.test_anthropic_stream import TEXT_STREAM, TOOL_STREAM
from tests.providers.test_anthropic_translate import TEXT_MESSAGE

CHAT = {"model": "claude", "messages": [{"role": "user", "content": "Hi"}]}


def provider(upstream: Upstream, **kw: Any) -> AnthropicProvider:
    return AnthropicProvider("anthropic", upstream.client, api_key="sk-ant-test", **kw)


def deployment(p: AnthropicProvider, **kw: Any) -> Deployment:
    return Deployment(
        name="anthropic/claude-sonnet-4-5",
        provider=p,
        upstream_model="claude-sonnet-4-5",
        price=None,
        **kw,
    )


def call(body: dict[str, Any] | None = None, *, stream: bool = False) -> UpstreamCall:
    return chat_call(body or CHAT, stream=stream)


def stream_bytes(events: list[tuple[str, str]]) -> bytes:
    return b"".join(encode_event(data, event=name) for name, data in events)


async def test_json_call_sends_anthropic_and_reads_openai() -> None:
    upstream = Upstream(lambda _: httpx.Response(200, content=TEXT_MESSAGE))
    p = provider(upstream)
    async with p.open(deployment(p), call()) as reply:
        assert (reply.status, reply.content_type, reply.retry_after) == (
            200,
            b"application/json",
            None,
        )
        body = json.loads(await reply.read())
    request = upstream.requests[0]
    assert request.method == "POST"
    assert str(request.url) == "https://api.anthropic.com/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert upstream.sent == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Hello! How can I help you?"
    assert body["usage"]["total_tokens"] == 22


async def test_base_url_headers_version_and_max_tokens_cap() -> None:
    upstream = Upstream(lambda _: httpx.Response(200, content=TEXT_MESSAGE))
    p = provider(
        upstream,
        base_url="http://proxy.test/anthropic/",
        headers={"Anthropic-Beta": "prompt-caching-2024-07-31"},
        default_max_tokens=8192,
        version="2024-01-01",
    )
    async with p.open(deployment(p, max_output_tokens=2048), call()) as reply:
        await reply.read()
    request = upstream.requests[0]
    assert str(request.url) == "http://proxy.test/anthropic/v1/messages"
    assert request.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert request.headers["anthropic-version"] == "2024-01-01"
    assert upstream.sent["max_tokens"] == 2048
    with_tokens = {**CHAT, "max_tokens": 9000}
    async with p.open(deployment(p, max_output_tokens=2048), call(with_tokens)) as reply:
        await reply.read()
    assert upstream.sent["max_tokens"] == 9000  # the client's own value is the client's business


async def test_streamed_reply_split_anywhere() -> None:
    raw = stream_bytes(TOOL_STREAM)
    chunks = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    upstream = Upstream(lambda _: sse_response(chunks))
    p = provider(upstream)
    payloads = await stream_payloads(p, deployment(p), call(stream=True))
    assert upstream.sent["stream"] is True
    assert payloads[-1] == "[DONE]"
    decoded = [json.loads(x) for x in payloads[:-1]]
    calls = [t for d in decoded for c in d["choices"] for t in c["delta"].get("tool_calls", [])]
    assert [c["function"]["name"] for c in calls if "id" in c] == ["get_weather", "get_time"]
    arguments = "".join(c["function"]["arguments"] for c in calls if c["index"] == 0)
    assert arguments == '{"location": "SF"}'
    assert decoded[-1]["choices"] == []
    assert decoded[-1]["usage"]["completion_tokens"] == 89


async def test_stream_stops_at_done() -> None:
    raw = stream_bytes(TEXT_STREAM) + b"event: ping\ndata: {}\n\n"
    upstream = Upstream(lambda _: sse_response([raw]))
    p = provider(upstream)
    payloads = await stream_payloads(p, deployment(p), call(stream=True))
    assert payloads[-1] == "[DONE]"
    assert len(payloads) == 6


async def test_upstream_529_is_an_openai_error_body() -> None:
    error = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    upstream = Upstream(lambda _: httpx.Response(529, headers={"retry-after": "3"}, content=error))
    p = provider(upstream)
    async with p.open(deployment(p), call(stream=True)) as reply:
        assert (reply.status, reply.retry_after) == (529, "3")
        assert reply.content_type == b"application/json"
        assert json.loads(await reply.read()) == {
            "error": {
                "message": "Overloaded",
                "type": "service_unavailable",
                "code": "overloaded_error",
                "param": None,
            }
        }


async def test_error_event_mid_stream_is_an_upstream_failure() -> None:
    error = '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    raw = stream_bytes([*TEXT_STREAM[:4], ("error", error)])
    upstream = Upstream(lambda _: sse_response([raw]))
    p = provider(upstream)
    seen: list[str] = []
    with pytest.raises(UpstreamFailure, match="overloaded_error: Overloaded") as info:
        async with (
            p.open(deployment(p), call(stream=True)) as reply,
            aclosing(reply.batches()) as batches,
        ):
            async for batch in batches:
                seen.extend(batch)  # keep what came before the error
    assert not (info.value.timeout or info.value.connect)
    assert len(seen) == 2  # the role chunk and "Hello" were relayed before the error


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (stream_bytes(TEXT_STREAM[:3]) + b"event: content_block_delta\ndata: {", "malformed event"),
        (b"data: \xff\n\n", "malformed event stream"),
        (b"event: content_block_delta\ndata: nope\n\n", "invalid_stream"),
    ],
)
async def test_broken_streams(raw: bytes, message: str) -> None:
    upstream = Upstream(lambda _: sse_response([raw]))
    p = provider(upstream)
    with pytest.raises(UpstreamFailure, match=message):
        await stream_payloads(p, deployment(p), call(stream=True))


async def test_stream_that_just_ends_is_left_to_the_relay() -> None:
    upstream = Upstream(lambda _: sse_response([stream_bytes(TEXT_STREAM[:4])]))
    p = provider(upstream)
    payloads = await stream_payloads(p, deployment(p), call(stream=True))
    assert "[DONE]" not in payloads  # the relay sees no finish and no [DONE]: a cut


async def test_malformed_success_body_is_an_upstream_failure() -> None:
    upstream = Upstream(lambda _: httpx.Response(200, content=b"<html>"))
    p = provider(upstream)
    async with p.open(deployment(p), call()) as reply:
        with pytest.raises(UpstreamFailure, match="malformed Anthropic message"):
            await reply.read()


async def test_connect_error_is_an_upstream_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    upstream = Upstream(refuse)
    p = provider(upstream)
    with pytest.raises(UpstreamFailure) as info:
        async with p.open(deployment(p), call()):
            pass
    assert info.value.connect


async def test_untranslatable_request_raises_before_any_io() -> None:
    upstream = Upstream(lambda _: httpx.Response(200, content=TEXT_MESSAGE))
    p = provider(upstream)
    with pytest.raises(UnsupportedRequest, match="n > 1"):
        async with p.open(deployment(p), call({**CHAT, "n": 3})):
            pass
    assert upstream.requests == []


async def test_after_done_the_rest_of_the_body_is_read_to_its_end() -> None:
    # (so that its connection goes back to the pool: `test_http_plumbing` shows the pool's
    # side) Here the body's end comes only once the relay has [DONE].
    done, ended = trio.Event(), []

    async def body() -> AsyncIterator[bytes]:
        yield stream_bytes(TEXT_STREAM)
        await done.wait()
        ended.append(True)

    answer = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())
    p = provider(Upstream(lambda _: answer))
    async with p.open(deployment(p), call(stream=True)) as reply:
        async for batch in reply.batches():
            if batch[-1] == "[DONE]":
                done.set()
    assert ended == [True]
