"""Locust scenarios against circuitd (or any OpenAI-compatible endpoint).

    locust -f bench/locustfile.py --headless -u 32 -r 32 -t 20s \
        --host http://127.0.0.1:8080 ChatJSON        # or ChatStream, Mixed

Environment: BENCH_KEY (Bearer key, default "bench-key"), BENCH_MODEL (default "gpt-4o-mini").
FastHttpUser (geventhttpclient) keeps the load generator cheap enough for one core.
"""

from __future__ import annotations

import os

from locust import FastHttpUser, task

KEY = os.environ.get("BENCH_KEY", "bench-key")
MODEL = os.environ.get("BENCH_MODEL", "gpt-4o-mini")
HEADERS = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
# A realistic prompt: a system message and a ~120-token user turn.
MESSAGES = [
    {"role": "system", "content": "You are a concise assistant for an operations team."},
    {
        "role": "user",
        "content": (
            "Our API gateway returned intermittent 502 errors between 14:00 and 14:20 UTC. "
            "The upstream provider's status page reported elevated latency. Summarise the "
            "likely causes, what our circuit breaker should have done, and which metrics we "
            "should look at first to confirm the timeline. Keep it under five bullet points."
        ),
    },
]
JSON_BODY = {"model": MODEL, "messages": MESSAGES, "max_tokens": 64}
STREAM_BODY = {**JSON_BODY, "stream": True}


class ChatJSON(FastHttpUser):
    @task
    def chat(self) -> None:
        self.client.post("/v1/chat/completions", json=JSON_BODY, headers=HEADERS, name="json")


class ChatStream(FastHttpUser):
    @task
    def chat_stream(self) -> None:
        # The whole SSE body is read (chunked transfer) before the response is checked.
        with self.client.post(
            "/v1/chat/completions",
            json=STREAM_BODY,
            headers=HEADERS,
            name="stream",
            catch_response=True,
        ) as response:
            if not (response.content or b"").rstrip().endswith(b"data: [DONE]"):
                response.failure("stream did not end with data: [DONE]")


class Mixed(FastHttpUser):
    @task(3)
    def chat(self) -> None:
        self.client.post("/v1/chat/completions", json=JSON_BODY, headers=HEADERS, name="json")

    @task(1)
    def chat_stream(self) -> None:
        self.client.post("/v1/chat/completions", json=STREAM_BODY, headers=HEADERS, name="stream")
