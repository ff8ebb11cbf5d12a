"""`Http1Transport`'s pool against a tiny scripted h11 server in the test's own trio loop:
stale keep-alive connections and the retry, LIFO reuse, lazy expiry (trio's MockClock),
the caps, fairness. The server helpers here serve `test_upstream_wire` too."""

from __future__ import annotations

import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from socket import SO_LINGER, SOL_SOCKET

import h11
import httpx
import pytest
import trio
import trio.testing

from circuitd.upstream import Http1Transport

TIMEOUT = httpx.Timeout(10.0)


@dataclass
class Peer:
    """One accepted connection, from the server's side."""

    index: int  # 0 for the first connection the server accepted
    tcp: trio.SocketStream
    stream: trio.abc.Stream  # `tcp`, or TLS over it
    http: h11.Connection = field(default_factory=lambda: h11.Connection(h11.SERVER))

    async def request(self) -> tuple[h11.Request, bytes] | None:
        """The next whole request, or None when the client closed the connection."""
        head: h11.Request | None = None
        body = b""
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return None
                self.http.receive_data(bytes(data))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return head, body
            else:
                assert isinstance(event, h11.ConnectionClosed), event
                return None

    async def respond(self, body: bytes, *, status: int = 200) -> None:
        h = self.http
        headers = [("content-length", str(len(body))), ("x-connection", str(self.index))]
        data = h.send(h11.Response(status_code=status, headers=headers))
        data += h.send(h11.Data(data=body)) + h.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        if h.our_state is h11.DONE and h.their_state is h11.DONE:
            h.start_next_cycle()

    async def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
        self.tcp.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0))
        self.tcp.socket.close()


Script = Callable[[Peer], Awaitable[None]]


@dataclass
class Server:
    url: str
    peers: list[Peer]
    requests: list[tuple[int, bytes]]  # (connection index, body) in arrival order


async def answer_all(peer: Peer, server: Server) -> None:
    """Answers every request with its body, echoed, until the client leaves."""
    while (request := await peer.request()) is not None:
        server.requests.append((peer.index, request[1]))
        await peer.respond(request[1])


@asynccontextmanager
async def scripted_server(
    script: Callable[[Peer, Server], Awaitable[None]] = answer_all,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[Server]:
    async with trio.open_nursery() as nursery:
        server = Server("", [], [])

        async def handle(stream: trio.SocketStream) -> None:
            peer = Peer(len(server.peers), stream, stream)
            if tls is not None:
                peer.stream = trio.SSLStream(stream, tls, server_side=True)
            server.peers.append(peer)
            try:
                await script(peer, server)
            finally:
                await trio.aclose_forcefully(peer.stream)

        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        yield server
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def client_for(
    **limits: float | None,
) -> AsyncIterator[tuple[httpx.AsyncClient, Http1Transport]]:
    transport = Http1Transport(limits=httpx.Limits(**limits))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
        yield client, transport


async def test_a_reused_connection_closed_by_the_server_is_retried_fresh() -> None:
    # The server reads the second request on the kept-alive connection, then closes it
    # without a word: the race a keep-alive timeout creates. Nothing came back, the
    # connection was reused and the body is in memory, so the request goes again.
    async def script(peer: Peer, server: Server) -> None:
        request = await peer.request()
        assert request is not None
        server.requests.append((peer.index, request[1]))
        if peer.index == 0:
            await peer.respond(b"first")
            request = await peer.request()
            assert request is not None
            server.requests.append((peer.index, request[1]))
        else:
            await peer.respond(b"again")

    async with scripted_server(script) as server, client_for() as (client, transport):
        assert (await client.post(server.url, content=b"1")).content == b"first"
        response = await client.post(server.url, content=b"2")
        assert response.content == b"again"
        assert server.requests == [(0, b"1"), (0, b"2"), (1, b"2")]
        stats = transport.statistics()
        assert (stats.opened_total, stats.reused_total, stats.retried_total) == (2, 1, 1)


async def test_a_reset_on_a_reused_connection_is_retried_too() -> None:
    async def script(peer: Peer, server: Server) -> None:
        if peer.index == 0:
            assert await peer.request() is not None
            await peer.respond(b"first")
            assert await peer.request() is not None
            await peer.reset()
        else:
            await answer_all(peer, server)

    async with scripted_server(script) as server, client_for() as (client, transport):
        await client.post(server.url, content=b"1")
        assert (await client.post(server.url, content=b"2")).content == b"2"
        assert transport.statistics().retried_total == 1


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    closed = trio.Event()

    async def script(peer: Peer, server: Server) -> None:
        if peer.index == 0:
            assert await peer.request() is not None
            await peer.respond(b"first")
            await peer.stream.aclose()
            closed.set()
        else:
            await answer_all(peer, server)

    async with scripted_server(script) as server, client_for() as (client, transport):
        await client.post(server.url, content=b"1")
        await closed.wait()
        # Either the pool sees the socket readable (EOF) and drops it, or the request
        # meets the EOF and is retried: both end on a fresh connection.
        assert (await client.post(server.url, content=b"2")).content == b"2"
        assert transport.statistics().opened_total == 2


async def test_a_fresh_connection_is_never_retried() -> None:
    async def script(peer: Peer, server: Server) -> None:
        assert await peer.request() is not None  # then close, no answer

    async with scripted_server(script) as server, client_for() as (client, transport):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(server.url, content=b"1")
        assert len(server.peers) == 1
        assert transport.statistics().retried_total == 0


async def test_a_streamed_body_is_sent_chunked_and_never_retried() -> None:
    async def script(peer: Peer, server: Server) -> None:
        request = await peer.request()
        assert request is not None
        server.requests.append((peer.index, request[1]))
        await peer.respond(request[1])
        assert await peer.request() is not None  # then close, no answer

    async def body() -> AsyncIterator[bytes]:
        for part in (b"a", b"", b"bc"):
            yield part

    async with scripted_server(script) as server, client_for() as (client, transport):
        assert (await client.post(server.url, content=body())).content == b"abc"
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(server.url, content=body())
        assert transport.statistics().retried_total == 0


async def test_idle_connections_are_reused_most_recent_first() -> None:
    async with scripted_server() as server, client_for() as (client, transport):
        first = await client.send(
            client.build_request("POST", server.url, content=b"a"), stream=True
        )
        second = await client.send(
            client.build_request("POST", server.url, content=b"b"), stream=True
        )
        await first.aread()  # connection 0 back to the pool first,
        await second.aread()  # then connection 1: on top
        response = await client.post(server.url, content=b"c")
        assert response.headers["x-connection"] == "1"
        assert transport.statistics().idle == 2


async def test_keepalive_expiry_is_enforced_lazily(mock_clock: trio.testing.MockClock) -> None:
    async with (
        scripted_server() as server,
        client_for(keepalive_expiry=5.0) as (client, transport),
    ):
        first = await client.send(
            client.build_request("POST", server.url, content=b"a"), stream=True
        )
        second = await client.send(
            client.build_request("POST", server.url, content=b"b"), stream=True
        )
        await first.aread()
        await second.aread()  # idle: [0 at t=0, 1 at t=0]
        mock_clock.jump(3)
        await client.post(server.url, content=b"c")  # pops 1, back at t=3: [0 (t=0), 1 (t=3)]
        assert transport.statistics().idle == 2
        mock_clock.jump(3)
        response = await client.post(server.url, content=b"d")  # 1 is 3 s idle: fine
        assert response.headers["x-connection"] == "1"
        assert transport.statistics().idle == 1  # its return dropped 0 (6 s idle)
        mock_clock.jump(5)
        response = await client.post(server.url, content=b"e")  # 1 expired: a new one
        assert response.headers["x-connection"] == "2"
        stats = transport.statistics()
        assert (stats.idle, stats.opened_total) == (1, 3)


async def test_keepalive_cap_and_no_pooling() -> None:
    async with (
        scripted_server() as server,
        client_for(max_keepalive_connections=1) as (
            client,
            transport,
        ),
    ):
        responses = [
            await client.send(client.build_request("POST", server.url, content=b"x"), stream=True)
            for _ in range(3)
        ]
        for response in responses:
            await response.aread()
        assert transport.statistics().idle == 1
    async with scripted_server() as server, client_for(keepalive_expiry=0) as (client, transport):
        await client.post(server.url, content=b"x")
        await client.post(server.url, content=b"y")
        assert transport.statistics().opened_total == 2


async def test_total_cap_evicts_an_idle_connection_of_another_origin() -> None:
    async with (
        scripted_server() as one,
        scripted_server() as two,
        client_for(max_connections=1) as (client, transport),
    ):
        await client.post(one.url, content=b"x")
        assert transport.statistics().idle == 1
        await client.post(two.url, content=b"y")
        stats = transport.statistics()
        assert (stats.idle, stats.opened_total) == (1, 2)
        assert await one.peers[0].request() is None  # the pool closed it


async def test_waiters_are_served_in_order() -> None:
    order: list[int] = []
    async with scripted_server() as server, client_for(max_connections=1) as (client, transport):
        held = await client.send(
            client.build_request("POST", server.url, content=b"x"), stream=True
        )

        async def waiter(n: int) -> None:
            response = await client.post(server.url, content=b"%d" % n)
            order.append(int(response.content))

        async with trio.open_nursery() as nursery:
            for n in range(3):
                nursery.start_soon(waiter, n)
                await trio.testing.wait_all_tasks_blocked()
            assert transport.statistics().waiting == 3
            await held.aclose()
    assert order == [0, 1, 2]
    assert transport.statistics().waiting == 0
