"""`MessagesEdge.send`: what the pipeline answers, rewritten for an Anthropic client, whatever
the pieces the ASGI messages come in."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuitd.core.sse import SSEDecoder
from circuitd.gateway.asgi import Message
from circuitd.gateway.messages import MessagesEdge

BODY = b'{"model":"claude-x","max_tokens":9,"messages":[{"role":"user","content":"Hi"}]}'
FRAMES = (
    b"".join(
        b"data: " + json.dumps(chunk).encode() + b"\n\n"
        for chunk in (
            {
                "id": "chatcmpl-1",
                "model": "m",
                "choices": [{"delta": {"role": "assistant", "content": ""}}],
            },
            {"id": "chatcmpl-1", "model": "m", "choices": [{"delta": {"content": "Hi "}}]},
            {"id": "chatcmpl-1", "model": "m", "choices": [{"delta": {"content": "there"}}]},
            {"id": "chatcmpl-1", "model": "m", "choices": [{"delta": {}, "finish_reason": "stop"}]},
        )
    )
    + b"data: [DONE]\n\n"
)


async def run(messages: list[Message]) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    edge = MessagesEdge(send, "req_1")
    edge.canonical(BODY)
    for message in messages:
        await edge.send(message)
    return sent


def start(content_type: bytes, status: int = 200) -> Message:
    headers = [(b"content-type", content_type), (b"content-length", b"999"), (b"x-a", b"b")]
    return {"type": "http.response.start", "status": status, "headers": headers}


@given(st.lists(st.integers(0, len(FRAMES)), max_size=8))
async def test_stream_frames_split_anywhere(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(FRAMES)]
    pieces = [FRAMES[a:b] for a, b in itertools.pairwise(points)]
    messages: list[Message] = [start(b"text/event-stream; charset=utf-8")]
    messages += [{"type": "http.response.body", "body": p, "more_body": True} for p in pieces]
    messages.append({"type": "http.response.body", "body": b"", "more_body": False})
    sent = await run(messages)
    assert (b"request-id", b"req_1") in sent[0]["headers"]
    assert sent[-1]["more_body"] is False
    events = SSEDecoder().feed(b"".join(m["body"] for m in sent[1:]))
    texts = [
        json.loads(e.data)["delta"]["text"] for e in events if e.event == "content_block_delta"
    ]
    assert "".join(texts) == "Hi there"
    assert [e.event for e in events][-2:] == ["message_delta", "message_stop"]


@pytest.mark.parametrize(
    "pieces",
    [
        [b'{"error":{"message":"Nope.","type":"x","code":"y"}}'],
        [b'{"error":', b'{"message":"Nope."}}'],
    ],
)
async def test_json_error_rewritten_with_its_length(pieces: list[bytes]) -> None:
    messages: list[Message] = [start(b"application/json", 404)]
    messages += [
        {"type": "http.response.body", "body": p, "more_body": i < len(pieces) - 1}
        for i, p in enumerate(pieces)
    ]
    head, body = await run(messages)
    payload = body["body"]
    assert json.loads(payload) == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "Nope."},
        "request_id": "req_1",
    }
    headers = dict(head["headers"])
    assert head["status"] == 404 and headers[b"x-a"] == b"b"
    assert headers[b"content-length"] == str(len(payload)).encode()
    assert headers[b"content-type"] == b"application/json"
    assert len(head["headers"]) == 4  # x-a, request-id, content-type and -length once each
