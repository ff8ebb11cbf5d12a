"""The mock's script: deterministic text, usage and OpenAI rendering, without a socket."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuitd.mockupstream.openai_render import DONE, render_completion, render_stream, sse
from circuitd.mockupstream.script import DEFAULT_TOKENS, estimate_prompt_tokens, plan_completion
from circuitd.wire.openai import ChatRequestView, Message


def request(text: str = "hello", /, **fields: object) -> ChatRequestView:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]
    return msgspec.convert({"model": "m", "messages": messages, **fields}, ChatRequestView)


def test_same_request_same_text_and_different_prompts_differ() -> None:
    assert plan_completion(request("a")) == plan_completion(request("a"))
    assert plan_completion(request("a")).text != plan_completion(request("b")).text


def test_text_depends_on_the_last_user_message_only() -> None:
    other_system = msgspec.structs.replace(
        request("same"), messages=[Message("system", "other"), Message("user", "same")]
    )
    assert plan_completion(other_system).text == plan_completion(request("same")).text


def test_default_length_is_in_range_and_stops() -> None:
    plans = [plan_completion(request(f"prompt {i}")) for i in range(50)]
    low, high = DEFAULT_TOKENS
    assert all(low <= p.completion_tokens <= high for p in plans)
    assert len({p.completion_tokens for p in plans}) > 1
    assert {p.finish_reason for p in plans} == {"stop"}


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_cuts_the_text(field: str) -> None:
    plan = plan_completion(request(**{field: 3}))
    assert plan.completion_tokens == 3 and len(plan.text.split()) == 3
    assert plan.finish_reason == "length"
    assert plan_completion(request(**{field: 1000})).finish_reason == "stop"


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    plan = plan_completion(request(max_tokens=10, max_completion_tokens=4))
    assert plan.completion_tokens == 4


def test_tokens_and_chunks() -> None:
    plan = plan_completion(request(), tokens=10, chunks=4)
    assert plan.completion_tokens == 10
    assert [len(p.split()) for p in plan.pieces] == [3, 3, 2, 2]
    # Asking for more chunks than the default length lengthens the text to fit them.
    assert len(plan_completion(request(), chunks=100).pieces) == 100
    assert plan_completion(request(), tokens=0).text == ""


def test_prompt_tokens_heuristic() -> None:
    # 3 priming + per message 4 + ceil(chars / 4): "be brief" 2, "x" * 9 -> 3
    assert estimate_prompt_tokens(request("x" * 9).messages) == 3 + (4 + 2) + (4 + 3)
    parts = [{"type": "text", "text": "abcd"}, {"type": "image_url", "image_url": {}}]
    assert estimate_prompt_tokens([Message("user", parts)]) == 3 + 4 + 1


@given(
    text=st.text(max_size=200),
    limit=st.none() | st.integers(0, 80),
    tokens=st.none() | st.integers(0, 80),
    chunks=st.none() | st.integers(1, 30),
)
def test_plan_is_consistent(
    text: str, limit: int | None, tokens: int | None, chunks: int | None
) -> None:
    plan = plan_completion(request(text, max_tokens=limit), tokens=tokens, chunks=chunks)
    assert "".join(plan.pieces) == plan.text
    assert plan.completion_tokens == len(plan.text.split())
    assert plan.total_tokens == plan.prompt_tokens + plan.completion_tokens
    if limit is not None:
        assert plan.completion_tokens <= limit
    if tokens is not None:
        assert plan.completion_tokens == min(tokens, limit if limit is not None else tokens)
    if chunks is not None and plan.completion_tokens:
        assert len(plan.pieces) == min(chunks, plan.completion_tokens)
    assert all(plan.pieces)


def test_completion_body_shape() -> None:
    plan = plan_completion(request(), tokens=5)
    body = json.loads(render_completion(plan, id="chatcmpl-1", created=7, model="m"))
    assert body["object"] == "chat.completion" and body["id"] == "chatcmpl-1"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": plan.text,
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    usage = body["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (plan.prompt_tokens, 5)
    assert usage["total_tokens"] == plan.total_tokens
    bare = render_completion(plan, id="x", created=7, model="m", include_usage=False)
    assert "usage" not in json.loads(bare)


def test_stream_payloads_are_openais_chunks() -> None:
    plan = plan_completion(request(), tokens=4, chunks=2)
    payloads = render_stream(plan, id="c", created=1, model="m", include_usage=True)
    chunks = [json.loads(p) for p in payloads.all()[:-1]]
    assert payloads.all()[-1] == DONE
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "c" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:3]]
    assert content == plan.pieces
    assert chunks[3]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert [c["usage"] for c in chunks[:4]] == [None] * 4
    assert chunks[4]["choices"] == [] and chunks[4]["usage"]["completion_tokens"] == 4
    assert sse(DONE) == b"data: [DONE]\n\n"


def test_stream_without_usage_has_no_usage_key() -> None:
    plan = plan_completion(request(), tokens=2)
    payloads = render_stream(plan, id="c", created=1, model="m", include_usage=False)
    assert len(payloads.tail) == 2  # the finish chunk and [DONE]
    assert all("usage" not in json.loads(p) for p in payloads.all()[:-1])
