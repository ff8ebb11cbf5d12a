"""HTTP/2 from the client, in cleartext with prior knowledge (h2c): many calls multiplexed on
one connection, JSON and streams, each answered whole and settled once. hypercorn speaks h2
on the same socket as HTTP/1.1; circuitd's writes to the socket serve both."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import trio

from tests.harness import running_gateway

AUTH = {"authorization": "Bearer k"}
MESSAGES = [{"role": "user", "content": "hello"}]


async def test_calls_multiplexed_over_one_h2c_connection(tmp_path: Path) -> None:
    env = {"PROVIDER": "MOCK", "CIRCUIT_API_KEYS": "k"}
    calls = 40
    async with (
        running_gateway(tmp_path, env=env) as gateway,
        httpx.AsyncClient(base_url=gateway.url, http1=False, http2=True, timeout=30) as client,
    ):
        answers: dict[int, tuple[str, int, str]] = {}

        async def one(i: int) -> None:
            stream = i % 2 == 0
            body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream}
            response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
            if stream:
                events = [line for line in response.text.split("\n") if line.startswith("data: ")]
                assert events[-1] == "data: [DONE]"
                text = "".join(
                    choice["delta"].get("content") or ""
                    for event in events[:-1]
                    for choice in json.loads(event.removeprefix("data: "))["choices"]
                )
            else:
                text = response.json()["choices"][0]["message"]["content"]
            answers[i] = (response.http_version, response.status_code, text)

        async with trio.open_nursery() as nursery:
            for i in range(calls):
                nursery.start_soon(one, i)
        await gateway.drain()
    assert {version for version, _, _ in answers.values()} == {"HTTP/2"}
    assert {status for _, status, _ in answers.values()} == {200}
    assert all(text for _, _, text in answers.values())
    rows = gateway.rows()
    assert len(rows) == calls
    assert {r["status"] for r in rows} == {"ok"}
