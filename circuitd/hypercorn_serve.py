"""hypercorn's trio `worker_serve` (hypercorn 0.17 to 0.18), given its listeners.

hypercorn builds a `trio.SocketListener` per socket itself; a worker of several also serves
the connections its peers hand it (`circuitd.handoff`), from a listener of its own. The rest is
hypercorn's: the ASGI lifespan, the worker context, the shutdown trigger, the graceful deadline
for connections still open once the listeners stop. Plain TCP only (circuitd terminates no
TLS), no QUIC, no `max_requests`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import ShutdownError, raise_shutdown

Listeners = Sequence[trio.abc.Listener[trio.SocketStream]]


async def worker_serve(
    app: AppWrapper,
    config: Config,
    listeners: Listeners,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    served: Callable[[], None] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serves `listeners`' connections until `shutdown_trigger` returns, then gives those
    still open `config.graceful_timeout` to finish. `served` is called as each connection's
    server returns."""
    config.set_statsd_logger_class(StatsdLogger)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as server_nursery:
            # What `hypercorn_tcp.install` made it (hypercorn's own where it declined); typed
            # for TLS streams, it serves plain ones too.
            tcp_server: Any = hypercorn_run.TCPServer  # type: ignore[attr-defined]
            state = ConnectionState(lifespan_state.copy())
            server = partial(tcp_server, app, config, context, state)

            serve = server if served is None else _counted(server, served)

            task_status.started()
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)
                    accept = partial(trio.serve_listeners, handler_nursery=server_nursery)
                    nursery.start_soon(accept, serve, listeners)
                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, other_errors = error.split((ShutdownError, KeyboardInterrupt))
                if other_errors is not None:
                    raise other_errors  # noqa: B904 - as hypercorn does: the group is the cause
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


def _counted(
    server: Callable[[trio.SocketStream], Awaitable[None]], served: Callable[[], None]
) -> Callable[[trio.SocketStream], Awaitable[None]]:
    """`server`, calling `served` as each connection's server returns."""

    async def serve(stream: trio.SocketStream) -> None:
        try:
            await server(stream)
        finally:
            served()

    return serve
