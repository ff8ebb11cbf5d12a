"""The `circuitd` command's small subcommands (serve is covered end to end in tests/e2e)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from circuitd import __version__
from circuitd.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"circuitd {__version__}"


def test_mock_upstream_is_a_subcommand() -> None:
    # A real process: `circuitd mock-upstream` binds, prints where, and stops on SIGTERM.
    process = subprocess.Popen(
        [sys.executable, "-m", "circuitd", "mock-upstream", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("mock-upstream listening on http://127.0.0.1:")
        process.terminate()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
