"""Fixtures shared by the ops tests, which run circuitd as a real process."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[Any]]]:
    """Processes started by a test, killed if the test left them running."""
    started: list[subprocess.Popen[Any]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
