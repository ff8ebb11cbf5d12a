"""Budget alerts: delivered to a webhook (a small server on a real socket) with retries after a
500, and never holding up a call when the webhook hangs; budget gauges."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.testing

from tests.e2e.serving import Clock, Receive, Scope, Send, gateway_at, serving
from tests.e2e.test_admission import ALICE, CONFIG
from tests.e2e.test_metrics import samples, value

CHAT = {
    "model": "dear",
    "messages": [{"role": "user", "content": "spend"}],
    "max_tokens": 10,
    "mock": {"tokens": 10},
}
# A call costs 390 µUSD (9 prompt tokens at $10/M, 10 output at $30/M): the first takes the
# budget to 48.75 %, the second to 97.5 % (50, 80 and 95 % crossed at once), a third is refused.
ALERTS = """
[alerts]
webhook_url = "{url}/hook"
webhook_headers = {{ authorization = "Bearer hook-secret" }}
backoff_base_s = 0.001
timeout_s = {timeout}
queue_size = {queue}

[metrics]
per_key_labels = {per_key}
"""


def config(url: str, *, timeout: float, queue: int, per_key: str) -> str:
    alerts = ALERTS.format(url=url, timeout=timeout, queue=queue, per_key=per_key)
    return CONFIG.format(daily=0.0008, extra=alerts)


class Webhook:
    """Answers POSTs with `statuses` in turn (then 200); with `hang`, never answers."""

    def __init__(self, statuses: list[int] | None = None, *, hang: bool = False) -> None:
        self.statuses = list(statuses or [])
        self.hang = hang
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[bytes, bytes]] = []
        self.changed = trio.Event()
        self.release = trio.Event()  # ends a hang (so that this server can stop)

    async def wait_for(self, count: int) -> None:
        with trio.fail_after(30):  # a hang guard, not a timing assertion
            while len(self.bodies) < count:
                await self.changed.wait()
                self.changed = trio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(json.loads(body))
        self.headers.append(dict(scope["headers"]))
        self.changed.set()
        if self.hang:
            await self.release.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def chat(client: httpx.AsyncClient) -> int:
    return (await client.post("/v1/chat/completions", json=CHAT, headers=ALICE)).status_code


async def test_alerts_reach_the_webhook_retried_after_a_500(tmp_path: Path) -> None:
    hook = Webhook([500])
    async with serving(hook) as hook_url:
        text = config(hook_url, timeout=5, queue=100, per_key="false")
        async with (
            gateway_at(tmp_path, text, Clock(time.time())) as (url, _),
            httpx.AsyncClient(base_url=url) as client,
        ):
            assert [await chat(client) for _ in range(3)] == [200, 200, 429]
            await hook.wait_for(4)
            await trio.testing.wait_all_tasks_blocked()
            found = samples((await client.get("/metrics")).text)
    assert [b["percent"] for b in hook.bodies] == [50, 50, 80, 95]  # the first one twice
    first = hook.bodies[0]
    assert first["type"] == "budget_alert"
    assert (first["key_id"], first["period"], first["limit_usd"]) == ("alice", "day", 0.0008)
    assert hook.bodies[-1]["spent_usd"] == 0.00078
    assert all(h[b"authorization"] == b"Bearer hook-secret" for h in hook.headers)
    assert value(found, "circuitd_alert_webhook_total", result="retried") == 1
    assert value(found, "circuitd_alert_webhook_total", result="delivered") == 3
    assert value(found, "circuitd_budget_alerts_total", percent="95") == 1
    # gauges: every key summed as key="all" unless per-key labels are opted in
    assert round(value(found, "circuitd_budget_spent_usd", key="all", period="day") * 1e6) == 780
    assert round(value(found, "circuitd_budget_remaining_usd", key="all", period="day") * 1e6) == 20
    assert not any(dict(labels).get("key") == "alice" for _, labels in found)


async def test_a_webhook_that_rejects_an_alert_is_not_retried(tmp_path: Path) -> None:
    hook = Webhook([400])  # the request itself is wrong: the same one would fail again
    async with serving(hook) as hook_url:
        text = config(hook_url, timeout=5, queue=100, per_key="false")
        async with (
            gateway_at(tmp_path, text, Clock(time.time())) as (url, _),
            httpx.AsyncClient(base_url=url) as client,
        ):
            assert [await chat(client) for _ in range(2)] == [200, 200]
            await hook.wait_for(3)
            await trio.testing.wait_all_tasks_blocked()
            found = samples((await client.get("/metrics")).text)
    assert [b["percent"] for b in hook.bodies] == [50, 80, 95]
    assert value(found, "circuitd_alert_webhook_total", result="failed") == 1
    assert value(found, "circuitd_alert_webhook_total", result="retried") == 0


async def test_a_hanging_webhook_never_holds_up_a_call(tmp_path: Path) -> None:
    hook = Webhook(hang=True)
    async with serving(hook) as hook_url:
        # Queue of one: the second call's three alerts come at once; the delivery task takes
        # the first, the second waits in the queue, the third is dropped.
        text = config(hook_url, timeout=1, queue=1, per_key="true")
        async with (
            gateway_at(tmp_path, text, Clock(time.time())) as (url, _),
            httpx.AsyncClient(base_url=url) as client,
        ):
            assert [await chat(client) for _ in range(2)] == [200, 200]
            await hook.wait_for(1)  # the webhook now holds the first alert's POST
            assert await chat(client) == 429  # answered while the webhook hangs
            found = samples((await client.get("/metrics")).text)
        # the drain above returned: the webhook's shutdown grace cut its delivery short
        hook.release.set()
    assert len(hook.bodies) <= 2
    assert value(found, "circuitd_alert_webhook_total", result="dropped") == 1
    assert value(found, "circuitd_alert_webhook_total", result="delivered") == 0
    assert round(value(found, "circuitd_budget_spent_usd", key="alice", period="day") * 1e6) == 780
    assert value(found, "circuitd_budget_reserved_usd", key="alice", period="day") == 0
