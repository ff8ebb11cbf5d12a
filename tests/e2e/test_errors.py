"""Each error status, OpenAI-shaped, and the daemon still answers afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import h11
import httpx
import pytest
import trio
import trio.testing

from tests.harness import running_gateway

KEY = "k-test"
AUTH = {"authorization": f"Bearer {KEY}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

CONFIG = """
[server]
max_body_bytes = 4096

[upstream]
read_timeout_s = 0.5

[providers.up]
kind = "openai"
base_url = "{upstream}"
api_key = "upstream-key"

[providers.local]
kind = "mock"

[models."gpt-4o-mini"]
deployments = [{{ provider = "up" }}]

[models."local"]
deployments = [{{ provider = "local", model = "mock-1" }}]

[[keys]]
id = "tester"
key = "k-test"
models = ["gpt-4o-mini"]
"""


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error) == {"message", "type", "code", "param"}
    assert error["message"]
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"{not json", "headers": AUTH}, 400, "invalid_request_error"),
        ({"json": {"model": "gpt-4o-mini"}, "headers": AUTH}, 400, "invalid_request_error"),
        ({"json": CHAT}, 401, "invalid_api_key"),
        ({"json": CHAT, "headers": {"authorization": "Bearer wrong"}}, 401, "invalid_api_key"),
        ({"json": {**CHAT, "model": "local"}, "headers": AUTH}, 403, "model_not_allowed"),
        ({"json": {**CHAT, "model": "gpt-9"}, "headers": AUTH}, 404, "model_not_found"),
        ({"content": b"x" * 5000, "headers": AUTH}, 413, "request_too_large"),
        ({"json": {**CHAT, "mock": {"status": 500}}, "headers": AUTH}, 502, "upstream_error"),
        (
            {"json": {**CHAT, "mock": {"latency_ms": 3000}}, "headers": AUTH},
            504,
            "upstream_timeout",
        ),
    ],
)
async def test_error_statuses(
    tmp_path: Path, upstream: str, kwargs: dict[str, object], status: int, code: str
) -> None:
    async with (
        running_gateway(tmp_path, config_text=CONFIG.format(upstream=upstream)) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        response = await client.post("/v1/chat/completions", **kwargs)  # type: ignore[arg-type]
        assert_error(response, status, code)
        # A body left unread closes the connection; the answer says so.
        assert (response.headers.get("connection") == "close") == (status == 413)
        # ... and the daemon still answers.
        ok = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
        assert ok.status_code == 200, ok.text
        await gateway.drain()
    rows = gateway.rows()
    assert len(rows) == 2  # one row per call, refusals included
    assert rows[0]["status_code"] == status
    assert rows[0]["status"] == ("refused" if status < 500 else "error")
    assert rows[1]["status"] == "ok"


async def test_upstream_4xx_is_relayed_with_its_status_and_body(
    tmp_path: Path, upstream: str
) -> None:
    async with (
        running_gateway(tmp_path, config_text=CONFIG.format(upstream=upstream)) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        response = await client.post(
            "/v1/chat/completions", json={**CHAT, "mock": {"status": 400}}, headers=AUTH
        )
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
        await gateway.drain()
    [row] = gateway.rows()
    assert (row["status"], row["status_code"], row["cost_micro_usd"]) == ("error", 400, 0)


async def test_routes_and_methods(tmp_path: Path, upstream: str) -> None:
    async with (
        running_gateway(tmp_path, config_text=CONFIG.format(upstream=upstream)) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        assert_error(await client.get("/nope"), 404, "not_found")
        assert_error(await client.get("/v1/chat/completions"), 405, "method_not_allowed")
        assert_error(await client.get("/v1/models"), 401, "invalid_api_key")
        models = (await client.get("/v1/models", headers=AUTH)).json()
        assert models["object"] == "list"
        by_id = {m["id"]: m for m in models["data"]}
        assert by_id["gpt-4o-mini"]["providers"] == ["up"]
        assert by_id["gpt-4o-mini"]["input_usd_per_mtok"] is not None
        health = (await client.get("/health")).json()
        assert health["status"] == "ok"
        assert health["providers"] == {"up": "openai", "local": "mock"}


async def test_stream_upstream_failure_before_first_byte_is_a_plain_error(
    tmp_path: Path, upstream: str
) -> None:
    async with (
        running_gateway(tmp_path, config_text=CONFIG.format(upstream=upstream)) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        body = {**CHAT, "stream": True, "mock": {"status": 400}}
        response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
        assert response.status_code == 400  # relayed as a plain response, not a stream
        assert response.headers["content-type"].startswith("application/json")
        stalled = {**CHAT, "stream": True, "mock": {"stall_after": 1}}
        async with client.stream(
            "POST", "/v1/chat/completions", json=stalled, headers=AUTH
        ) as streamed:
            text = (await streamed.aread()).decode()
        # The stall is cut at the idle timeout with an explicit error event, never [DONE].
        assert '"code":"upstream_timeout"' in text
        assert "[DONE]" not in text
        await gateway.drain()
    rows = gateway.rows()
    assert [r["status"] for r in rows] == ["error", "partial"]


async def test_client_request_ids_are_echoed_but_never_merge_calls(
    tmp_path: Path, upstream: str
) -> None:
    async with (
        running_gateway(tmp_path, config_text=CONFIG.format(upstream=upstream)) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        headers = {**AUTH, "x-request-id": "client-42"}
        answers = [
            await client.post("/v1/chat/completions", json=CHAT, headers=headers) for _ in range(2)
        ]
        assert [a.headers["x-request-id"] for a in answers] == ["client-42"] * 2
        ours = [a.headers["x-circuit-request-id"] for a in answers]
        assert ours[0] != ours[1]
        await gateway.drain()
    rows = gateway.rows()
    assert [r["request_id"] for r in rows] == ours  # two calls, two rows
    assert [r["client_request_id"] for r in rows] == ["client-42"] * 2


async def _answer(stream: trio.SocketStream, h: h11.Connection) -> tuple[int, bytes]:
    """The next whole response on `stream` (status, body), read with h11."""
    status, body = 0, b""
    while True:
        event = h.next_event()
        if event is h11.NEED_DATA:
            h.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            h.start_next_cycle()
            return status, body
        else:
            raise AssertionError(f"unexpected {event!r}")


async def test_a_refusal_reads_the_rest_of_the_request_and_keeps_the_connection(
    tmp_path: Path, upstream: str
) -> None:
    # The body arrives after the gateway has decided to refuse (a bad key): it is read before
    # the answer, so the connection is kept. Before, hypercorn closed it without a word, and
    # the client's next request on it failed.
    body = json.dumps(CHAT).encode()
    async with running_gateway(tmp_path, config_text=CONFIG.format(upstream=upstream)) as gateway:
        host, port = gateway.url.removeprefix("http://").split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        h = h11.Connection(h11.CLIENT)
        for key, expected in (("wrong", 401), (KEY, 200)):
            headers = [
                ("host", "gateway"),
                ("authorization", f"Bearer {key}"),
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
            ]
            head = h.send(
                h11.Request(method="POST", target="/v1/chat/completions", headers=headers)
            )
            await stream.send_all(head)
            await trio.testing.wait_all_tasks_blocked()  # the gateway has the head alone
            await stream.send_all(h.send(h11.Data(data=body)) + h.send(h11.EndOfMessage()))
            status, answer = await _answer(stream, h)
            assert status == expected, answer
        await stream.aclose()
        await gateway.drain()
    assert [row["status_code"] for row in gateway.rows()] == [401, 200]


async def refusal_then_close(stream: trio.SocketStream, status: int) -> dict[str, str]:
    """Reads an answer up to the server's close: it must be `status`, say `connection: close`
    and carry an OpenAI-shaped error, which is returned."""
    received = b""
    while data := await stream.receive_some(65536):
        received += data
    await stream.aclose()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert b"connection: close" in head.lower()
    error: dict[str, str] = json.loads(body)["error"]
    return error


async def test_bytes_that_are_not_http_get_a_clear_error_and_a_close(
    tmp_path: Path, upstream: str
) -> None:
    async with running_gateway(tmp_path, config_text=CONFIG.format(upstream=upstream)) as gateway:
        host, port = gateway.url.removeprefix("http://").split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n"
            b"transfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n"
        )
        error = await refusal_then_close(stream, 400)
        assert error["code"] == "malformed_http_request"
        assert "Content-Length and Transfer-Encoding" in error["message"]
        await gateway.drain()
    assert gateway.rows() == []  # nothing was admitted


async def test_a_body_that_stops_coming_gets_a_408_and_a_close(
    tmp_path: Path, upstream: str, mock_clock: trio.testing.MockClock
) -> None:
    # The clock stands still unless the test moves it: the body deadline is crossed by a jump.
    config = CONFIG.format(upstream=upstream).replace(
        "max_body_bytes = 4096", "max_body_bytes = 4096\nbody_timeout_s = 5"
    )
    async with running_gateway(tmp_path, config_text=config) as gateway:
        host, port = gateway.url.removeprefix("http://").split(":")
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n"
            b"authorization: Bearer " + KEY.encode() + b"\r\n"
            b'content-type: application/json\r\ncontent-length: 100\r\n\r\n{"model":'
        )
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(4.999)
        await trio.testing.wait_all_tasks_blocked()
        assert not stream.socket.is_readable()  # still waiting for the rest
        mock_clock.jump(0.001)
        error = await refusal_then_close(stream, 408)
        assert error["code"] == "request_timeout"
        assert error["message"] == "The request body did not all arrive within 5 s."
        # The gateway goes on answering.
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            response = await client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
            assert response.status_code == 200
        await gateway.drain()
