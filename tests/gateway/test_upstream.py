"""`Http1Transport` under httpx's client API against `circuitd mock-upstream` on real sockets.

Synchronisation is the mock's own view (`/_mock/stats` long-polls), never a sleep; the few
timeouts below are short on purpose and nothing asserts how long anything took.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
import pytest
import trio

from circuitd.mockupstream.testing import running_mock_upstream
from circuitd.providers.openai import failure_from
from circuitd.upstream import Http1Transport, PoolStatistics

TIMEOUT = httpx.Timeout(10.0)


@pytest.fixture
def base() -> Iterator[str]:
    with running_mock_upstream() as url:
        yield url


@pytest.fixture
async def transport() -> AsyncIterator[Http1Transport]:
    transport = Http1Transport(limits=httpx.Limits(max_connections=8, keepalive_expiry=60))
    yield transport
    await transport.aclose()


@pytest.fixture
async def client(transport: Http1Transport) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
        yield client


def chat(*, stream: bool = False, **mock: object) -> bytes:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say something deterministic."}],
        "stream": stream,
    }
    if mock:
        body["mock"] = mock
    return msgspec.json.encode(body)


async def mock_get(base: str, path: str) -> Any:
    """A control call on its own connection, from a thread (the test's loop keeps running)."""
    response = await trio.to_thread.run_sync(lambda: httpx.get(base + path, timeout=20.0))
    return response.json()


async def mock_stats(base: str, query: str = "") -> dict[str, Any]:
    stats: dict[str, Any] = await mock_get(base, f"/_mock/stats?{query}")
    assert not stats["timed_out"], stats
    return stats


async def opened_since(base: str, before: dict[str, Any]) -> int:
    """TCP connections the mock accepted since `before` (not counting this call's own)."""
    return int((await mock_stats(base))["connections"]) - int(before["connections"]) - 1


async def send(
    client: httpx.AsyncClient, base: str, body: bytes, timeouts: httpx.Timeout = TIMEOUT
) -> httpx.Response:
    """As the gateway's provider does: build, send streaming, the caller reads and closes."""
    request = client.build_request(
        "POST",
        base + "/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json", "x-test": "yes"},
        timeout=timeouts,
    )
    return await client.send(request, stream=True)


def idle_and_active(transport: Http1Transport) -> tuple[int, int]:
    stats = transport.statistics()
    return stats.idle, stats.active


async def test_json_request_and_response(
    client: httpx.AsyncClient, transport: Http1Transport, base: str
) -> None:
    response = await send(client, base, chat())
    try:
        assert response.status_code == 200
        assert response.http_version == "HTTP/1.1"
        assert response.reason_phrase == "OK"
        assert response.headers["content-type"] == "application/json"
        payload = msgspec.json.decode(await response.aread())
    finally:
        await response.aclose()
    assert payload["object"] == "chat.completion"
    assert payload["choices"][0]["message"]["content"]
    [logged] = await mock_get(base, "/_mock/requests")
    assert logged["body"] == msgspec.json.decode(chat())
    headers = {name.lower(): value for name, value in logged["headers"]}
    assert headers["x-test"] == "yes"
    assert headers["host"] == base.removeprefix("http://")
    assert idle_and_active(transport) == (1, 0)


async def test_stream_is_read_chunk_by_chunk(client: httpx.AsyncClient, base: str) -> None:
    # The mock sends the role chunk and one content chunk, then nothing until we leave:
    # reading them proves the body arrives as it comes, not at its end.
    response = await send(client, base, chat(stream=True, stall_after=1))
    try:
        assert response.headers["content-type"].startswith("text/event-stream")
        received = b""
        async for chunk in response.aiter_raw():
            received += chunk
            if received.count(b"\n\n") == 2:
                break
    finally:
        await response.aclose()
    events = [e.removeprefix(b"data: ") for e in received.split(b"\n\n") if e]
    assert [msgspec.json.decode(e)["object"] for e in events] == ["chat.completion.chunk"] * 2


async def test_whole_stream_then_keep_alive(
    client: httpx.AsyncClient, transport: Http1Transport, base: str
) -> None:
    before = await mock_stats(base)
    for _ in range(3):
        response = await send(client, base, chat(stream=True, chunk_delay_ms=0.1))
        try:
            body = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        assert body.endswith(b"data: [DONE]\n\n")
    assert await opened_since(base, before) == 1
    assert transport.statistics().opened_total == 1


async def test_sequential_requests_share_one_connection(
    client: httpx.AsyncClient, transport: Http1Transport, base: str
) -> None:
    before = await mock_stats(base)
    for _ in range(5):
        response = await client.post(base + "/v1/chat/completions", content=chat())
        assert response.status_code == 200
    assert await opened_since(base, before) == 1
    stats = transport.statistics()
    assert (stats.opened_total, stats.reused_total, stats.idle, stats.active) == (1, 4, 1, 0)


async def test_concurrency_is_capped_by_max_connections(base: str) -> None:
    transport = Http1Transport(limits=httpx.Limits(max_connections=4))
    before = await mock_stats(base)
    statuses: list[int] = []
    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:

        async def one() -> None:
            response = await client.post(base + "/v1/chat/completions", content=chat(latency_ms=5))
            statuses.append(response.status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
        stats = transport.statistics()
    assert statuses == [200] * 20
    assert stats.opened_total <= 4
    assert stats.opened_total + stats.reused_total == 20
    assert (stats.active, stats.waiting) == (0, 0)
    assert await opened_since(base, before) <= 4


async def test_early_close_mid_stream_disconnects_upstream(
    client: httpx.AsyncClient, transport: Http1Transport, base: str
) -> None:
    response = await send(client, base, chat(stream=True, stall_after=2))
    chunks = response.aiter_raw()
    assert (await chunks.__anext__()).startswith(b"data: ")
    await response.aclose()  # as the gateway does when its own client goes away
    assert idle_and_active(transport) == (0, 0)
    stats = await mock_stats(base, "wait_disconnects=1")
    assert stats["disconnects"] == 1
    response = await client.post(base + "/v1/chat/completions", content=chat())
    assert response.status_code == 200
    assert transport.statistics().opened_total == 2


async def test_closing_after_done_keeps_the_connection(
    client: httpx.AsyncClient, transport: Http1Transport, base: str
) -> None:
    # The gateway's SSE relay stops at `[DONE]` and closes; the chunked terminator follows
    # right behind it, so the connection is still reusable (no disconnect either).
    for _ in range(3):
        response = await send(client, base, chat(stream=True))
        try:
            async for chunk in response.aiter_raw():
                if chunk.endswith(b"data: [DONE]\n\n"):
                    break
        finally:
            await response.aclose()
    stats = await mock_stats(base)
    assert stats["disconnects"] == 0
    # Reuse depends on the terminator having arrived by then; on loopback it has.
    assert transport.statistics().opened_total <= 3
    assert idle_and_active(transport)[1] == 0


async def test_read_timeout_on_a_stalled_stream(
    client: httpx.AsyncClient, transport: Http1Transport, base: str
) -> None:
    timeout = httpx.Timeout(10.0, read=0.2)
    response = await send(client, base, chat(stream=True, stall_after=1), timeout)
    with pytest.raises(httpx.ReadTimeout) as caught:
        async for _ in response.aiter_raw():
            pass
    await response.aclose()
    assert caught.value.request.url.path == "/v1/chat/completions"
    assert failure_from(caught.value).timeout
    assert idle_and_active(transport) == (0, 0)
    await mock_stats(base, "wait_disconnects=1")


async def test_read_timeout_before_the_response_head(
    client: httpx.AsyncClient, transport: Http1Transport, base: str
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await send(client, base, chat(latency_ms=20_000), httpx.Timeout(10.0, read=0.2))
    assert idle_and_active(transport) == (0, 0)


async def test_connect_error_on_a_closed_port(client: httpx.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpx.ConnectError) as caught:
        await client.post(f"http://127.0.0.1:{port}/v1/chat/completions", content=chat())
    assert caught.value.request.url.port == port
    assert failure_from(caught.value).connect


async def test_connect_timeout(client: httpx.AsyncClient, base: str) -> None:
    with pytest.raises(httpx.ConnectTimeout) as caught:
        await send(client, base, chat(), httpx.Timeout(10.0, connect=0))
    assert failure_from(caught.value).connect
    assert failure_from(caught.value).timeout


async def test_cut_stream_is_a_protocol_error(
    client: httpx.AsyncClient, transport: Http1Transport, base: str
) -> None:
    response = await send(client, base, chat(stream=True, cut_after=2))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)) as caught:
        await response.aread()
    await response.aclose()
    assert caught.value.request is not None
    assert idle_and_active(transport) == (0, 0)


async def test_upstream_error_status_passes_through(
    client: httpx.AsyncClient, transport: Http1Transport, base: str
) -> None:
    for status in (500, 429):
        response = await client.post(
            base + "/v1/chat/completions", content=chat(status=status, retry_after=2)
        )
        assert response.status_code == status
        assert response.headers["retry-after"] == "2"
        assert response.json()["error"]["type"]
    assert transport.statistics().opened_total == 1  # an error response keeps the connection


async def test_cancelled_while_waiting_for_the_head(
    client: httpx.AsyncClient, transport: Http1Transport, base: str
) -> None:
    async with trio.open_nursery() as nursery:

        async def request() -> None:
            await send(client, base, chat(latency_ms=20_000))
            pytest.fail("the request should have been cancelled")

        nursery.start_soon(request)
        await mock_stats(base, "wait_requests=1")  # it reached the mock: now cancel it
        assert idle_and_active(transport) == (0, 1)
        nursery.cancel_scope.cancel()
    assert idle_and_active(transport) == (0, 0)
    await mock_stats(base, "wait_disconnects=1")
    response = await client.post(base + "/v1/chat/completions", content=chat())
    assert response.status_code == 200
    assert transport.statistics().opened_total == 2


async def test_cancelled_while_reading_the_body(
    client: httpx.AsyncClient, transport: Http1Transport, base: str
) -> None:
    # Only the role chunk comes, then nothing: the second read has to wait on the socket
    # (a read that finds its bytes already buffered returns them without a checkpoint).
    response = await send(client, base, chat(stream=True, stall_after=0))
    chunks = response.aiter_raw()
    await chunks.__anext__()
    with trio.CancelScope() as scope:
        scope.cancel()
        await chunks.__anext__()
    assert scope.cancelled_caught
    await response.aclose()
    assert idle_and_active(transport) == (0, 0)
    await mock_stats(base, "wait_disconnects=1")


async def test_pool_timeout_and_statistics(base: str) -> None:
    transport = Http1Transport(limits=httpx.Limits(max_connections=1))
    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
        held = await send(client, base, chat(stream=True, stall_after=0))
        assert transport.statistics() == PoolStatistics(
            idle=0, active=1, waiting=0, opened_total=1, reused_total=0, retried_total=0
        )
        with pytest.raises(httpx.PoolTimeout):
            await send(client, base, chat(), httpx.Timeout(10.0, pool=0.05))
        await held.aclose()
        response = await client.post(base + "/v1/chat/completions", content=chat())
        assert response.status_code == 200
    assert transport.statistics().opened_total == 2


async def test_closed_client_closes_idle_connections(base: str) -> None:
    transport = Http1Transport()
    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
        await client.post(base + "/v1/chat/completions", content=chat())
        assert transport.statistics().idle == 1
    assert transport.statistics().idle == 0
    stats = await mock_stats(base)
    assert stats["open_connections"] == 1  # only the stats call's own
    with pytest.raises(RuntimeError):
        await transport.handle_async_request(httpx.Request("GET", base + "/v1/models"))


async def test_gateway_client_uses_http1_and_keeps_no_cookies(base: str) -> None:
    from circuitd.config import load_config
    from circuitd.gateway.runtime import upstream_client

    config = load_config(None, {"PROVIDER": "MOCK"})
    assert config.upstream.transport == "http1"
    # "h11", the transport's name until it stopped using h11, still reads as the same one.
    upstream = msgspec.convert({"transport": "h11"}, type(config.upstream))
    former_name = msgspec.structs.replace(config, upstream=upstream)
    async with upstream_client(former_name) as client:
        assert isinstance(client._transport, Http1Transport)
    async with upstream_client(config) as client:
        assert isinstance(client._transport, Http1Transport)
        # A Set-Cookie from one upstream answer must not ride along on the next caller's call.
        response = httpx.Response(200, headers={"set-cookie": "session=abc; Path=/"})
        response.request = client.build_request("GET", f"{base}/_mock/stats")
        client.cookies.extract_cookies(response)
        assert not client.cookies
        answer = await client.get(f"{base}/_mock/stats")
        assert answer.status_code == 200
        assert "cookie" not in answer.request.headers

    legacy = load_config(None, {"PROVIDER": "MOCK"})
    legacy = msgspec.structs.replace(
        legacy, upstream=msgspec.structs.replace(legacy.upstream, transport="httpx")
    )
    async with upstream_client(legacy) as client:
        assert not isinstance(client._transport, Http1Transport)


async def test_gateway_client_sends_straight_to_its_transport_only_when_httpx_adds_nothing(
    base: str,
) -> None:
    from circuitd.config import load_config
    from circuitd.gateway.runtime import upstream_client
    from circuitd.upstream.transport import ResponseBody

    url = f"{base}/v1/chat/completions"
    async with upstream_client(load_config(None, {"PROVIDER": "MOCK"})) as client:
        request = client.build_request("POST", url, content=chat())
        response = await client.send(request, stream=True)
        assert type(response.stream) is ResponseBody  # httpx's wrapper skipped
        assert response.request is request
        assert msgspec.json.decode(await response.aread())["object"] == "chat.completion"

        # Credentials in the URL: httpx's auth flow turns them into Basic auth.
        with_credentials = url.replace("http://", "http://user:secret@")
        response = await client.send(
            client.build_request("POST", with_credentials, content=chat()), stream=True
        )
        await response.aread()
        [*_, logged] = await mock_get(base, "/_mock/requests")
        headers = {name.lower(): value for name, value in logged["headers"]}
        assert headers["authorization"] == "Basic " + base64.b64encode(b"user:secret").decode()

        # An event hook: httpx's layers run it.
        seen: list[str] = []

        async def hook(request: httpx.Request) -> None:
            seen.append(request.method)

        client.event_hooks = {"request": [hook], "response": []}
        response = await client.send(client.build_request("POST", url, content=chat()), stream=True)
        await response.aread()
        assert seen == ["POST"]
