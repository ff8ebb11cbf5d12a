"""`running_mock_upstream()`: the mock upstream in a daemon thread, for synchronous tests.

    with running_mock_upstream(chunk_delay_ms=1) as base_url:  # "http://127.0.0.1:PORT"
        openai.OpenAI(base_url=base_url + "/v1", api_key="x")...

The server runs on its own event loop (uvloop when installed) in its own thread, so it works
under any test runner, trio included. Keyword arguments are the server's default `Fault`.
The context returns once the socket is bound and leaves only after the server is closed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import msgspec

from circuitd.mockupstream.faults import Fault
from circuitd.mockupstream.server import MockUpstream, new_event_loop, start_server

__all__ = ["running_mock_upstream"]

START_TIMEOUT_S = 30.0


@contextmanager
def running_mock_upstream(
    *,
    require_key: str | None = None,
    use_uvloop: bool = True,
    host: str = "127.0.0.1",
    **defaults: object,
) -> Iterator[str]:
    """Yields the base URL (no `/v1`) of a fresh mock upstream on `host`, a free port."""
    fault = msgspec.convert(defaults, Fault) if defaults else None
    loop = new_event_loop(use_uvloop)
    started = threading.Event()
    outcome: list[MockUpstream | BaseException] = []
    stop: asyncio.Future[None] | None = None

    async def serve() -> None:
        nonlocal stop
        try:
            server = await start_server(host, 0, defaults=fault, require_key=require_key)
        except BaseException as exc:
            outcome.append(exc)
            started.set()
            raise
        stop = loop.create_future()
        outcome.append(server)
        started.set()
        try:
            await stop
        finally:
            await server.close()

    def thread_main() -> None:
        asyncio.set_event_loop(loop)
        try:
            with suppress(BaseException):  # a start-up error goes to the caller via `outcome`
                loop.run_until_complete(serve())
        finally:
            loop.close()

    thread = threading.Thread(target=thread_main, name="mock-upstream", daemon=True)
    thread.start()
    if not started.wait(START_TIMEOUT_S):
        raise RuntimeError("mock upstream did not start")
    [result] = outcome
    if isinstance(result, BaseException):
        thread.join()
        raise result
    try:
        yield result.url
    finally:
        loop.call_soon_threadsafe(_set, stop)
        thread.join(START_TIMEOUT_S)


def _set(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
