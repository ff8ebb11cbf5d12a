"""Locust scenarios against circuitd (or any OpenAI-compatible endpoint).

    locust -f bench/locustfile.py --headless -u 32 -r 32 -t 20s \
        --host http://127.0.0.1:8080 ChatJSON  # or ChatStream, Mixed, AuthFailures, ...

Environment:
- BENCH_KEY: Bearer key (default "bench-key"); BENCH_BUDGET_KEY: the key with a tiny daily
  budget for BudgetHeavy (default "bench-budget"); BENCH_MODEL (default "gpt-4o-mini").
- BENCH_TARGET: what the host is, which decides the statuses a scenario expects:
  "circuitd" (default), "litellm", "direct" (the mock upstream itself, which checks no
  key and keeps no budget, so auth and budget scenarios expect 200 there), or "passthrough"
  (bench/passthrough.py: relays everything to the mock, so it expects what "direct" does).
- BENCH_MOCK_URL: the mock upstream's root; FaultStorm toggles its `/_mock/faults` with it.
- BENCH_STATUS_FILE: where to write `{"status": count}` when the run stops.

Every scenario states the statuses it expects; any other status (or a stream that does not
end with `[DONE]`) is a locust failure, so "failures" means real failures.
FastHttpUser (geventhttpclient) keeps the load generator cheap enough for one core.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Collection
from typing import Any

import gevent
from locust import FastHttpUser, events, task
from locust.env import Environment

KEY = os.environ.get("BENCH_KEY", "bench-key")
BUDGET_KEY = os.environ.get("BENCH_BUDGET_KEY", "bench-budget")
MODEL = os.environ.get("BENCH_MODEL", "gpt-4o-mini")
TARGET = os.environ.get("BENCH_TARGET", "circuitd")
TARGET = "direct" if TARGET == "passthrough" else TARGET  # it answers what the mock does
MOCK_URL = os.environ.get("BENCH_MOCK_URL")
PATH = "/v1/chat/completions"
DIRECT = TARGET == "direct"


def headers(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "content-type": "application/json"}


HEADERS = headers(KEY)
# A realistic prompt: a system message and a ~120-token user turn.
SYSTEM = {"role": "system", "content": "You are a concise assistant for an operations team."}
TURN = (
    "Our API gateway returned intermittent 502 errors between 14:00 and 14:20 UTC. "
    "The upstream provider's status page reported elevated latency. Summarise the "
    "likely causes, what our circuit breaker should have done, and which metrics we "
    "should look at first to confirm the timeline. Keep it under five bullet points."
)
MESSAGES = [SYSTEM, {"role": "user", "content": TURN}]
JSON_BODY = {"model": MODEL, "messages": MESSAGES, "max_tokens": 64}
STREAM_BODY = {**JSON_BODY, "stream": True}
JSON_BYTES = json.dumps(JSON_BODY).encode()
STREAM_BYTES = json.dumps(STREAM_BODY).encode()

# Mixed: prompt sizes (≈ tokens; the mock's estimate is ~4 characters a token) and answer
# sizes as chat traffic has them — mostly short, a long tail. Weights are relative.
PROMPT_TOKENS = ((60, 30), (250, 30), (700, 20), (1_600, 15), (4_000, 5))
MAX_TOKENS = ((64, 25), (256, 40), (512, 25), (1_024, 10))
STREAM_SHARE = 0.3
SENTENCE = "The nightly export job stalled twice while the replica lagged behind its primary. "


def _weighted(pairs: tuple[tuple[int, int], ...], rng: random.Random) -> int:
    return rng.choices([v for v, _ in pairs], weights=[w for _, w in pairs])[0]


def _mixed_bodies(count: int = 256, seed: int = 8) -> list[tuple[bytes, bool]]:
    """Encoded once, drawn at random: the load generator spends no time building JSON. The
    answer length is asked of the mock (`"mock": {"tokens": n}`, forwarded by a gateway as an
    unknown field): up to max_tokens, ~40% of it on average, as real answers stop early."""
    rng = random.Random(seed)
    bodies = []
    for i in range(count):
        prompt = _weighted(PROMPT_TOKENS, rng)
        max_tokens = _weighted(MAX_TOKENS, rng)
        text = f"Case {i}. " + SENTENCE * max(1, prompt * 4 // len(SENTENCE))
        stream = rng.random() < STREAM_SHARE
        body: dict[str, Any] = {
            "model": MODEL,
            "messages": [SYSTEM, {"role": "user", "content": text}],
            "max_tokens": max_tokens,
            "mock": {"tokens": max(8, int(max_tokens * rng.uniform(0.1, 0.7)))},
        }
        if stream:
            body["stream"] = True
        bodies.append((json.dumps(body).encode(), stream))
    return bodies


MIXED = _mixed_bodies()

# -- expectations --------------------------------------------------------------------------

STATUSES: Counter[int] = Counter()


def check(
    response: Any, expected: Collection[int], stream: bool, reason: str | None = None
) -> None:
    """Success if the status is expected (a 200 stream must end with [DONE]; a refusal must
    carry `reason` in its body when given), failure otherwise."""
    status = response.status_code
    STATUSES[status] += 1
    body = response.content or b""
    if status not in expected:
        response.failure(f"unexpected status {status}: {body[:200]!r}")
    elif status == 200 and stream and not body.rstrip().endswith(b"data: [DONE]"):
        response.failure("stream did not end with data: [DONE]")
    elif status != 200 and reason is not None and reason.encode() not in body:
        response.failure(f"{status} without {reason}: {body[:200]!r}")
    else:
        response.success()


class _Chat(FastHttpUser):
    abstract = True

    def post(
        self,
        body: bytes,
        *,
        stream: bool,
        name: str,
        expected: Collection[int] = (200,),
        key_headers: dict[str, str] = HEADERS,
        reason: str | None = None,
    ) -> None:
        with self.client.post(
            PATH, data=body, headers=key_headers, name=name, catch_response=True
        ) as response:
            check(response, expected, stream, reason)


class ChatJSON(_Chat):
    @task
    def chat(self) -> None:
        self.post(JSON_BYTES, stream=False, name="json")


class ChatStream(_Chat):
    @task
    def chat_stream(self) -> None:
        # The whole SSE body is read (chunked transfer) before the response is checked.
        self.post(STREAM_BYTES, stream=True, name="stream")


class Mixed(_Chat):
    """Realistic sizes: prompts of ~60 to ~4,000 tokens, answers of 8 to ~700, 30% streams."""

    @task
    def chat(self) -> None:
        body, stream = random.choice(MIXED)
        self.post(body, stream=stream, name="stream" if stream else "json")


# Refused before any upstream call: no header, an unknown key, a malformed header.
BAD_AUTH = (
    {"content-type": "application/json"},
    headers("sk-not-a-key"),
    {"authorization": "Basic Ym9ndXM=", "content-type": "application/json"},
)


class AuthFailures(_Chat):
    """Every request carries a bad key: 401 invalid_api_key is the expected answer (the mock
    upstream checks no key, so 200 there)."""

    @task
    def bad_key(self) -> None:
        expected = {200} if DIRECT else {401}
        self.post(
            JSON_BYTES,
            stream=False,
            name="bad key",
            expected=expected,
            key_headers=random.choice(BAD_AUTH),
        )


class BudgetHeavy(_Chat):
    """A key whose daily budget is a few hundred calls' worth: after the first moments most
    calls get 429 budget_exceeded (expected). The gateway must be started with that key and
    budget (bench/run.py does). LiteLLM without a database keeps no per-key budget: 200."""

    @task
    def spend(self) -> None:
        expected = {200} if TARGET != "circuitd" else {200, 429}
        self.post(
            JSON_BYTES,
            stream=False,
            name="budget",
            expected=expected,
            key_headers=headers(BUDGET_KEY if TARGET == "circuitd" else KEY),
            reason="budget_exceeded",
        )


# FaultStorm: 10% of requests ask the mock for a 500 (a gateway retries them, then answers
# 502); and every STORM_EVERY_S seconds the runner's mock fails every request for
# STORM_S seconds (a gateway's breaker opens: 503 at once, then probes, then recovers).
FAULT_SHARE = 0.1
STORM_EVERY_S, STORM_S = 5.0, 1.5
FAULT_BYTES = json.dumps({**JSON_BODY, "mock": {"status": 500}}).encode()
FAULT_STATUSES = {
    "direct": {200, 500},
    "circuitd": {200, 502, 503},
    "litellm": {200, 500, 502, 503},  # LiteLLM answers an upstream 500 with its own 500
}


class FaultStorm(_Chat):
    @task
    def chat(self) -> None:
        faulty = random.random() < FAULT_SHARE
        self.post(
            FAULT_BYTES if faulty else JSON_BYTES,
            stream=False,
            name="storm",
            expected=FAULT_STATUSES.get(TARGET, {200, 502, 503}),
        )


def _storms(environment: Environment) -> None:
    """Every STORM_EVERY_S: the mock answers every request 500 for STORM_S, then heals."""
    import httpx  # only FaultStorm needs the control API; locust's own client is for load

    faults = f"{MOCK_URL}/_mock/faults"
    with httpx.Client(timeout=5.0) as control:
        try:
            while environment.runner is not None:
                gevent.sleep(STORM_EVERY_S - STORM_S)
                control.post(faults, json={"fault": {"status": 500}, "count": None})
                gevent.sleep(STORM_S)
                control.delete(faults)
        finally:
            control.delete(faults)


_storm: list[gevent.Greenlet] = []


@events.test_start.add_listener
def _start(environment: Environment, **_: Any) -> None:
    classes = {cls.__name__ for cls in environment.user_classes}
    if "FaultStorm" in classes and MOCK_URL:
        _storm.append(gevent.spawn(_storms, environment))


@events.test_stop.add_listener
def _stop(environment: Environment, **_: Any) -> None:
    for greenlet in _storm:
        greenlet.kill()  # its `finally` clears the mock's fault queue
    if path := os.environ.get("BENCH_STATUS_FILE"):
        with open(path, "w") as f:
            json.dump({str(k): v for k, v in sorted(STATUSES.items())}, f)
