"""`Http1Transport`'s HTTP/1.1 details against the scripted server of `test_upstream_pool`:
closing at `[DONE]`, keep-alive refused, 1xx, write timeouts, the scheme, TLS."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import h11
import httpx
import pytest
import trio

from circuitd.upstream import Http1Transport
from tests.gateway.test_upstream_pool import (
    TIMEOUT,
    Peer,
    Server,
    client_for,
    scripted_server,
)


async def test_closing_at_done_keeps_the_connection_only_if_the_end_is_here() -> None:
    # The gateway's SSE relay stops reading at `data: [DONE]` and closes the response.
    # When the chunked terminator came with it, the connection is whole: keep it. When it
    # has not come yet, closing must not wait for it: the socket is closed.
    terminator_may_go = trio.Event()

    async def script(peer: Peer, server: Server) -> None:
        h = peer.http
        while (request := await peer.request()) is not None:
            late = request[1] == b"late"
            head = h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")])
            data = h.send(head) + h.send(h11.Data(data=b"data: [DONE]\n\n"))
            end = h.send(h11.EndOfMessage())
            if late:
                await peer.stream.send_all(data)
                await terminator_may_go.wait()
                await peer.stream.send_all(end)  # too late: the client is gone
                assert await peer.request() is None
                return
            await peer.stream.send_all(data + end)
            h.start_next_cycle()

    async def until_done(client: httpx.AsyncClient, url: str, body: bytes) -> None:
        response = await client.send(client.build_request("POST", url, content=body), stream=True)
        try:
            async for chunk in response.aiter_raw():
                if chunk.endswith(b"data: [DONE]\n\n"):
                    break
        finally:
            await response.aclose()

    async with scripted_server(script) as server, client_for() as (client, transport):
        await until_done(client, server.url, b"whole")
        await until_done(client, server.url, b"whole")
        stats = transport.statistics()
        assert (stats.idle, stats.opened_total) == (1, 1)
        await until_done(client, server.url, b"late")
        terminator_may_go.set()
        stats = transport.statistics()
        assert (stats.idle, stats.active, stats.opened_total) == (0, 0, 1)


async def test_response_without_keep_alive_is_not_pooled() -> None:
    async def script(peer: Peer, server: Server) -> None:
        assert await peer.request() is not None
        h = peer.http
        data = h.send(h11.Response(status_code=204, headers=[("connection", "close")]))
        await peer.stream.send_all(data + h.send(h11.EndOfMessage()))

    async with scripted_server(script) as server, client_for() as (client, transport):
        assert (await client.post(server.url, content=b"x")).status_code == 204
        assert transport.statistics().idle == 0
        assert (await client.post(server.url, content=b"x")).status_code == 204
        assert transport.statistics().opened_total == 2


async def test_unsupported_scheme_is_refused() -> None:
    async with client_for() as (client, _):
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("ftp://127.0.0.1/")


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_with_keep_alive(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server_context.set_alpn_protocols(["http/1.1"])
    client_context = ssl.create_default_context(cafile=str(cert))
    async with scripted_server(tls=server_context) as server:
        transport = Http1Transport(ssl_context=client_context)
        async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
            for n in range(3):
                assert (await client.post(server.url, content=b"%d" % n)).content == b"%d" % n
            stats = transport.statistics()
            assert (stats.opened_total, stats.reused_total) == (1, 2)
            # An untrusted certificate is a connect error.
            other = Http1Transport()
            async with httpx.AsyncClient(transport=other, timeout=TIMEOUT) as strict:
                with pytest.raises(httpx.ConnectError):
                    await strict.post(server.url, content=b"x")


async def test_write_timeout_when_the_server_does_not_read() -> None:
    async def script(peer: Peer, server: Server) -> None:
        await trio.sleep_forever()  # reads nothing: the client's send fills the buffers

    async with scripted_server(script) as server, client_for() as (client, transport):
        with pytest.raises(httpx.WriteTimeout):
            await client.post(
                server.url, content=b"x" * (64 << 20), timeout=httpx.Timeout(10.0, write=0.2)
            )
        stats = transport.statistics()
        assert (stats.idle, stats.active) == (0, 0)


async def test_informational_responses_are_skipped() -> None:
    async def script(peer: Peer, server: Server) -> None:
        assert await peer.request() is not None
        h = peer.http
        hints = h11.InformationalResponse(status_code=103, headers=[("link", "</a>; rel=preload")])
        await peer.stream.send_all(h.send(hints))
        await peer.respond(b"final")

    async with scripted_server(script) as server, client_for() as (client, _):
        response = await client.post(server.url, content=b"x")
        assert (response.status_code, response.content) == (200, b"final")
