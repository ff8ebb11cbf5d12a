"""The Gemini adapter over httpx's MockTransport: what is sent, and what the relay gets."""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from circuitd.providers.base import Deployment, UnsupportedRequest, UpstreamCall, UpstreamFailure
from circuitd.providers.gemini import GeminiProvider, model_url
from tests.providers.adapters import Handler, Upstream, chat_call, sse_response, stream_payloads
from tests.providers.test_gemini_stream import TEXT_STREAM, TOOL_STREAM, sse
from tests.providers.test_gemini_translate import TEXT_RESPONSE

CHAT = {"model": "gemini", "messages": [{"role": "user", "content": "Hi"}]}


def provider(upstream: Upstream, **kw: Any) -> GeminiProvider:
    return GeminiProvider("gemini", upstream.client, api_key="AIza-test", **kw)


def deployment(p: GeminiProvider, model: str = "gemini-2.5-flash") -> Deployment:
    return Deployment(name=f"gemini/{model}", provider=p, upstream_model=model, price=None)


def call(body: dict[str, Any] | None = None, *, stream: bool = False) -> UpstreamCall:
    return chat_call(body or CHAT, stream=stream)


def upstream(handler: Handler) -> tuple[Upstream, GeminiProvider]:
    up = Upstream(handler)
    return up, provider(up)


async def collect(p: GeminiProvider, c: UpstreamCall) -> list[str]:
    return await stream_payloads(p, deployment(p), c)


@pytest.mark.parametrize(
    ("base_url", "model", "stream", "url"),
    [
        (
            "https://generativelanguage.googleapis.com",
            "gemini-2.5-flash",
            False,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
        ),
        (
            "https://generativelanguage.googleapis.com/",
            "models/gemini-2.5-pro",
            True,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro"
            ":streamGenerateContent?alt=sse",
        ),
        (
            "http://proxy.test/google/v1",
            "tunedModels/my-model-7",
            False,
            "http://proxy.test/google/v1/tunedModels/my-model-7:generateContent",
        ),
        (
            "http://proxy.test/v1alpha/",
            "odd name",
            False,
            "http://proxy.test/v1alpha/models/odd%20name:generateContent",
        ),
    ],
)
def test_urls_as_the_google_genai_sdk_composes_them(
    base_url: str, model: str, stream: bool, url: str
) -> None:
    assert model_url(base_url, model, stream=stream) == url


async def test_json_call_sends_gemini_and_reads_openai() -> None:
    up, p = upstream(lambda _: httpx.Response(200, content=TEXT_RESPONSE))
    async with p.open(deployment(p), call()) as reply:
        assert (reply.status, reply.content_type, reply.retry_after) == (
            200,
            b"application/json",
            None,
        )
        body = json.loads(await reply.read())
    request = up.requests[0]
    assert request.method == "POST"
    assert str(request.url) == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert request.headers["x-goog-api-key"] == "AIza-test"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert up.sent == {"contents": [{"parts": [{"text": "Hi"}], "role": "user"}]}
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Hello! How can I help you?"
    assert body["usage"]["total_tokens"] == 42


async def test_base_url_and_headers() -> None:
    up, _ = upstream(lambda _: httpx.Response(200, content=TEXT_RESPONSE))
    p = provider(up, base_url="http://proxy.test/gemini", headers={"X-Goog-User-Project": "p1"})
    async with p.open(deployment(p), call()) as reply:
        await reply.read()
    request = up.requests[0]
    assert str(request.url).startswith("http://proxy.test/gemini/v1beta/models/")
    assert request.headers["x-goog-user-project"] == "p1"


async def test_streamed_reply_split_anywhere() -> None:
    raw = sse(TOOL_STREAM)
    up, p = upstream(lambda _: sse_response([raw[i : i + 7] for i in range(0, len(raw), 7)]))
    payloads = await collect(p, call(stream=True))
    assert str(up.requests[0].url).endswith(":streamGenerateContent?alt=sse")
    assert "stream" not in up.sent
    assert payloads[-1] == "[DONE]"
    decoded = [json.loads(x) for x in payloads[:-1]]
    calls = [t for d in decoded for c in d["choices"] for t in c["delta"].get("tool_calls", [])]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time", "get_date"]
    assert decoded[-1]["choices"] == [] and decoded[-1]["usage"]["completion_tokens"] == 89


@pytest.mark.parametrize(
    ("headers", "body", "retry_after"),
    [
        (
            {},
            b'{"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED",'
            b'"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"17s"}]}}',
            "17",
        ),
        (
            {"retry-after": "3"},
            b'{"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED",'
            b'"details":[{"retryDelay":"17s"}]}}',
            "3",
        ),
        ({}, b'{"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED"}}', None),
    ],
)
async def test_upstream_429_is_an_openai_error_with_its_retry_delay(
    headers: dict[str, str], body: bytes, retry_after: str | None
) -> None:
    _, p = upstream(lambda _: httpx.Response(429, headers=headers, content=body))
    async with p.open(deployment(p), call(stream=True)) as reply:
        assert reply.status == 429 and reply.content_type == b"application/json"
        assert json.loads(await reply.read()) == {
            "error": {
                "message": "Quota",
                "type": "rate_limit_exceeded",
                "code": "resource_exhausted",
                "param": None,
            }
        }
        assert reply.retry_after == retry_after


async def test_error_event_mid_stream_is_an_upstream_failure_with_its_status() -> None:
    error = '{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}'
    _, p = upstream(lambda _: sse_response([sse([*TEXT_STREAM[:1], error])]))
    seen: list[str] = []
    with pytest.raises(UpstreamFailure, match="unavailable: The model is overloaded") as info:
        async with (
            p.open(deployment(p), call(stream=True)) as reply,
            aclosing(reply.batches()) as batches,
        ):
            async for batch in batches:
                seen.extend(batch)  # keep what came before the error
    assert info.value.status == 503
    assert not (info.value.timeout or info.value.connect)
    assert len(seen) == 2  # the role chunk and "Hello" came before the error


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (sse(TEXT_STREAM[:1]) + b"data: {", "malformed event"),
        (b"data: \xff\n\n", "malformed event stream"),
    ],
)
async def test_broken_streams(raw: bytes, message: str) -> None:
    _, p = upstream(lambda _: sse_response([raw]))
    with pytest.raises(UpstreamFailure, match=message):
        await collect(p, call(stream=True))


async def test_stream_that_just_ends_is_left_to_the_relay() -> None:
    _, p = upstream(lambda _: sse_response([sse(TEXT_STREAM[:2])]))
    payloads = await collect(p, call(stream=True))
    assert payloads and "[DONE]" not in payloads  # no finish, no [DONE]: the relay sees a cut


async def test_malformed_success_body_is_an_upstream_failure() -> None:
    _, p = upstream(lambda _: httpx.Response(200, content=b"<html>"))
    async with p.open(deployment(p), call()) as reply:
        with pytest.raises(UpstreamFailure, match="malformed Gemini answer"):
            await reply.read()


async def test_connect_error_is_an_upstream_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    _, p = upstream(refuse)
    with pytest.raises(UpstreamFailure) as info:
        async with p.open(deployment(p), call()):
            pass
    assert info.value.connect


async def test_untranslatable_request_raises_before_any_io() -> None:
    up, p = upstream(lambda _: httpx.Response(200, content=TEXT_RESPONSE))
    bad = {**CHAT, "messages": [{"role": "tool", "content": "x"}]}
    with pytest.raises(UnsupportedRequest, match="tool_call_id"):
        async with p.open(deployment(p), call(bad)):
            pass
    assert up.requests == []
