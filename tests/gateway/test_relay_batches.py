"""The stream relay writes what arrived together with one send, never waiting for more (nor
for the upstream's body to end once its [DONE] is here).

Driven with the in-process mock provider, whose batches model a socket: a stream without a
chunk delay is ready at once; with one, each content chunk comes on its own (trio's autojump clock
makes the delays instant).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import msgspec
import trio

from circuitd.config import MockConfig
from circuitd.gateway.asgi import Message
from circuitd.gateway.relay import AttemptFailed, stream_attempt
from circuitd.gateway.settle import CallRecord
from circuitd.providers.base import Deployment, UpstreamCall
from circuitd.providers.mock import MockProvider

DEPLOYMENT = Deployment("mock/m", MockProvider("mock", MockConfig()), "m", None)


async def relay(mock: dict[str, Any], chunks: int = 5) -> tuple[CallRecord, list[Message]]:
    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hello"}],
        "mock": {"chunks": chunks, "tokens": chunks, **mock},
    }
    record = CallRecord("req_1", trio.current_time(), 0.0, stream=True)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    call = UpstreamCall("req_1", msgspec.json.encode(body), stream=True)
    with contextlib.suppress(AttemptFailed):
        await stream_attempt(
            record,
            DEPLOYMENT,
            call,
            send=send,
            headers=[],
            deadline=math.inf,
            client_wants_usage=True,
        )
    return record, sent


def bodies(sent: list[Message]) -> list[bytes]:
    assert sent[0]["type"] == "http.response.start"
    return [m["body"] for m in sent[1:]]


async def test_a_stream_ready_at_once_is_written_at_once() -> None:
    record, sent = await relay({})
    [body] = bodies(sent)  # role, 5 content chunks, finish, usage and [DONE]: one write
    assert sent[-1]["more_body"] is False
    assert body.count(b"data: ") == 9 and body.endswith(b"data: [DONE]\n\n")
    assert record.status == "ok" and len(record.relayed) == 5


async def test_chunks_that_come_apart_are_written_as_they_come(autojump_clock: Any) -> None:
    record, sent = await relay({"chunk_delay_ms": 10})
    written = bodies(sent)
    # The role chunk waits for the first content (held back until a chunk of substance),
    # then each content chunk goes out on its own as it comes, and the finish, usage and
    # [DONE] that come together after the last delay (as from `circuitd mock-upstream`) go
    # out together.
    assert [b.count(b"data: ") for b in written] == [2, 1, 1, 1, 1, 3]
    assert all(m["more_body"] for m in sent[1:-1]) and sent[-1]["more_body"] is False
    assert record.status == "ok"


async def test_what_came_before_a_broken_event_is_relayed_first() -> None:
    record, sent = await relay({"malformed_after": 2})  # in the same batch as the good ones
    *content, error = bodies(sent)
    assert b"".join(content).count(b'"content"') >= 2  # the two good chunks reached the client
    assert b'"error"' in error and sent[-1]["more_body"] is False
    assert record.status == "partial" and len(record.relayed) == 2


async def test_a_failure_before_substance_leaves_the_attempt_retryable() -> None:
    record, sent = await relay({"malformed_after": 0})
    assert sent == []  # nothing written: the router may retry or fall back
    assert record.relayed == []


class EndsLate:
    """A provider whose stream ends `linger_s` after its [DONE], as an adapter's does while
    it reads the upstream's body to its end (`providers.http`): the relay's reply too."""

    name = kind = "late"
    status = 200
    retry_after = None
    content_type = b"text/event-stream"

    def __init__(self, linger_s: float) -> None:
        self.linger_s = linger_s

    @contextlib.asynccontextmanager
    async def open(self, deployment: Deployment, call: UpstreamCall) -> AsyncIterator[EndsLate]:
        yield self

    async def read(self) -> bytes:
        return b""

    async def batches(self) -> AsyncGenerator[list[str], None]:
        delta = {"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}
        chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [delta]}
        yield [msgspec.json.encode(chunk).decode(), "[DONE]"]
        await trio.sleep(self.linger_s)

    async def aclose(self) -> None:
        pass


async def test_the_answer_ends_with_done_not_with_the_upstreams_body(autojump_clock: Any) -> None:
    sent: list[tuple[float, Message]] = []

    async def send(message: Message) -> None:
        sent.append((trio.current_time(), message))

    record = CallRecord("req_1", trio.current_time(), 0.0, stream=True)
    call = UpstreamCall("req_1", b"{}", stream=True)
    deployment = Deployment("late/m", EndsLate(linger_s=5.0), "m", None)
    began = trio.current_time()
    await stream_attempt(
        record,
        deployment,
        call,
        send=send,
        headers=[],
        deadline=math.inf,
        client_wants_usage=False,
    )
    at, last = sent[-1]
    assert last["more_body"] is False and last["body"].endswith(b"data: [DONE]\n\n")
    assert at == began  # not 5 s later, when the upstream's body ended
    assert trio.current_time() == began + 5.0 and record.status == "ok"
