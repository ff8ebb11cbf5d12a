"""Issue 8's reference points, runnable side by side: a bare hypercorn (trio) ASGI app that
relays `POST /v1/chat/completions` to an upstream through one `httpx.AsyncClient` — no auth,
no admission, no breaker, no accounting, no metrics, no logs.

    .venv/bin/python bench/passthrough.py --upstream http://127.0.0.1:PORT \\
        --port 8090 --workers 2 --transport httpx|http1

`--transport httpx` is the issue's "bare hypercorn + httpx passthrough" (httpcore's pool);
`--transport http1` puts circuitd's own `Http1Transport` under the same app: the ceiling circuitd
could reach on hypercorn with every feature free; `--transport none` answers a fixed body
without any upstream: hypercorn alone. `--loop uvloop` runs the app on hypercorn's asyncio
worker under uvloop instead of trio (httpx and none only): what that worker class would buy.
`--hypercorn-fixes` serves on trio through circuitd's changes to hypercorn, as `circuitd serve`
does: `hypercorn_tcp` (its idle-timer fixes and direct writes) and `hypercorn_http1` (HTTP/1.1
on `circuitd.http1` instead of h11). Workers are processes with one SO_REUSEPORT
socket each, as `circuitd serve` runs them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from circuitd.upstream import Http1Transport

# `--transport none`: a fixed answer of the mock's size, no upstream at all (hypercorn alone).
STATIC = b'{"id":"chatcmpl-static","object":"chat.completion","choices":[]}'.ljust(700)
JSON_TYPE = (b"content-type", b"application/json")
Scope = dict[str, Any]
Message = dict[str, Any]


def make_app(upstream: str, transport: str) -> Callable[..., Awaitable[None]]:
    client = httpx.AsyncClient(
        base_url=upstream,
        transport=Http1Transport() if transport == "http1" else None,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        timeout=30.0,
    )

    async def app(scope: Scope, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if transport == "none":
            start = {"type": "http.response.start", "status": 200, "headers": [JSON_TYPE]}
            await send(start)
            await send({"type": "http.response.body", "body": STATIC})
            return
        headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
        request = client.build_request("POST", scope["path"], content=body, headers=headers)
        response = await client.send(request, stream=True)
        try:
            kind = response.headers.get("content-type", "application/json")
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [(b"content-type", kind.encode())],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    return app


def hypercorn_config() -> Config:
    config = Config()
    config.accesslog = None
    config.keep_alive_timeout = 75.0
    return config


def worker(sock: socket.socket, upstream: str, transport: str, loop: str, fixes: bool) -> None:
    if loop == "uvloop":
        uvloop_worker(sock, upstream, transport)
        return
    if fixes:
        from circuitd import hypercorn_http1, hypercorn_tcp

        assert hypercorn_tcp.install()
        assert hypercorn_http1.install()
    config = hypercorn_config()
    shutdown = trio.Event()

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        shutdown.set()
                        return

                nursery.start_soon(stop_on_signal)
                app = make_app(upstream, transport)
                await worker_serve(
                    wrap_app(app, 0, "asgi"),
                    config,
                    sockets=Sockets([], [sock], []),
                    shutdown_trigger=shutdown.wait,
                )
                nursery.cancel_scope.cancel()

    trio.run(main)


def uvloop_worker(sock: socket.socket, upstream: str, transport: str) -> None:
    """The same app on hypercorn's asyncio worker under uvloop (httpx's pool on anyio)."""
    import asyncio

    import uvloop
    from hypercorn.asyncio.run import worker_serve as asyncio_worker_serve

    async def main() -> None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await asyncio_worker_serve(
            wrap_app(make_app(upstream, transport), 0, "asgi"),
            hypercorn_config(),
            sockets=Sockets([], [sock], []),
            shutdown_trigger=stop.wait,
        )

    uvloop.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="the upstream's root URL")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--transport", choices=("httpx", "http1", "none"), default="httpx")
    parser.add_argument("--loop", choices=("trio", "uvloop"), default="trio")
    parser.add_argument(
        "--hypercorn-fixes",
        action="store_true",
        help="trio through circuitd's hypercorn_tcp and hypercorn_http1",
    )
    args = parser.parse_args()
    if args.loop == "uvloop" and args.transport == "http1":
        parser.error("Http1Transport runs on trio: use --transport httpx or none with uvloop")
    processes = []
    for _ in range(args.workers):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", args.port))
        sock.listen(2048)
        sock.setblocking(False)
        work = (sock, args.upstream, args.transport, args.loop, args.hypercorn_fixes)
        process = multiprocessing.Process(target=worker, args=work)
        process.start()
        processes.append(process)
    signal.signal(signal.SIGTERM, lambda *_: [p.terminate() for p in processes])
    for process in processes:
        process.join()


@contextmanager
def running_passthrough(
    upstream: str, *, workers: int, transport: str, loop: str = "trio", fixes: bool = False
) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of a passthrough for the duration of the block."""
    from stack import free_port, wait_listening

    port = free_port()
    command = [sys.executable, str(Path(__file__)), "--upstream", upstream, "--loop", loop]
    if fixes:
        command.append("--hypercorn-fixes")
    process = subprocess.Popen(
        [*command, "--port", str(port), "--workers", str(workers), "--transport", transport]
    )
    try:
        wait_listening(port)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
