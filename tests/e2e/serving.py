"""Serving helpers for budget tests: a gateway with an injected wall clock, a small ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from circuitd.config import Config, load_config
from circuitd.gateway.app import App
from circuitd.gateway.runtime import Gateway, open_gateway
from circuitd.server import hypercorn_config, listening_socket

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


@asynccontextmanager
async def serving(app: Asgi, config: Config | None = None) -> AsyncIterator[str]:
    """Serves `app` with hypercorn on 127.0.0.1, port 0; yields its base URL."""
    sock = listening_socket("127.0.0.1", 0, reuse_port=False)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(
                worker_serve,
                wrap_app(app, 0, "asgi"),
                hypercorn_config(config or Config()),
                sockets=Sockets([], [sock], []),
                shutdown_trigger=stop.wait,
            )
        )
        try:
            yield binds[0]
        finally:
            stop.set()


class Clock:
    """A wall clock the test moves (epoch seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def gateway_at(
    tmp_path: Path, config_text: str, clock: Callable[[], float], env: Mapping[str, str] = {}
) -> AsyncIterator[tuple[str, Gateway]]:
    """circuitd on a real socket, its budgets on `clock`; drained (settled, leases returned,
    rows written) when the block exits."""
    config_path = tmp_path / "circuitd.toml"
    config_path.write_text(config_text)
    full_env = {"CIRCUIT_DB": str(tmp_path / "ledger.db"), **env}
    config = load_config(config_path, full_env)
    async with (
        open_gateway(config, full_env, wall_clock=clock) as gateway,
        serving(App(gateway), config) as url,
    ):
        yield url, gateway
