"""The mock's Gemini dialect over real sockets, checked with the official `google-genai` SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from google import genai
from google.genai import errors as ge
from google.genai import types as gt

from circuitd.mockupstream.testing import running_mock_upstream
from tests.mockupstream.conftest import MESSAGES as OPENAI_MESSAGES

SYSTEM = "You are terse."
PROMPT = "Tell me about circuit breakers."
WEATHER = "What's the weather in Paris?"
GENERATE = "/v1beta/models/gemini-2.5-flash:generateContent"
STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
WEATHER_FUNCTION = gt.FunctionDeclaration(
    name="get_weather",
    description="The current weather at a place.",
    parameters_json_schema={
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
        },
        "required": ["location", "unit"],
    },
)
TOOLS = [
    gt.Tool(
        function_declarations=[
            WEATHER_FUNCTION,
            gt.FunctionDeclaration(name="get_time", parameters_json_schema={"type": "object"}),
        ]
    )
]
NO_AUTO_CALLS = gt.AutomaticFunctionCallingConfig(disable=True)


def client_for(url: str, key: str = "AIza-test") -> genai.Client:
    options = gt.HttpOptions(base_url=url, api_version="v1beta", retry_options=None)
    return genai.Client(api_key=key, http_options=options)


@pytest.fixture
def client(mock_url: str) -> genai.Client:
    return client_for(mock_url)


def config(**fields: Any) -> gt.GenerateContentConfig:
    mock = fields.pop("mock", None)
    if mock is not None:
        fields["http_options"] = gt.HttpOptions(extra_body={"mock": mock})
    return gt.GenerateContentConfig(**fields)


def body(text: str = PROMPT, **fields: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **fields}


def sse_data(raw: bytes) -> list[Any]:
    """The events' data, parsed (the raw text where it is not JSON)."""
    out: list[Any] = []
    for frame in raw.decode().split("\r\n\r\n"):
        if frame:
            data = frame.removeprefix("data: ")
            try:
                out.append(json.loads(data))
            except json.JSONDecodeError:
                out.append(data)
    return out


# -- JSON ----------------------------------------------------------------------------------------


def test_json_answer_matches_the_openai_route(client: genai.Client, mock_url: str) -> None:
    response = client.models.generate_content(
        model="gemini-2.5-flash", contents=PROMPT, config=config(system_instruction=SYSTEM)
    )
    [candidate] = response.candidates or []
    assert candidate.finish_reason == gt.FinishReason.STOP and candidate.index == 0
    assert response.model_version == "gemini-2.5-flash" and response.response_id
    # The same conversation in OpenAI's dialect: the same words and the same usage.
    sdk = openai.OpenAI(base_url=mock_url + "/v1", api_key="sk", max_retries=0)
    completion = sdk.chat.completions.create(model="m", messages=OPENAI_MESSAGES)
    assert response.text == completion.choices[0].message.content
    usage, expected = response.usage_metadata, completion.usage
    assert usage is not None and expected is not None
    assert usage.prompt_token_count == expected.prompt_tokens
    assert usage.candidates_token_count == expected.completion_tokens
    assert usage.total_token_count == expected.total_tokens


def test_max_output_tokens_cuts_the_text(client: genai.Client) -> None:
    response = client.models.generate_content(
        model="m", contents=PROMPT, config=config(max_output_tokens=3)
    )
    [candidate] = response.candidates or []
    assert candidate.finish_reason == gt.FinishReason.MAX_TOKENS
    assert len((response.text or "").split()) == 3
    assert response.usage_metadata and response.usage_metadata.candidates_token_count == 3


def test_v1_paths_and_key_in_the_query(http: httpx.Client) -> None:
    v1 = http.post("/v1/models/m:generateContent?key=AIza", json=body())
    v1beta = http.post("/v1beta/models/m:generateContent", json=body())
    assert v1.status_code == v1beta.status_code == 200
    assert v1.json()["candidates"] == v1beta.json()["candidates"]


# -- streams -------------------------------------------------------------------------------------


def test_stream_matches_json(client: genai.Client) -> None:
    whole = client.models.generate_content(model="m", contents=PROMPT)
    chunks = list(
        client.models.generate_content_stream(
            model="m", contents=PROMPT, config=config(mock={"chunks": 3})
        )
    )
    assert "".join(c.text or "" for c in chunks) == whole.text
    assert len(chunks) == 4  # three pieces, then the finish
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == gt.FinishReason.STOP
    assert last.usage_metadata == whole.usage_metadata


def test_stream_event_shape(http: httpx.Client) -> None:
    raw = http.post(STREAM, json=body(mock={"chunks": 2}))
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.content.endswith(b"\r\n\r\n") and b"[DONE]" not in raw.content
    events = sse_data(raw.content)
    assert len(events) == 3
    for event in events:
        gt.GenerateContentResponse.model_validate(event)
    assert [e["candidates"][0].get("finishReason") for e in events] == [None, None, "STOP"]
    assert set(events[0]["usageMetadata"]) == {
        "promptTokenCount",
        "totalTokenCount",
        "promptTokensDetails",
    }
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] > 0


def test_stream_with_latency_and_chunk_delays(client: genai.Client) -> None:
    mock = {"latency_ms": 1, "chunk_delay_ms": 1, "tokens": 6, "chunks": 3}
    chunks = list(
        client.models.generate_content_stream(model="m", contents=PROMPT, config=config(mock=mock))
    )
    assert [bool(c.text) for c in chunks] == [True, True, True, False]
    usage = chunks[-1].usage_metadata
    assert usage is not None and usage.candidates_token_count == 6


def test_streams_need_alt_sse(http: httpx.Client) -> None:
    response = http.post("/v1beta/models/m:streamGenerateContent", json=body())
    assert response.status_code == 400
    assert "alt=sse" in response.json()["error"]["message"]


# -- function calling ----------------------------------------------------------------------------


def test_function_call_json_and_stream(client: genai.Client) -> None:
    settings = config(tools=TOOLS, automatic_function_calling=NO_AUTO_CALLS)
    whole = client.models.generate_content(model="m", contents=WEATHER, config=settings)
    [call] = whole.function_calls or []
    assert call.name == "get_weather"
    assert call.args == {"location": "mock", "unit": "celsius"}  # the required properties
    assert whole.candidates and whole.candidates[0].finish_reason == gt.FinishReason.STOP
    [part] = (whole.candidates[0].content and whole.candidates[0].content.parts) or []
    assert part.thought_signature == b"mock-signature:get_weather"  # signed, as thinking models do
    chunks = list(
        client.models.generate_content_stream(model="m", contents=WEATHER, config=settings)
    )
    [streamed] = [c for chunk in chunks for c in chunk.function_calls or []]
    assert (streamed.name, streamed.args) == (call.name, call.args)
    assert chunks[-1].usage_metadata == whole.usage_metadata


def mode(mode: str, names: list[str] | None = None) -> dict[str, Any]:
    calling: dict[str, Any] = {"mode": mode}
    if names is not None:
        calling["allowedFunctionNames"] = names
    return {"functionCallingConfig": calling}


def tools_json() -> list[dict[str, Any]]:
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in TOOLS]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"toolConfig": mode("ANY", ["get_time"])}, "get_time"),
        ({"toolConfig": mode("ANY"), "contents": body()["contents"]}, "get_weather"),
        ({"toolConfig": mode("NONE")}, None),
        ({"toolConfig": mode("AUTO")}, "get_weather"),
        ({"contents": body()["contents"]}, None),  # no "weather": the model answers
        ({"contents": body()["contents"], "mock": {"tool_call": True}}, "get_weather"),
        ({"mock": {"tool_call": False}}, None),
        ({"tools": None}, None),
    ],
)
def test_when_a_function_is_called(
    http: httpx.Client, fields: dict[str, Any], expected: str | None
) -> None:
    request = {**body(WEATHER), "tools": tools_json(), **fields}
    answer = http.post(GENERATE, json={k: v for k, v in request.items() if v is not None}).json()
    [part] = answer["candidates"][0]["content"]["parts"]
    if expected is None:
        assert set(part) == {"text"}
    else:
        assert part["functionCall"]["name"] == expected


def test_after_the_function_response_the_answer_is_text(client: genai.Client) -> None:
    settings = config(tools=TOOLS, automatic_function_calling=NO_AUTO_CALLS)
    first = client.models.generate_content(model="m", contents=WEATHER, config=settings)
    [call] = first.function_calls or []
    history = [
        gt.Content(role="user", parts=[gt.Part(text=WEATHER)]),
        gt.Content(role="model", parts=[gt.Part(function_call=call)]),
        gt.Content(
            role="user",
            parts=[
                gt.Part.from_function_response(name=call.name or "", response={"output": "21C"})
            ],
        ),
    ]
    second = client.models.generate_content(model="m", contents=history, config=settings)
    assert second.function_calls is None and second.text


# -- errors and faults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exception", "name"),
    [
        (400, ge.ClientError, "INVALID_ARGUMENT"),
        (403, ge.ClientError, "PERMISSION_DENIED"),
        (404, ge.ClientError, "NOT_FOUND"),
        (429, ge.ClientError, "RESOURCE_EXHAUSTED"),
        (500, ge.ServerError, "INTERNAL"),
        (503, ge.ServerError, "UNAVAILABLE"),
        (504, ge.ServerError, "DEADLINE_EXCEEDED"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_status_faults_raise_the_sdk_errors(
    client: genai.Client, status: int, exception: type[ge.APIError], name: str, stream: bool
) -> None:
    settings = config(mock={"status": status})
    with pytest.raises(exception) as caught:
        if stream:
            list(client.models.generate_content_stream(model="m", contents=PROMPT, config=settings))
        else:
            client.models.generate_content(model="m", contents=PROMPT, config=settings)
    assert (caught.value.code, caught.value.status) == (status, name)
    assert caught.value.message


def test_a_429_tells_its_wait_in_the_body_not_in_a_header(http: httpx.Client) -> None:
    response = http.post(GENERATE, json=body(mock={"status": 429, "retry_after": 2}))
    assert response.status_code == 429 and "retry-after" not in response.headers
    assert response.json()["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}
    ]


@pytest.mark.parametrize(("after", "texts"), [(0, 0), (2, 2)])
def test_error_event_raises_in_the_sdk(client: genai.Client, after: int, texts: int) -> None:
    seen: list[str] = []
    settings = config(mock={"error_event_after": after, "chunks": 5})
    with pytest.raises(ge.ServerError) as caught:
        for chunk in client.models.generate_content_stream(
            model="m", contents=PROMPT, config=settings
        ):
            seen.append(chunk.text or "")  # noqa: PERF401 - keep what came before the error
    assert len(seen) == texts
    assert (caught.value.code, caught.value.status) == (503, "UNAVAILABLE")
    assert caught.value.message == "The model is overloaded. Please try again later."


def test_error_event_frames(http: httpx.Client) -> None:
    raw = http.post(
        STREAM, json=body(mock={"error_event_after": 1, "chunks": 3, "message": "later"})
    )
    assert raw.status_code == 200
    events = sse_data(raw.content)
    assert len(events) == 2 and "candidates" in events[0]
    assert events[1] == {"error": {"code": 503, "message": "later", "status": "UNAVAILABLE"}}


def test_cut_and_malformed_streams(http: httpx.Client) -> None:
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", STREAM, json=body(mock={"cut_after": 2})) as response,
    ):
        for data in response.iter_raw():
            received += data
    assert len(sse_data(received)) == 2
    events = sse_data(
        http.post(STREAM, json=body(mock={"malformed_after": 1, "chunks": 2})).content
    )
    assert events[1] == "{not json" and len(events) == 4
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"


def test_omit_usage_leaves_usage_metadata_out(client: genai.Client, http: httpx.Client) -> None:
    response = client.models.generate_content(
        model="m", contents=PROMPT, config=config(mock={"omit_usage": True})
    )
    assert response.usage_metadata is None and response.text
    events = sse_data(http.post(STREAM, json=body(mock={"omit_usage": True})).content)
    assert all("usageMetadata" not in e for e in events)


def test_fault_queue_applies_to_generate(http: httpx.Client) -> None:
    http.post("/_mock/faults", json={"fault": {"status": 503}, "count": 2})
    statuses = [http.post(GENERATE, json=body()).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    stats = http.get("/_mock/stats").json()
    assert stats["routes"] == {"/v1beta/models/gemini-2.5-flash:generateContent": 3}
    assert stats["statuses"] == {"200": 1, "503": 2}


# -- validation, keys, the log -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"contents": [', "Invalid JSON payload received."),
        (b"{}", "contents is not specified"),
        (json.dumps({"contents": [{"role": "user", "parts": []}]}).encode(), "must not be empty"),
        (
            json.dumps({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}).encode(),
            "Please use a valid role: user, model.",
        ),
        (json.dumps(body(toolConfig=mode("SOMETIMES"))).encode(), '"SOMETIMES"'),
        (json.dumps(body(mock={"stal": 1})).encode(), "unknown field `stal`"),
    ],
)
def test_invalid_requests_get_gemini_400s(http: httpx.Client, content: bytes, message: str) -> None:
    response = http.post(GENERATE, content=content)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert message in error["message"]


def test_require_key() -> None:
    with running_mock_upstream(require_key="AIza-right") as url, httpx.Client(base_url=url) as http:
        assert (
            http.post(GENERATE, json=body(), headers={"x-goog-api-key": "AIza-right"}).status_code
            == 200
        )
        assert http.post(GENERATE + "?key=AIza-right", json=body()).status_code == 200
        missing = http.post(GENERATE, json=body())
        assert missing.status_code == 403
        assert missing.json()["error"]["status"] == "PERMISSION_DENIED"
        assert "models" in http.get("/v1beta/models?key=AIza-right").json()
        right = client_for(url, "AIza-right")
        assert right.models.generate_content(model="m", contents=PROMPT).text
        wrong = client_for(url, "AIza-wrong")  # kept: a dropped Client closes its connection
        with pytest.raises(ge.ClientError) as caught:
            wrong.models.generate_content(model="m", contents=PROMPT)
        assert caught.value.code == 400 and caught.value.message == (
            "API key not valid. Please pass a valid API key."
        )
        assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_request_log_shows_the_key_and_the_body(http: httpx.Client) -> None:
    request = body(generationConfig={"temperature": 0.5})
    http.post(STREAM, json=request, headers={"x-goog-api-key": "AIza-upstream"})
    [seen] = http.get("/_mock/requests").json()
    assert seen["path"] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert seen["body"] == request
    headers = {name.lower(): value for name, value in seen["headers"]}
    assert headers["x-goog-api-key"] == "AIza-upstream"


def test_models_list(http: httpx.Client) -> None:
    names = [m["name"] for m in http.get("/v1beta/models").json()["models"]]
    assert "models/gemini-2.5-flash" in names
    assert http.get(GENERATE).status_code == 404
