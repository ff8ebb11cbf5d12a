"""Fault layering, the fault queue and OpenAI error bodies, without a socket."""

from __future__ import annotations

import json

import msgspec
import pytest

from circuitd.mockupstream.faults import Fault, FaultQueue, error_body


def test_set_fields_override_and_unset_fields_fall_through() -> None:
    defaults = Fault(chunk_delay_ms=5, tokens=10)
    queued = Fault(status=503, retry_after=1)
    body = Fault(status=500, tokens=3)
    merged = body.over(queued.over(defaults))
    assert merged == Fault(status=500, retry_after=1, chunk_delay_ms=5, tokens=3)
    assert Fault().over(defaults) == defaults
    assert body.over(None) == body


def test_fault_validation_rejects_typos_and_bad_values() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"stall": 1}, Fault)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"status": 42}, Fault)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"chunks": 0}, Fault)


def test_timed_faults_need_the_clock() -> None:
    assert not Fault(status=500, cut_after=1, malformed_after=1).timed
    assert Fault(latency_ms=1).timed and Fault(chunk_delay_ms=1).timed
    assert Fault(stall_after=0).timed


def test_queue_counts_down_then_moves_on() -> None:
    queue = FaultQueue()
    first, second = Fault(status=500), Fault(status=429)
    queue.push(first, 2)
    queue.push(second, None)
    queue.push(Fault(status=400), 0)  # nothing to apply
    assert [queue.take() for _ in range(4)] == [first, first, second, second]
    assert len(queue) == 1
    queue.clear()
    assert queue.take() is None


@pytest.mark.parametrize(
    ("status", "type_", "code"),
    [
        (400, "invalid_request_error", None),
        (401, "invalid_request_error", "invalid_api_key"),
        (429, "requests", "rate_limit_exceeded"),
        (500, "server_error", None),
        (503, "server_error", "service_unavailable"),
        (599, "server_error", None),
        (418, "invalid_request_error", None),
    ],
)
def test_error_body_is_openai_shaped(status: int, type_: str, code: str | None) -> None:
    error = json.loads(error_body(status))["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == (type_, code)
    assert error["message"]


def test_error_body_overrides() -> None:
    error = json.loads(error_body(404, "Invalid URL", code=None, param="x"))["error"]
    assert error == {
        "message": "Invalid URL",
        "type": "invalid_request_error",
        "param": "x",
        "code": None,
    }
