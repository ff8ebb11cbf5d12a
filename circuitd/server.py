"""Process bootstrap: sockets, hypercorn on trio, signals, drain, and several workers.

One worker is one process running `trio.run(run_worker)`. With `workers > 1` the parent binds
one listening socket per worker on the same port with SO_REUSEPORT, so the kernel spreads
connections evenly across them (a shared accept queue would favour whichever worker is idle
at the moment, which under load starves the others), starts each worker with its socket, and
forwards SIGTERM/SIGINT to them.
"""

from __future__ import annotations

import ipaddress
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app
from prometheus_client.multiprocess import mark_process_dead

from circuitd.config import Config, ConfigError, ConfigSource
from circuitd.gateway.app import App
from circuitd.gateway.runtime import Gateway, open_gateway
from circuitd.obs.logs import configure_logging

log = logging.getLogger("circuitd")


class StartupError(Exception):
    pass


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    hc.graceful_timeout = config.server.drain_timeout_s
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.keep_alive_timeout = 75.0  # longer than typical client pools' idle timeout
    hc.h11_max_incomplete_size = 64 * 1024
    return hc


def check_startup(config: Config) -> None:
    if not config.keys and not is_loopback(config.server.host):
        raise StartupError(
            f"no API keys configured: refusing to serve {config.server.host} without "
            "authentication (set CIRCUIT_API_KEYS or [[keys]], or bind to 127.0.0.1)"
        )


async def run_worker(
    config: Config,
    env: Mapping[str, str],
    sock: socket.socket,
    *,
    source: ConfigSource | None = None,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serves until SIGTERM/SIGINT or `stop` is set, then drains and returns.

    Drain: stop accepting, let in-flight calls and streams finish (up to
    `server.drain_timeout_s`), then flush the write-behind queue. SIGHUP reloads the config
    from `source` (when given) without dropping anything in flight.
    """
    stop = trio.Event() if stop is None else stop
    async with open_gateway(config, env) as gateway:
        if gateway.snapshot.auth.open:
            log.warning("no API keys configured: every caller is accepted (loopback only)")

        async def on_signals() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                async for signum in signals:
                    log.info("signal received", extra={"signal": signum})
                    if signum == signal.SIGHUP:
                        reload(gateway, source)
                        continue
                    stop.set()
                    return

        async def shutdown_trigger() -> None:
            await stop.wait()
            log.info("draining")
            gateway.draining = True

        async with trio.open_nursery() as signals_nursery:
            signals_nursery.start_soon(on_signals)
            async with trio.open_nursery() as serving:
                binds = await serving.start(
                    partial(
                        worker_serve,
                        wrap_app(cast(Any, App(gateway)), 0, "asgi"),
                        hypercorn_config(config),
                        sockets=Sockets([], [sock], []),
                        shutdown_trigger=shutdown_trigger,
                    )
                )
                log.info("listening", extra={"urls": binds})
                task_status.started(binds)
            # worker_serve has returned: drained, or the drain timeout cut what was left.
            signals_nursery.cancel_scope.cancel()
    log.info("stopped: write-behind drained")


def reload(gateway: Gateway, source: ConfigSource | None) -> bool:
    """Re-reads the config; on any error the running one stays. Returns whether it changed."""
    if source is None:
        log.warning("reload ignored: this worker was started without a config source")
        return False
    try:
        config, env = source.load()
    except ConfigError as exc:
        log.error("reload failed: the running config stays", extra={"errors": exc.errors})
        return False
    restart_only = gateway.reload(config, env)
    log.info("config reloaded", extra={"source": config.source})
    if restart_only:
        log.warning("these settings change only on restart", extra={"sections": restart_only})
    return True


def _worker_process(
    config: Config, env: dict[str, str], sock: socket.socket, source: ConfigSource | None
) -> None:
    configure_logging(config.server.log_level)
    trio.run(partial(run_worker, config, env, sock, source=source))


def serve(config: Config, env: Mapping[str, str], source: ConfigSource | None = None) -> int:
    """Runs circuitd in the foreground; returns the process exit status."""
    configure_logging(config.server.log_level)
    try:
        check_startup(config)
        workers = config.server.workers
        first = listening_socket(config.server.host, config.server.port, reuse_port=workers > 1)
        port = first.getsockname()[1]
        sockets = [first] + [
            listening_socket(config.server.host, port, reuse_port=True) for _ in range(workers - 1)
        ]
    except StartupError as exc:
        log.error(str(exc))
        return 2
    if workers == 1:
        trio.run(partial(run_worker, config, dict(env), first, source=source))
        return 0
    return _supervise(config, dict(env), sockets, source)


def _supervise(
    config: Config, env: dict[str, str], sockets: list[socket.socket], source: ConfigSource | None
) -> int:
    """Starts one process per socket and waits; a signal is forwarded to every worker, and a
    worker that dies on its own takes the others down (the service manager restarts us)."""
    metrics_dir = _fresh_metrics_dir()
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_worker_process, args=(config, env, sock, source), name=f"circuitd-{i}"
        )
        for i, sock in enumerate(sockets)
    ]
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, _frame: Any = None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    def reload_all(signum: int, _frame: Any) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGHUP, reload_all)
    for process in processes:
        process.start()
    for sock in sockets:
        sock.close()  # the workers hold their own copies
    running = list(processes)
    status = 0
    while running:
        for sentinel in multiprocessing.connection.wait([p.sentinel for p in running]):
            process = next(p for p in running if p.sentinel == sentinel)
            running.remove(process)
            process.join()  # reaps it: `exitcode` is only known after this
            if process.pid is not None:
                # its live gauges no longer count
                mark_process_dead(process.pid, metrics_dir.path)  # type: ignore[no-untyped-call]
            log.info("worker exited", extra={"worker": process.name, "exitcode": process.exitcode})
            if process.exitcode != 0:
                status = 1
                if not stopping:
                    log.error("worker died; stopping", extra={"worker": process.name})
                    stop_all()
    if metrics_dir.owned:
        shutil.rmtree(metrics_dir.path, ignore_errors=True)
    return status


@dataclass(frozen=True)
class _MetricsDir:
    path: str
    owned: bool  # made by us (removed at exit), not given by the operator


def _fresh_metrics_dir() -> _MetricsDir:
    """prometheus-client's multiprocess directory, emptied: the workers (spawned after this)
    inherit the variable, which switches the library to multiprocess mode."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        for entry in Path(given).glob("*.db"):
            entry.unlink()
        return _MetricsDir(given, owned=False)
    path = tempfile.mkdtemp(prefix="circuitd-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return _MetricsDir(path, owned=True)
