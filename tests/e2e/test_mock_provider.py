"""The in-process mock provider (`PROVIDER=MOCK`) through circuitd: its in-stream error events
and tool calls reach a client as `circuitd mock-upstream`'s do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
import trio

from tests.harness import running_gateway

ENV = {"PROVIDER": "MOCK", "CIRCUIT_API_KEYS": "k"}
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def test_an_error_event_mid_stream_fails_the_sdk_and_settles_partial(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path, env=ENV) as gateway:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
        seen: list[str] = []

        def run() -> None:
            stream = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hello"}],
                stream=True,
                extra_body={"mock": {"error_event_after": 2, "chunks": 5}},
            )
            for chunk in stream:
                seen.extend(c.delta.content for c in chunk.choices if c.delta.content)

        with pytest.raises(openai.APIError):
            await trio.to_thread.run_sync(run)
        await gateway.drain()
    assert len(seen) == 2  # what came before the error was relayed
    [row] = gateway.rows()
    assert (row["status"], row["error_code"]) == ("partial", "upstream_error")


async def test_a_tool_call_streams_to_the_sdk(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, env=ENV) as gateway:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)

        def run() -> tuple[str, str, str | None]:
            name, arguments, finish = "", "", None
            for chunk in client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "What's the weather in Paris?"}],
                tools=[WEATHER],
                stream=True,
            ):
                for choice in chunk.choices:
                    for call in choice.delta.tool_calls or ():
                        assert call.function is not None
                        name += call.function.name or ""
                        arguments += call.function.arguments or ""
                    finish = choice.finish_reason or finish
            return name, arguments, finish

        name, arguments, finish = await trio.to_thread.run_sync(run)
        await gateway.drain()
    assert (name, json.loads(arguments), finish) == ("get_weather", {"city": "mock"}, "tool_calls")
    [row] = gateway.rows()
    assert row["status"] == "ok" and row["usage_source"] == "provider"
