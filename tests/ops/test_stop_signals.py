"""A worker's stop signals outside its event loop's receiver: noted before, ignored after."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from circuitd.config import ConfigSource, load_config
from circuitd.server import StopSignals, listening_socket, run_worker


@pytest.fixture
def restored() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("restored")
def test_a_stop_before_the_loop_listens_is_noted_then_later_ones_are_ignored() -> None:
    held = StopSignals().install()
    assert not held.received
    os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next bytecode
    assert held.received
    held.ignore()
    # SIG_IGN, not a Python handler: interpreter finalization resets those to SIG_DFL, and a
    # late SIGTERM then killed a worker that had drained (exit -15).
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    os.kill(os.getpid(), signal.SIGINT)  # ignored: no KeyboardInterrupt here


KEYS = """
[providers.mock]
kind = "mock"

[models."gpt-4o-mini"]
deployments = [{{ provider = "mock" }}]

[[keys]]
id = "k"
key = "{key}"
"""


@pytest.mark.usefixtures("restored")
async def test_a_reload_asked_for_during_start_up_is_done_once_the_gateway_is_built(
    tmp_path: Path,
) -> None:
    # `systemctl reload` just after `start`: the SIGHUP comes before the event loop listens
    # (it ended a single-worker service before); the worker then serves the new file.
    path = tmp_path / "circuitd.toml"
    path.write_text(KEYS.format(key="old-key"))
    env = {"CIRCUIT_DB": str(tmp_path / "ledger.db")}
    config = load_config(path, env)
    held = StopSignals().install()
    path.write_text(KEYS.format(key="new-key"))
    os.kill(os.getpid(), signal.SIGHUP)  # noted, not acted on yet
    assert held.reload and not held.received
    source = ConfigSource(cli_path=str(path), overrides=tuple(env.items()))
    stop = trio.Event()
    sock = listening_socket("127.0.0.1", 0, reuse_port=False)
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with trio.open_nursery() as nursery:
        serve = partial(run_worker, config, env, sock, source=source, stop=stop, held=held)
        [url] = await nursery.start(serve)
        async with httpx.AsyncClient(base_url=url) as client:
            for key, status in (("new-key", 200), ("old-key", 401)):
                headers = {"authorization": f"Bearer {key}"}
                answer = await client.post("/v1/chat/completions", json=chat, headers=headers)
                assert answer.status_code == status
        stop.set()
