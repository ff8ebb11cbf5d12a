"""The stream relay writes what arrived together with one send, never waiting for more.

Driven with the in-process mock provider, whose batches model a socket: a stream without a
chunk delay is ready at once; with one, each content chunk comes on its own (trio's autojump clock
makes the delays instant).
"""

from __future__ import annotations

import contextlib
import math
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
