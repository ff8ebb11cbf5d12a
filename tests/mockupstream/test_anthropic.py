"""The mock's Anthropic dialect over real sockets, checked with the official `anthropic` SDK."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types import MessageParam, ToolParam

from circuitd.mockupstream.testing import running_mock_upstream
from tests.mockupstream.conftest import MESSAGES as OPENAI_MESSAGES

SYSTEM = "You are terse."
MESSAGES: list[MessageParam] = [{"role": "user", "content": "Tell me about circuit breakers."}]
WEATHER: list[MessageParam] = [{"role": "user", "content": "What's the weather in Paris?"}]
VERSION = {"anthropic-version": "2023-06-01"}
TOOLS: list[ToolParam] = [
    {
        "name": "get_weather",
        "description": "The current weather at a place.",
        "input_schema": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["location", "unit"],
        },
    },
    {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
]


@pytest.fixture
def client(mock_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=mock_url, api_key="sk-ant-test", max_retries=0)


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 1024, "messages": MESSAGES, **fields}


def sse_events(raw: bytes) -> list[tuple[str, Any]]:
    """(event name, data) pairs; data is parsed JSON, or the raw text when it is not JSON."""
    out: list[tuple[str, Any]] = []
    for frame in raw.decode().split("\n\n"):
        if not frame:
            continue
        name_line, data_line = frame.split("\n")
        name, data = name_line.removeprefix("event: "), data_line.removeprefix("data: ")
        try:
            out.append((name, json.loads(data)))
        except json.JSONDecodeError:
            out.append((name, data))
    return out


# -- JSON ----------------------------------------------------------------------------------------


def test_json_message_matches_the_openai_route(client: anthropic.Anthropic, mock_url: str) -> None:
    message = client.messages.create(
        model="claude-x", max_tokens=1024, system=SYSTEM, messages=MESSAGES
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "claude-x" and message.id.startswith("msg_")
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    [block] = message.content
    assert block.type == "text"
    assert message._request_id is not None and message._request_id.startswith("req_")
    # The same conversation in OpenAI's dialect: the same words and the same usage.
    sdk = openai.OpenAI(base_url=mock_url + "/v1", api_key="sk", max_retries=0)
    completion = sdk.chat.completions.create(model="m", messages=OPENAI_MESSAGES)
    assert block.text == completion.choices[0].message.content
    usage = message.usage
    assert completion.usage is not None
    assert usage.input_tokens == completion.usage.prompt_tokens
    assert usage.output_tokens == completion.usage.completion_tokens == len(block.text.split())
    assert usage.cache_creation_input_tokens == usage.cache_read_input_tokens == 0


def test_max_tokens_cuts_the_text(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="claude-x", max_tokens=3, messages=MESSAGES)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3
    [block] = message.content
    assert block.type == "text" and len(block.text.split()) == 3


def test_content_blocks_and_string_content_give_the_same_text(client: anthropic.Anthropic) -> None:
    as_string = client.messages.create(model="m", max_tokens=99, messages=MESSAGES)
    as_blocks = client.messages.create(
        model="m",
        max_tokens=99,
        system=[{"type": "text", "text": SYSTEM}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": MESSAGES[0]["content"]}]}  # type: ignore[typeddict-item]
        ],
    )
    assert as_string.content == as_blocks.content


# -- streams -------------------------------------------------------------------------------------


def test_stream_helper_matches_json(client: anthropic.Anthropic) -> None:
    whole = client.messages.create(model="m", max_tokens=1024, system=SYSTEM, messages=MESSAGES)
    with client.messages.stream(
        model="m", max_tokens=1024, system=SYSTEM, messages=MESSAGES
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    [block] = whole.content
    assert block.type == "text" and text == block.text
    assert [b.model_dump(exclude={"parsed_output"}) for b in final.content] == [
        b.model_dump() for b in whole.content
    ]
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_stream_event_sequence(client: anthropic.Anthropic, http: httpx.Client) -> None:
    events = list(
        client.messages.create(
            model="m",
            max_tokens=1024,
            messages=MESSAGES,
            stream=True,
            extra_body={"mock": {"chunks": 3}},
        )
    )
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    raw = http.post("/v1/messages", json=body(stream=True, mock={"chunks": 3}), headers=VERSION)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["request-id"].startswith("req_")
    parsed = sse_events(raw.content)
    assert [name for name, _ in parsed][:3] == ["message_start", "content_block_start", "ping"]
    assert all(data["type"] == name for name, data in parsed)  # the data names its event
    start, delta = parsed[0][1], parsed[-2][1]
    assert start["message"]["usage"]["output_tokens"] == 1
    assert start["message"]["content"] == [] and start["message"]["stop_reason"] is None
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert set(delta["usage"]) == {"output_tokens"}


def test_stream_with_latency_and_chunk_delays(client: anthropic.Anthropic) -> None:
    mock = {"latency_ms": 1, "chunk_delay_ms": 1, "tokens": 6, "chunks": 3}
    with client.messages.stream(
        model="m", max_tokens=1024, messages=MESSAGES, extra_body={"mock": mock}
    ) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(deltas) == 3 and final.usage.output_tokens == 6


# -- tool use ------------------------------------------------------------------------------------


def test_tool_use_json(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="m", max_tokens=1024, tools=TOOLS, messages=WEATHER)
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use" and block.id.startswith("toolu_")
    assert block.name == "get_weather"
    assert block.input == {"location": "mock", "unit": "celsius"}  # the required properties
    assert message.usage.output_tokens >= 1


def test_tool_use_stream(client: anthropic.Anthropic, http: httpx.Client) -> None:
    whole = client.messages.create(model="m", max_tokens=1024, tools=TOOLS, messages=WEATHER)
    with client.messages.stream(
        model="m", max_tokens=1024, tools=TOOLS, messages=WEATHER
    ) as stream:
        final = stream.get_final_message()
    [block], [whole_block] = final.content, whole.content
    assert block.type == whole_block.type == "tool_use"
    assert (block.name, block.input) == (whole_block.name, whole_block.input)
    assert final.stop_reason == "tool_use" and final.usage == whole.usage
    raw = http.post(
        "/v1/messages", json=body(stream=True, tools=TOOLS, messages=WEATHER), headers=VERSION
    )
    parsed = sse_events(raw.content)
    start = parsed[1][1]["content_block"]
    assert start["type"] == "tool_use" and start["input"] == {} and start["name"] == "get_weather"
    deltas = [data["delta"] for name, data in parsed if name == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"input_json_delta"}
    assert deltas[0]["partial_json"] == ""  # as Anthropic starts a tool's input
    assert len(deltas) > 2
    assert json.loads("".join(d["partial_json"] for d in deltas)) == whole_block.input


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tool_choice": {"type": "tool", "name": "get_time"}}, "get_time"),
        ({"tool_choice": {"type": "any"}, "messages": MESSAGES}, "get_weather"),
        ({"tool_choice": {"type": "none"}}, None),
        ({"tool_choice": {"type": "auto"}}, "get_weather"),
        ({"messages": MESSAGES}, None),  # no "weather": the model answers
        ({"messages": MESSAGES, "mock": {"tool_call": True}}, "get_weather"),
        ({"mock": {"tool_call": False}}, None),
        ({"tools": None}, None),
    ],
)
def test_when_a_tool_is_called(
    http: httpx.Client, fields: dict[str, Any], expected: str | None
) -> None:
    request = body(**{"tools": TOOLS, "messages": WEATHER, **fields})
    message = http.post("/v1/messages", json=request, headers=VERSION).json()
    [block] = message["content"]
    if expected is None:
        assert block["type"] == "text" and message["stop_reason"] == "end_turn"
    else:
        assert block["type"] == "tool_use" and block["name"] == expected
        assert message["stop_reason"] == "tool_use"


def test_after_the_tool_result_the_answer_is_text(client: anthropic.Anthropic) -> None:
    first = client.messages.create(model="m", max_tokens=1024, tools=TOOLS, messages=WEATHER)
    [call] = first.content
    assert call.type == "tool_use"
    second = client.messages.create(
        model="m",
        max_tokens=1024,
        tools=TOOLS,
        messages=[
            *WEATHER,
            {"role": "assistant", "content": [call.model_dump(exclude_none=True)]},  # type: ignore[list-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21°C"}],
            },
        ],
    )
    [block] = second.content
    assert block.type == "text" and second.stop_reason == "end_turn"


# -- errors and faults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exception", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_status_faults_raise_the_sdk_errors(
    client: anthropic.Anthropic,
    status: int,
    exception: type[anthropic.APIStatusError],
    error_type: str,
    stream: bool,
) -> None:
    with pytest.raises(exception) as caught:
        client.messages.create(
            model="m",
            max_tokens=10,
            messages=MESSAGES,
            stream=stream,
            extra_body={"mock": {"status": status, "retry_after": 2}},
        )
    error = caught.value
    assert error.status_code == status
    assert isinstance(error.body, dict) and error.body["type"] == "error"
    assert error.body["error"]["type"] == error_type and error.body["error"]["message"]
    assert error.response.headers["retry-after"] == "2"
    assert error.request_id is not None and error.request_id.startswith("req_")


def test_overloaded_is_an_internal_server_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(
            model="m", max_tokens=10, messages=MESSAGES, extra_body={"mock": {"status": 529}}
        )
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": caught.value.request_id,
    }


@pytest.mark.parametrize(("after", "deltas"), [(0, 0), (2, 2)])
def test_error_event_raises_in_the_sdk(
    client: anthropic.Anthropic, after: int, deltas: int
) -> None:
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        for event in client.messages.create(
            model="m",
            max_tokens=100,
            messages=MESSAGES,
            stream=True,
            extra_body={"mock": {"error_event_after": after, "chunks": 5}},
        ):
            seen.append(event.type)  # noqa: PERF401 - keep what came before the error
    assert seen.count("content_block_delta") == deltas
    assert ("message_start" in seen) == (after > 0)  # 0: the error is the first event
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_error_event_frames(http: httpx.Client) -> None:
    raw = http.post(
        "/v1/messages", json=body(stream=True, mock={"error_event_after": 0}), headers=VERSION
    )
    assert raw.status_code == 200
    assert sse_events(raw.content) == [
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    ]
    mock = {"error_event_after": 1, "chunks": 3, "message": "try later"}
    parsed = sse_events(
        http.post("/v1/messages", json=body(stream=True, mock=mock), headers=VERSION).content
    )
    assert [name for name, _ in parsed] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "error",
    ]
    assert parsed[-1][1]["error"]["message"] == "try later"


def test_cut_and_malformed_streams(http: httpx.Client) -> None:
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream(
            "POST", "/v1/messages", json=body(stream=True, mock={"cut_after": 2}), headers=VERSION
        ) as response,
    ):
        for data in response.iter_raw():
            received += data
    names = [name for name, _ in sse_events(received)]
    assert names == ["message_start", "content_block_start", "ping", *["content_block_delta"] * 2]
    mock = {"malformed_after": 1, "chunks": 2}
    parsed = sse_events(
        http.post("/v1/messages", json=body(stream=True, mock=mock), headers=VERSION).content
    )
    assert parsed[4] == ("content_block_delta", "{not json")
    assert parsed[-1][0] == "message_stop" and len(parsed) == 3 + 2 + 1 + 3


def test_omit_usage_reports_zero_tokens(client: anthropic.Anthropic) -> None:
    extra = {"mock": {"omit_usage": True}}
    message = client.messages.create(model="m", max_tokens=99, messages=MESSAGES, extra_body=extra)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (0, 0)
    assert message.content  # the answer itself is whole
    with client.messages.stream(
        model="m", max_tokens=99, messages=MESSAGES, extra_body=extra
    ) as stream:
        final = stream.get_final_message()
    assert (final.usage.input_tokens, final.usage.output_tokens) == (0, 0)


def test_fault_queue_applies_to_messages(http: httpx.Client) -> None:
    http.post("/_mock/faults", json={"fault": {"status": 529}, "count": 2})
    statuses = [
        http.post("/v1/messages", json=body(), headers=VERSION).status_code for _ in range(3)
    ]
    assert statuses == [529, 529, 200]
    stats = http.get("/_mock/stats").json()
    assert stats["requests"] == 3 and stats["routes"] == {"/v1/messages": 3}
    assert stats["statuses"] == {"200": 1, "529": 2}


# -- validation, keys, the log -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"model": "m"', "There was an error parsing the body of your request."),
        (json.dumps(body(model=None)).encode(), "model: Expected `str`, got `null`"),
        (json.dumps({"model": "m", "messages": MESSAGES}).encode(), "max_tokens: Field required"),
        (json.dumps({"model": "m", "max_tokens": 9}).encode(), "messages: Field required"),
        (json.dumps(body(messages=[])).encode(), "messages: at least one message is required"),
        (
            json.dumps(body(max_tokens=0)).encode(),
            "max_tokens: Input should be greater than or equal to 1",
        ),
        (
            json.dumps(body(messages=[{"role": "system", "content": "x"}])).encode(),
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            json.dumps(body(messages=[{"role": "user"}])).encode(),
            "messages.0.content: Field required",
        ),
        (
            json.dumps(body(tools=TOOLS, tool_choice={"type": "tool", "name": "nope"})).encode(),
            "tool_choice.name: tool 'nope' was not provided",
        ),
        (json.dumps(body(mock={"stal": 1})).encode(), "mock: Object contains unknown field `stal`"),
    ],
)
def test_invalid_requests_get_anthropic_400s(
    http: httpx.Client, content: bytes, message: str
) -> None:
    response = http.post("/v1/messages", content=content, headers=VERSION)
    assert response.status_code == 400
    answer = response.json()
    assert answer["type"] == "error"
    assert answer["error"] == {"type": "invalid_request_error", "message": message}
    assert answer["request_id"] == response.headers["request-id"]


def test_anthropic_version_is_required(http: httpx.Client) -> None:
    response = http.post("/v1/messages", json=body())
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "anthropic-version: header is required"


def test_require_key() -> None:
    with (
        running_mock_upstream(require_key="sk-ant-right") as url,
        httpx.Client(base_url=url) as http,
    ):

        def status(headers: dict[str, str]) -> tuple[int, str | None]:
            response = http.post("/v1/messages", json=body(), headers={**VERSION, **headers})
            error = response.json().get("error")
            return response.status_code, error and f"{error['type']}: {error['message']}"

        assert status({"x-api-key": "sk-ant-right"}) == (200, None)
        assert status({"x-api-key": "sk-ant-wrong"}) == (
            401,
            "authentication_error: invalid x-api-key",
        )
        assert status({}) == (401, "authentication_error: x-api-key header is required")
        # Recent official SDKs send the API key as a Bearer token: accepted too.
        right = anthropic.Anthropic(base_url=url, api_key="sk-ant-right", max_retries=0)
        assert right.messages.create(model="m", max_tokens=9, messages=MESSAGES).content
        wrong = anthropic.Anthropic(base_url=url, api_key="sk-ant-wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError):
            wrong.messages.create(model="m", max_tokens=9, messages=MESSAGES)
        with pytest.raises(anthropic.AuthenticationError):
            wrong.models.list()
        assert "claude-sonnet-4-5" in [m.id for m in right.models.list()]


def test_request_log_shows_the_key_and_the_body(http: httpx.Client) -> None:
    request = body(metadata={"user_id": "u-1"}, stream=True)
    http.post("/v1/messages", json=request, headers={**VERSION, "x-api-key": "sk-ant-upstream"})
    http.post("/v1/chat/completions", json={"model": "m", "messages": OPENAI_MESSAGES})
    messages, chat = http.get("/_mock/requests").json()
    assert messages["path"] == "/v1/messages" and messages["body"] == request
    headers = {name.lower(): value for name, value in messages["headers"]}
    assert headers["x-api-key"] == "sk-ant-upstream"
    assert headers["anthropic-version"] == "2023-06-01"
    assert chat["path"] == "/v1/chat/completions"
    routes = http.get("/_mock/stats").json()["routes"]
    assert routes == {"/v1/chat/completions": 1, "/v1/messages": 1}


def test_models_in_both_shapes(http: httpx.Client, client: anthropic.Anthropic) -> None:
    assert "claude-sonnet-4-5" in [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert http.get("/v1/messages").status_code == 405
