"""LiteLLM's proxy as the competitor: in its own venv (`bench/.venv-litellm`, created and
installed on first use), pointed at the same mock upstream as an OpenAI-compatible provider,
no database (so no virtual keys or per-key budgets: one master key)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from stack import ROOT, free_port

VENV = ROOT / "bench" / ".venv-litellm"
KEY = "sk-bench-key"  # LiteLLM wants its master key to start with "sk-"
CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {upstream}
      api_key: sk-bench
litellm_settings:
  telemetry: false
  set_verbose: false
  drop_params: false
general_settings:
  master_key: {key}
"""


def ensure_installed() -> Path | None:
    """The `litellm` executable, installing it first when the venv is missing; None (with
    the reason printed to stderr) when that fails."""
    executable = VENV / "bin" / "litellm"
    if executable.exists():
        return executable
    print("installing litellm[proxy] into bench/.venv-litellm ...", file=sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"LiteLLM could not be installed ({error}); skipping it", file=sys.stderr)
        return None
    return executable if executable.exists() else None


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"litellm exited with {process.returncode} while starting")
        try:
            if httpx.get(f"{url}/health/liveliness", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)  # a subprocess starting up: no event to wait on
    raise RuntimeError(f"litellm not ready after {timeout}s")


@contextmanager
def running_litellm(
    executable: Path, workdir: Path, upstream_v1: str, *, workers: int = 1
) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of a LiteLLM proxy for the duration of the block."""
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(CONFIG.format(upstream=upstream_v1, key=KEY))
    log = open(workdir / "litellm.log", "wb")  # noqa: SIM115 - closed in finally
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    env.pop("VIRTUAL_ENV", None)
    command = [str(executable), "--config", str(config), "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--num_workers", str(workers)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=workdir,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process)
        yield url, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
