"""Process bootstrap: sockets, hypercorn on trio, signals, drain, sd_notify, several workers.

One worker is one process running `trio.run(run_worker)`. With `workers > 1` the parent binds
one listening socket per worker on the same port with SO_REUSEPORT, so the kernel spreads
connections across them by a hash (a shared accept queue would favour whichever worker is
idle at the moment, which under load starves the others); the workers even out what the hash
leaves uneven by handing connections on (`circuitd.handoff`). `circuitd.supervisor` starts
each worker with its seat (socket, inbox, the shared counts), forwards signals to them and
speaks to systemd for them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import ipaddress
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.utils import repr_socket_addr, wrap_app

from circuitd import hypercorn_http1, hypercorn_tcp
from circuitd.config import Config, ConfigError, ConfigSource
from circuitd.gateway.app import App
from circuitd.gateway.runtime import Gateway, open_gateway
from circuitd.handoff import Seat, seats
from circuitd.hypercorn_serve import worker_serve
from circuitd.obs.logs import configure_logging
from circuitd.obs.metrics import read_pid_once
from circuitd.sdnotify import Notifier, PipeNotifier
from circuitd.supervisor import SIGNALS, supervise

log = logging.getLogger("circuitd")


class StartupError(Exception):
    pass


class StopSignals:
    """SIGTERM/SIGINT (and SIGHUP) outside the event loop's own receiver: before it is open
    (start-up) a stop, or a reload, is remembered and acted on once it is; after it has
    closed (the drain is done, the process is exiting) one is ignored. Without this, the
    supervisor's forwarded SIGTERM landing just after a terminal's SIGINT had drained a
    worker killed it (exit -15), and a SIGHUP early in start-up (`systemctl reload` just
    after `start`) ended a single-worker service."""

    def __init__(self) -> None:
        self.received = False
        self.reload = False

    def install(self) -> StopSignals:
        for signum in SIGNALS:
            signal.signal(signum, self._note)
        return self

    def ignore(self) -> None:
        """Once the worker has drained: SIG_IGN, which (unlike a Python handler) interpreter
        finalization keeps."""
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def _note(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self.reload = True
        else:
            self.received = True


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


GC_YOUNG_THRESHOLD = 20_000  # allocations between young collections (CPython 3.11/3.12: 700)


def settle_gc() -> None:
    """Everything built by now (modules, the gateway) lives as long as the worker, so it
    leaves the cyclic GC's scans (`gc.freeze`): a full collection walked all of it, hundreds
    of thousands of objects, with the event loop stalled for milliseconds — a visible share
    of the p99 under load (bench/RESULTS.md). Young objects are collected every
    `GC_YOUNG_THRESHOLD` allocations instead of 700: nearly all of a call's objects are
    freed by reference counting, so collecting that often mostly walks the live objects of
    the calls in flight. Process-wide, hence only in a worker that owns its process."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


HEAP_TRIM_INTERVAL_S = 30.0


def heap_trimmer() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, where the C library has one (musl has not)."""
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


async def trim_heap(trim: Callable[[int], int], interval: float) -> None:
    """Every `interval` seconds, gives the C heap's free pages back to the system. glibc
    keeps what a worker frees between live blocks, so its RSS rose for half an hour under a
    steady load (~7 MB) before it levelled off, with no Python object growing;
    `malloc_trim(0)` returned it, in 0.2-0.3 ms a call (bench/RESULTS.md). Process-wide,
    hence only in a worker that owns its process."""
    while True:
        await trio.sleep(interval)
        trim(0)


def check_startup(config: Config) -> None:
    if not config.keys and not is_loopback(config.server.host):
        raise StartupError(
            f"no API keys configured: refusing to serve {config.server.host} without "
            "authentication (set CIRCUIT_API_KEYS or [[keys]], or bind to 127.0.0.1)"
        )


async def run_worker(
    config: Config,
    env: Mapping[str, str],
    sock: socket.socket | Seat,
    *,
    source: ConfigSource | None = None,
    stop: trio.Event | None = None,
    notifier: Notifier | None = None,
    held: StopSignals | None = None,
    own_process: bool = False,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serves until SIGTERM/SIGINT or `stop` is set, then drains and returns.

    Drain: stop accepting, let in-flight calls and streams finish (up to
    `server.drain_timeout_s`), then flush the write-behind queue. SIGHUP reloads the config
    from `source` (when given) without dropping anything in flight. `notifier` hears
    `READY=1` once the socket serves, `STOPPING=1` when the drain starts, `RELOADING=1` and
    `READY=1` around a reload, and `WATCHDOG=1` while this event loop runs. A worker that is
    its process's own (`own_process`, not a test's) also tunes the process's GC for serving
    (`settle_gc`) once the gateway is built, and trims its C heap every
    `HEAP_TRIM_INTERVAL_S` (`trim_heap`).
    """
    stop = trio.Event() if stop is None else stop
    notifier = Notifier() if notifier is None else notifier
    serving = _Serving()
    async with trio.open_nursery() as lifetime:
        interval = notifier.watchdog_interval()
        if interval is not None:
            lifetime.start_soon(keep_alive, notifier, interval)
        if own_process and (trim := heap_trimmer()) is not None:
            lifetime.start_soon(trim_heap, trim, HEAP_TRIM_INTERVAL_S)
        await lifetime.start(_on_signals, stop, notifier, source, serving, held)
        await _serve(config, env, sock, stop, notifier, serving, source, own_process, task_status)
        lifetime.cancel_scope.cancel()


async def keep_alive(notifier: Notifier, interval: float) -> None:
    """Pings the watchdog every `interval` seconds from a task of the serving event loop, so
    the pings stop when that loop stops scheduling tasks (a blocking call, a busy loop)."""
    while True:
        notifier.watchdog()
        await trio.sleep(interval)


@dataclass
class _Serving:
    """What the signal handler needs from `_serve`, while there is one."""

    gateway: Gateway | None = None  # set while it can be reloaded
    status: str | None = None  # READY's status line, once the socket serves
    reload_pending: bool = False  # a SIGHUP came before there was a gateway to reload


async def _on_signals(
    stop: trio.Event,
    notifier: Notifier,
    source: ConfigSource | None,
    serving: _Serving,
    held: StopSignals | None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    # Open for the worker's whole life, the final flush included: a second SIGTERM (an
    # impatient operator, a terminal's SIGINT to the process group plus the supervisor's
    # SIGTERM) must not kill a worker that drains or writes its last rows. (`held` covers
    # the moments before it opens and after it closes.)
    with trio.open_signal_receiver(*SIGNALS) as signals:
        # A worker of several is born with these blocked (see `supervisor.supervise`): any
        # that came while it started is delivered now, to this receiver.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        if held is not None and held.received:
            log.info("stop requested during start-up")
            stop.set()
        if held is not None and held.reload:
            serving.reload_pending = True
        task_status.started()
        async for signum in signals:
            log.info("signal received", extra={"signal": signum})
            if signum != signal.SIGHUP:
                if stop.is_set():
                    log.info("already draining")
                stop.set()
            elif stop.is_set():
                log.info("reload ignored: draining")
            elif serving.gateway is None:
                log.info("reload requested during start-up: done once the gateway is built")
                serving.reload_pending = True
            elif serving.status is None:
                reload(serving.gateway, source)
            else:
                notifier.reloading()
                reload(serving.gateway, source)
                notifier.ready(status=serving.status)


async def _serve(
    config: Config,
    env: Mapping[str, str],
    sock: socket.socket | Seat,
    stop: trio.Event,
    notifier: Notifier,
    serving: _Serving,
    source: ConfigSource | None,
    own_process: bool,
    task_status: trio.TaskStatus[list[str]],
) -> None:
    async with open_gateway(config, env) as gateway:
        if gateway.snapshot.auth.open:
            log.warning("no API keys configured: every caller is accepted (loopback only)")
        serving.gateway = gateway
        if serving.reload_pending:  # asked for while the gateway was being built
            serving.reload_pending = False
            reload(gateway, source)

        # One worker of several serves what it accepts and what its peers hand it.
        seat: Seat | None = None
        if isinstance(sock, Seat):
            seat, listening, listeners = sock, sock.listening, sock.listeners()
        else:
            listening = sock
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock))]
        binds = [f"http://{repr_socket_addr(listening.family, listening.getsockname())}"]

        async def shutdown_trigger() -> None:
            await stop.wait()
            log.info("draining")
            notifier.stopping(status="draining")
            gateway.draining = True
            if seat is not None:
                seat.close()

        hypercorn_tcp.install()
        hypercorn_http1.install()
        if own_process:
            settle_gc()
        try:
            async with trio.open_nursery() as serving_nursery:
                await serving_nursery.start(
                    partial(
                        worker_serve,
                        wrap_app(cast(Any, App(gateway)), 0, "asgi"),
                        hypercorn_config(config),
                        listeners,
                        shutdown_trigger=shutdown_trigger,
                        served=None if seat is None else seat.served,
                    )
                )
                if seat is not None:
                    seat.open()
                log.info("listening", extra={"urls": binds})
                serving.status = f"serving on {binds[0]}"
                notifier.ready(status=serving.status)
                task_status.started(binds)
        finally:
            if seat is not None:  # (serving failed too): no peer hands it any more
                seat.close()
        # worker_serve has returned: drained, or the drain timeout cut what was left.
        serving.gateway = None
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
    config: Config,
    env: dict[str, str],
    source: ConfigSource | None,
    seat: Seat,
    supervisor: Connection,
    watchdog_usec: int | None,
) -> None:
    """One worker process of several (see `circuitd.supervisor`)."""
    configure_logging(config.server.log_level)
    read_pid_once()
    held = StopSignals().install()
    notifier = PipeNotifier(supervisor, watchdog_usec)
    worker = partial(run_worker, config, env, seat, source=source, notifier=notifier)
    trio.run(partial(worker, held=held, own_process=True))
    held.ignore()


def serve(config: Config, env: Mapping[str, str], source: ConfigSource | None = None) -> int:
    """Runs circuitd in the foreground; returns the process exit status."""
    configure_logging(config.server.log_level)
    # Only this process (systemd's main PID) speaks to systemd: no child inherits the socket.
    notifier = Notifier.from_env(os.environ)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        os.environ.pop(name, None)
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
        held = StopSignals().install()
        worker = partial(run_worker, config, dict(env), first, source=source, notifier=notifier)
        trio.run(partial(worker, held=held, own_process=True))
        held.ignore()
        return 0
    places = seats(sockets)
    try:
        worker_main = partial(_worker_process, config, dict(env), source)
        # A worker that cannot start stops the others: they drain as on a stop, then some.
        stop_wait_s = config.server.drain_timeout_s + 5.0
        return supervise(worker_main, places, notifier, stop_wait_s)
    finally:
        for outbox in places[0].outboxes:
            outbox.close()
