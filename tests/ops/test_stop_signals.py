"""A worker's stop signals outside its event loop's receiver: noted before, ignored after."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from circuitd.server import StopSignals


@pytest.fixture
def restored() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
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
