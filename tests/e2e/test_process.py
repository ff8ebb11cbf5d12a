"""circuitd as a process: SIGTERM lets an in-flight stream finish, drains the ledger, exits 0."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import httpx
import trio

from tests.processes import KEY, count_rows, reaped, start


async def test_sigterm_during_stream_lets_it_finish(tmp_path: Path) -> None:
    # The in-process mock provider, slowed so that the stream is still running at SIGTERM.
    process, url = start(tmp_path, PROVIDER="MOCK")
    with reaped(process):
        async with httpx.AsyncClient(base_url=url) as client:
            ok = await client.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a"}]},
                headers={"authorization": f"Bearer {KEY}"},
            )
            assert ok.status_code == 200
            body = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "b"}],
                "stream": True,
                "mock": {"chunk_delay_ms": 50, "chunks": 20},  # slow enough to outlive SIGTERM
            }
            async with client.stream(
                "POST",
                "/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {KEY}"},
            ) as response:
                chunks = response.aiter_raw()
                first = await chunks.__anext__()
                assert first.startswith(b"data: ")
                process.send_signal(signal.SIGTERM)
                rest = b"".join([chunk async for chunk in chunks])
        assert rest.endswith(b"data: [DONE]\n\n")
        assert await trio.to_thread.run_sync(process.wait) == 0
    assert count_rows(tmp_path / "ledger.db") == 2


def wait_for_log(process: subprocess.Popen[str], message: str) -> dict[str, object]:
    """Reads the process's JSON log lines until one whose `msg` starts with `message`."""
    assert process.stderr is not None
    for line in process.stderr:
        entry: dict[str, object] = json.loads(line)
        if str(entry["msg"]).startswith(message):
            return entry
    raise AssertionError(f"circuitd exited before logging {message!r}")


async def logged(process: subprocess.Popen[str], message: str) -> dict[str, object]:
    """`wait_for_log` off the event loop, failing rather than hanging if the line never comes."""
    with trio.fail_after(60):
        return await trio.to_thread.run_sync(wait_for_log, process, message, abandon_on_cancel=True)


RELOAD_CONFIG = """
[providers.mock]
kind = "mock"

[models."gpt-4o-mini"]
deployments = [{{ provider = "mock" }}]

{keys}
"""


async def test_sighup_reloads_keys_without_dropping_a_stream(tmp_path: Path) -> None:
    config = tmp_path / "circuitd.toml"
    config.write_text(RELOAD_CONFIG.format(keys='[[keys]]\nid = "a"\nkey = "key-a"\n'))
    process, url = start(tmp_path, "--config", str(config), CIRCUIT_API_KEYS="")
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "b"}]}
    with reaped(process):
        async with httpx.AsyncClient(base_url=url) as client:
            slow = {**chat, "stream": True, "mock": {"chunk_delay_ms": 50, "chunks": 20}}
            async with client.stream(
                "POST",
                "/v1/chat/completions",
                json=slow,
                headers={"authorization": "Bearer key-a"},
            ) as response:
                chunks = response.aiter_raw()
                assert (await chunks.__anext__()).startswith(b"data: ")

                # A broken file is refused and the running config stays.
                config.write_text("[server\n")
                process.send_signal(signal.SIGHUP)
                failed = await logged(process, "reload failed")
                assert "invalid TOML" in str(failed["errors"])

                both = '[[keys]]\nid = "a"\nkey = "key-a"\n\n[[keys]]\nid = "b"\nkey = "key-b"\n'
                config.write_text(RELOAD_CONFIG.format(keys=both))
                process.send_signal(signal.SIGHUP)
                await logged(process, "config reloaded")
                async with httpx.AsyncClient(base_url=url) as other:
                    new_key = await other.post(
                        "/v1/chat/completions", json=chat, headers={"authorization": "Bearer key-b"}
                    )
                assert new_key.status_code == 200
                rest = b"".join([chunk async for chunk in chunks])
        assert rest.endswith(b"data: [DONE]\n\n")  # the stream outlived both reloads
        process.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(process.wait) == 0
