"""The mock's Gemini dialect, request side (sans-I/O): checks and replies.

`POST /v1beta/models/{model}:generateContent` (and `:streamGenerateContent?alt=sse`; `/v1/`
too) answers with the same words as the OpenAI route for the same conversation: the request
is viewed as a chat (`prompt_view`: `systemInstruction` first, then the contents, role
"model" as "assistant", `functionResponse` parts as `tool` turns) and handed to
`script.plan_completion`. So `promptTokenCount` is the OpenAI route's `prompt_tokens` and
`candidatesTokenCount` its `completion_tokens`; `generationConfig.maxOutputTokens` cuts the
text (finishReason MAX_TOKENS). `gemini_render` writes the answers.

Rules:
- `decode_request` checks what Gemini checks and raises `RequestError` with a message in
  its style: `contents` is required and non-empty, every content has parts, roles are
  "user" or "model" (or absent). Unknown fields are ignored (the request log keeps them).
- Function calling (`plan_reply`): with `functionDeclarations`, the answer is one
  `functionCall` (finishReason STOP, as Gemini answers a call) when
  `toolConfig.functionCallingConfig.mode` is ANY (the first of `allowedFunctionNames`, else
  the first function), or AUTO/absent and the last turn is the user's text mentioning
  "weather"; never with NONE. The fault's `tool_call` overrides both ways. `args` are made
  from `parametersJsonSchema` (or `parameters_json_schema`, else `parameters`) as the
  Anthropic dialect makes its tool input (`anthropic.call_reply`); `candidatesTokenCount`
  is the args JSON's length / 4, at least 1. A call ignores `maxOutputTokens`.
- Not modelled: several candidates, `stopSequences`, thinking, images (their bytes are not
  counted), safety blocks, several function calls in one answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from circuitd.mockupstream import gemini_render
from circuitd.mockupstream.anthropic import Reply, Turn, call_reply
from circuitd.mockupstream.faults import Fault
from circuitd.mockupstream.script import mentions_weather, plan_completion

__all__ = [
    "GenerateContentRequest",
    "RequestError",
    "decode_request",
    "key_problem",
    "plan_reply",
    "prompt_view",
    "route",
]

_ROUTE = re.compile(
    r"^/(v1|v1beta|v1alpha)/models/([^/:]+):(generateContent|streamGenerateContent)$"
)


def route(path: str) -> tuple[str, bool] | None:
    """(model, stream) for a generate path, else None."""
    match = _ROUTE.match(path)
    if match is None:
        return None
    return match.group(2), match.group(3) == "streamGenerateContent"


def key_problem(
    headers: dict[bytes, bytes], query: str, api_key: bytes | None
) -> tuple[int, bytes] | None:
    """Gemini's refusal (status, body) of the request's key, or None: the key comes in
    `x-goog-api-key` or as `?key=`; a missing one is a 403, a wrong one a 400 API_KEY_INVALID."""
    if api_key is None:
        return None
    key = headers.get(b"x-goog-api-key")
    if key is None:
        params = dict(p.partition("=")[::2] for p in query.split("&"))
        key = params["key"].encode() if "key" in params else None
    if key is None:
        return 403, gemini_render.error_body(403, gemini_render.UNREGISTERED)
    return None if key == api_key else (400, gemini_render.bad_key_body())


class RequestError(ValueError):
    """A request Gemini would refuse with 400 INVALID_ARGUMENT."""


class Content(msgspec.Struct, frozen=True):
    parts: list[dict[str, Any]] = []
    role: str | None = None


class FunctionDeclaration(msgspec.Struct, frozen=True, rename="camel"):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    parameters_json_schema: dict[str, Any] | None = None
    # Google's JSON parser takes proto field names too; google-genai sends this one so.
    snake_json_schema: dict[str, Any] | None = msgspec.field(
        default=None, name="parameters_json_schema"
    )

    @property
    def schema(self) -> dict[str, Any] | None:
        return self.parameters_json_schema or self.snake_json_schema or self.parameters


class Tool(msgspec.Struct, frozen=True, rename="camel"):
    function_declarations: list[FunctionDeclaration] = []


class FunctionCallingConfig(msgspec.Struct, frozen=True, rename="camel"):
    mode: str = "AUTO"
    allowed_function_names: list[str] | None = None


class ToolConfig(msgspec.Struct, frozen=True, rename="camel"):
    function_calling_config: FunctionCallingConfig = FunctionCallingConfig()


class GenerationConfig(msgspec.Struct, frozen=True, rename="camel"):
    max_output_tokens: int | None = None


class GenerateContentRequest(msgspec.Struct, frozen=True, rename="camel"):
    """The fields the mock reads; the rest of the body is ignored (and kept in the log)."""

    contents: list[Content] = []
    system_instruction: Content | None = None
    tools: list[Tool] | None = None
    tool_config: ToolConfig | None = None
    generation_config: GenerationConfig | None = None
    mock: Fault | None = None


_decoder = msgspec.json.Decoder(GenerateContentRequest)
_AT = re.compile(r" - at `\$\.?(.*)`$")
_MODES = ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED")


def decode_request(body: bytes) -> GenerateContentRequest:
    try:
        request = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        at = _AT.search(text)
        problem = text[: at.start()] if at else text
        where = f" at '{at.group(1)}'" if at else ""
        raise RequestError(f"Invalid value{where}: {problem}") from None
    except msgspec.DecodeError:
        raise RequestError("Invalid JSON payload received. Unexpected token.") from None
    if not request.contents:
        raise RequestError("* GenerateContentRequest.contents: contents is not specified")
    for i, content in enumerate(request.contents):
        if not content.parts:
            raise RequestError(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            )
        if content.role not in (None, "user", "model"):
            raise RequestError("Please use a valid role: user, model.")
    mode = request.tool_config.function_calling_config.mode if request.tool_config else "AUTO"
    if mode not in _MODES:
        raise RequestError(
            "Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/"
            f'google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), "{mode}"'
        )
    return request


@dataclass(frozen=True, slots=True)
class PromptView:
    """A Gemini request as `script.ChatRequestLike`: what the plan reads."""

    messages: list[Turn]
    max_tokens: int | None
    max_completion_tokens: int | None = None


def _tool_output(part: dict[str, Any]) -> object:
    response = part["functionResponse"]
    if isinstance(response, dict) and isinstance(response.get("response"), dict):
        return response["response"].get("output", "")
    return ""


def prompt_view(request: GenerateContentRequest) -> PromptView:
    system = request.system_instruction
    turns = [Turn("system", system.parts)] if system is not None and system.parts else []
    for content in request.contents:
        role = "assistant" if content.role == "model" else "user"
        results = [p for p in content.parts if "functionResponse" in p]
        turns.extend(Turn("tool", _tool_output(p)) for p in results)
        rest = [p for p in content.parts if "functionResponse" not in p]
        if rest or not results:
            turns.append(Turn(role, rest))
    config = request.generation_config
    return PromptView(turns, config.max_output_tokens if config else None)


def _function(
    request: GenerateContentRequest, view: PromptView, force: bool | None
) -> FunctionDeclaration | None:
    """The function to call, if the answer is a function call."""
    functions = [f for tool in request.tools or () for f in tool.function_declarations]
    if not functions or force is False:
        return None
    config = request.tool_config.function_calling_config if request.tool_config else None
    mode = config.mode if config is not None else "AUTO"
    if mode == "ANY" or force:
        allowed = (config.allowed_function_names or []) if config is not None else []
        return next((f for f in functions if f.name in allowed), functions[0])
    if mode == "NONE":
        return None
    return functions[0] if mentions_weather(view.messages) else None


def plan_reply(request: GenerateContentRequest, fault: Fault) -> Reply:
    """What to answer; `stop_reason` is Gemini's finishReason."""
    view = prompt_view(request)
    function = _function(request, view, fault.tool_call)
    plan = plan_completion(view, tokens=fault.tokens, chunks=fault.chunks)
    if function is None:
        finish = "MAX_TOKENS" if plan.finish_reason == "length" else "STOP"
        return Reply(plan, None, plan.prompt_tokens, plan.completion_tokens, finish)
    return call_reply(function.name, function.schema, plan, "STOP", fault.chunks)
