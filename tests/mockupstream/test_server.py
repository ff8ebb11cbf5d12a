"""`circuitd mock-upstream` over real sockets: the official SDK, faults, the control API."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import openai
import pytest

from circuitd.mockupstream.testing import running_mock_upstream
from tests.mockupstream.conftest import MESSAGES


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": MESSAGES, **fields}


def events(raw: bytes) -> list[bytes]:
    return [e.removeprefix(b"data: ") for e in raw.split(b"\n\n") if e]


def content_of(payloads: list[bytes]) -> str:
    text = ""
    for payload in payloads:
        if payload.startswith(b"{") and payload != b"{not json":
            for choice in json.loads(payload)["choices"]:
                text += choice["delta"].get("content") or ""
    return text


# -- the official SDK --------------------------------------------------------------------------


def test_sdk_json_completion_with_usage(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.object == "chat.completion" and completion.model == "gpt-4o-mini"
    [choice] = completion.choices
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0
    assert usage.completion_tokens == len(choice.message.content.split())
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_sdk_stream_matches_json_and_ends_with_usage(sdk: openai.OpenAI) -> None:
    whole = sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_sdk_stream_without_include_usage_has_no_usage(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)


def test_sdk_max_tokens_and_models(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(model="m", messages=MESSAGES, max_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert "gpt-4o-mini" in [m.id for m in sdk.models.list()]


def test_require_key() -> None:
    with running_mock_upstream(require_key="sk-right") as url:
        wrong = openai.OpenAI(base_url=url + "/v1", api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.chat.completions.create(model="m", messages=MESSAGES)
        assert caught.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        right = openai.OpenAI(base_url=url + "/v1", api_key="sk-right", max_retries=0)
        assert right.chat.completions.create(model="m", messages=MESSAGES).choices


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b'{"model": "m"', None),
        (b'{"messages": []}', "model"),
        (b'{"model": "m"}', "messages"),
        (b'{"model": "m", "messages": []}', "messages"),
        (b'{"model": 1, "messages": [{"role": "user"}]}', "model"),
        (b'{"model": "m", "messages": [{"role": "user"}], "mock": {"stal": 1}}', "mock"),
    ],
)
def test_invalid_requests_get_400(http: httpx.Client, content: bytes, param: str | None) -> None:
    response = http.post("/v1/chat/completions", content=content)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_unknown_routes(http: httpx.Client) -> None:
    assert http.get("/v1/nothing").status_code == 404
    assert http.get("/v1/chat/completions").status_code == 405
    assert (
        http.get("/_mock/nothing").json()["error"]["message"] == "Invalid URL (GET /_mock/nothing)"
    )


# -- faults --------------------------------------------------------------------------------------


def test_status_fault_with_retry_after(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(
            model="m",
            messages=MESSAGES,
            extra_body={"mock": {"status": 429, "retry_after": 2}},
        )
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError) as server_error:
        sdk.chat.completions.create(
            model="m",
            messages=MESSAGES,
            stream=True,
            extra_body={"mock": {"status": 503, "message": "overloaded"}},
        )
    assert server_error.value.status_code == 503
    assert server_error.value.body == {
        "message": "overloaded",
        "type": "server_error",
        "param": None,
        "code": "service_unavailable",
    }


def test_cut_after_makes_the_sdk_stream_raise(sdk: openai.OpenAI, http: httpx.Client) -> None:
    stream = sdk.chat.completions.create(
        model="m",
        messages=MESSAGES,
        stream=True,
        extra_body={"mock": {"cut_after": 3, "chunks": 10}},
    )
    received: list[object] = []
    with pytest.raises(openai.APIConnectionError):
        received.extend(stream)
    assert len(received) == 4  # the role chunk and 3 content chunks
    assert http.get("/_mock/stats").json()["disconnects"] == 0  # our cut, not the client's


def test_cut_after_with_raw_http(http: httpx.Client) -> None:
    body = chat(stream=True, mock={"cut_after": 2, "chunks": 5})
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        for data in response.iter_raw():
            received += data
    payloads = events(received)
    assert len(payloads) == 3 and b"[DONE]" not in received


def test_malformed_after_then_the_stream_goes_on(http: httpx.Client) -> None:
    body = chat(stream=True, mock={"malformed_after": 2, "chunks": 4})
    payloads = events(http.post("/v1/chat/completions", json=body).content)
    assert payloads[3] == b"{not json"  # after the role chunk and 2 content chunks
    assert payloads[-1] == b"[DONE]" and len(payloads) == 1 + 4 + 1 + 1 + 1
    whole = http.post("/v1/chat/completions", json=chat(mock={"chunks": 4})).json()
    assert content_of(payloads) == whole["choices"][0]["message"]["content"]


def test_omit_usage(sdk: openai.OpenAI) -> None:
    extra = {"mock": {"omit_usage": True}}
    completion = sdk.chat.completions.create(model="m", messages=MESSAGES, extra_body=extra)
    assert completion.usage is None
    stream = sdk.chat.completions.create(
        model="m",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=extra,
    )
    assert all(c.usage is None and c.choices for c in stream)


def test_tokens_chunks_and_latency_faults(http: httpx.Client) -> None:
    mock = {"tokens": 6, "chunks": 3, "latency_ms": 1, "chunk_delay_ms": 1}
    payloads = events(http.post("/v1/chat/completions", json=chat(stream=True, mock=mock)).content)
    assert len(payloads) == 1 + 3 + 1 + 1
    assert len(content_of(payloads).split()) == 6
    completion = http.post("/v1/chat/completions", json=chat(mock=mock)).json()
    assert completion["usage"]["completion_tokens"] == 6


def test_stall_after_until_the_client_gives_up(mock_url: str, http: httpx.Client) -> None:
    host, port = mock_url.removeprefix("http://").split(":")
    body = json.dumps(chat(stream=True, mock={"stall_after": 2, "chunks": 5})).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        received = b""
        while received.count(b"data: ") < 3:  # role chunk + 2 content chunks
            received += sock.recv(65536)
        assert http.get("/_mock/stats").json()["in_flight"] == 1
        sock.settimeout(0.3)  # then nothing: the client gives up after a short read timeout
        with pytest.raises(TimeoutError):
            received += sock.recv(65536)
    assert received.count(b"data: ") == 3 and received.endswith(b"\n\n\r\n")
    stats = http.get("/_mock/stats", params={"wait_disconnects": 1}).json()
    assert stats["disconnects"] == 1 and stats["in_flight"] == 0 and not stats["timed_out"]


def test_client_disconnect_mid_stream_is_counted(mock_url: str, http: httpx.Client) -> None:
    body = chat(stream=True, mock={"chunk_delay_ms": 1, "chunks": 10_000})
    received = b""
    with (
        httpx.Client(base_url=mock_url) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        for data in response.iter_raw():
            received += data
            if received.count(b"data: ") >= 3:
                break
    stats = http.get("/_mock/stats", params={"wait_disconnects": 1, "timeout": 10}).json()
    assert (stats["disconnects"], stats["in_flight"], stats["timed_out"]) == (1, 0, False)


def test_long_poll_times_out_with_the_current_stats(http: httpx.Client) -> None:
    stats = http.get("/_mock/stats", params={"wait_requests": 1, "timeout": 0.01}).json()
    assert stats["timed_out"] and stats["requests"] == 0
    assert http.get("/_mock/stats", params={"wait_idle": 1}).json()["timed_out"] is False


# -- control API ---------------------------------------------------------------------------------


def test_fault_queue_with_count_and_until_cleared(http: httpx.Client) -> None:
    def status(**fields: Any) -> int:
        return http.post("/v1/chat/completions", json=chat(**fields)).status_code

    order = {"fault": {"status": 503}, "count": 2}
    assert http.post("/_mock/faults", json=order).json() == {"queued": 1}
    assert [status(), status(), status()] == [503, 503, 200]
    http.post("/_mock/faults", json={"fault": {"status": 500}, "count": None})
    # A body fault's set fields win over the queue's; the queue entry is still used up.
    assert [status(mock={"status": 400}), status(), status()] == [400, 500, 500]
    assert http.delete("/_mock/faults").json() == {"queued": 0}
    assert status() == 200
    assert http.post("/_mock/faults", json={"fault": {"nope": 1}}).status_code == 400
    stats = http.get("/_mock/stats").json()
    assert stats["requests"] == 7
    assert stats["statuses"] == {"200": 2, "400": 1, "500": 2, "503": 2}


def test_server_defaults_are_the_bottom_layer() -> None:
    with running_mock_upstream(tokens=4, status=500) as url, httpx.Client(base_url=url) as http:
        assert http.post("/v1/chat/completions", json=chat()).status_code == 500
        ok = http.post("/v1/chat/completions", json=chat(mock={"status": 200}))
        assert ok.status_code == 200  # status 200 from the body: answer normally
        assert ok.json()["usage"]["completion_tokens"] == 4


def test_requests_log_shows_fields_and_headers(http: httpx.Client) -> None:
    body = chat(vendor_extension={"keep": [1, 2]}, seed=7)
    http.post(
        "/v1/chat/completions?api-version=1",
        json=body,
        headers={"Authorization": "Bearer up-key", "X-Custom": "yes"},
    )
    http.post("/v1/chat/completions", content=b"not json")
    first, second = http.get("/_mock/requests").json()
    assert first["method"] == "POST" and first["path"] == "/v1/chat/completions"
    assert first["query"] == "api-version=1"
    assert first["body"] == body
    headers = {name.lower(): value for name, value in first["headers"]}
    assert headers["authorization"] == "Bearer up-key" and headers["x-custom"] == "yes"
    assert second["body"] == "not json"
    for i in range(60):
        http.post("/v1/chat/completions", json=chat(seed=i))
    log = http.get("/_mock/requests").json()
    assert len(log) == 50 and log[-1]["body"]["seed"] == 59
    assert http.post("/_mock/reset").json()["requests"] == 0
    assert http.get("/_mock/requests").json() == []
