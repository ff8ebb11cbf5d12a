"""The mock's Anthropic Messages dialect, request side (sans-I/O): checks and replies.

`POST /v1/messages` answers with the same words as the OpenAI route for the same
conversation: the request is viewed as a chat (`prompt_view`: the top-level `system` first,
then the turns; `tool_result` blocks become `tool` turns, as OpenAI has them) and handed to
`script.plan_completion`. So `input_tokens` is the OpenAI route's `prompt_tokens` and
`output_tokens` its `completion_tokens`; `max_tokens` cuts the text (stop_reason
"max_tokens"). `anthropic_render` writes the answers.

Rules:
- `decode_request` checks what Anthropic checks and raises `RequestError` with a message in
  its style (`field: problem`): `model`, `messages` (non-empty, roles user/assistant) and
  `max_tokens` (>= 1) are required; `tool_choice` {"type": "tool"} must name a given tool.
  Unknown fields are ignored (the request log keeps them).
- Tool use (`plan_reply`): with `tools`, the answer is one `tool_use` block (stop_reason
  "tool_use") when `tool_choice` is "any" or "tool" (that tool), or when it is "auto"/absent
  and the last turn is the user's text mentioning "weather"; never with "none". The fault's
  `tool_call` overrides both ways. The tool is the named one, else the first; its `input` is
  made from its `input_schema`: each required property (all of them if none is required)
  gets its `default`, else its first `enum` value, else by type "mock", 1, true, [] or {}
  (objects recursively). `output_tokens` is the input JSON's length / 4, at least 1. A tool
  call ignores `max_tokens`. Streamed, the input comes as `input_json_delta`s: first an
  empty one, as Anthropic sends, then the JSON in pieces of 12 characters (or in at most
  `chunks` pieces).
- Not modelled: `stop_sequences`, thinking, images (their text is not counted), citations,
  server tools, several tool calls in one answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from circuitd.mockupstream.faults import Fault
from circuitd.mockupstream.script import Completion, mentions_weather, plan_completion

__all__ = [
    "MessagesRequest",
    "PromptView",
    "Reply",
    "RequestError",
    "ToolCall",
    "call_reply",
    "decode_request",
    "example_input",
    "plan_reply",
    "prompt_view",
]

JSON_PIECE = 12  # characters of tool input per input_json_delta, unless `chunks` says

# -- requests --------------------------------------------------------------------------------


class RequestError(ValueError):
    """A request Anthropic would refuse with 400 invalid_request_error."""


class MessageParam(msgspec.Struct, frozen=True):
    role: str
    content: str | list[dict[str, Any]]


class ToolParam(msgspec.Struct, frozen=True):
    name: str
    input_schema: dict[str, Any] | None = None
    description: str | None = None


class ToolChoice(msgspec.Struct, frozen=True):
    type: str
    name: str | None = None


class MessagesRequest(msgspec.Struct, frozen=True):
    """The fields the mock reads; the rest of the body is ignored (and kept in the log)."""

    model: str
    messages: list[MessageParam]
    max_tokens: int
    system: str | list[dict[str, Any]] | None = None
    stream: bool | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    mock: Fault | None = None


_decoder = msgspec.json.Decoder(MessagesRequest)
_MISSING = re.compile(r"missing required field `(\w+)`")
_AT = re.compile(r" - at `\$\.?(.*)`$")
_TOOL_CHOICES = ("auto", "any", "tool", "none")


def _path(raw: str) -> str:
    """`messages[0].role` (msgspec) → `messages.0.role` (Anthropic)."""
    return re.sub(r"\[(\d+)\]", r".\1", raw)


def decode_request(body: bytes) -> MessagesRequest:
    try:
        request = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        at = _AT.search(text)
        where = _path(at.group(1)) if at else ""
        missing = _MISSING.search(text)
        if missing:
            field = f"{where}.{missing.group(1)}" if where else missing.group(1)
            raise RequestError(f"{field}: Field required") from None
        problem = text[: at.start()] if at else text
        raise RequestError(f"{where}: {problem}" if where else problem) from None
    except msgspec.DecodeError:
        raise RequestError("There was an error parsing the body of your request.") from None
    if not request.messages:
        raise RequestError("messages: at least one message is required")
    for i, message in enumerate(request.messages):
        if message.role not in ("user", "assistant"):
            raise RequestError(f"messages.{i}.role: Input should be 'user' or 'assistant'")
    if request.max_tokens < 1:
        raise RequestError("max_tokens: Input should be greater than or equal to 1")
    choice = request.tool_choice
    if choice is not None:
        if choice.type not in _TOOL_CHOICES:
            raise RequestError(f"tool_choice.type: Input should be one of {_TOOL_CHOICES}")
        names = [tool.name for tool in request.tools or ()]
        if choice.type == "tool" and choice.name not in names:
            raise RequestError(f"tool_choice.name: tool {choice.name!r} was not provided")
    return request


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # user, assistant, system, or tool (a tool_result block)
    content: object


@dataclass(frozen=True, slots=True)
class PromptView:
    """A Messages request as `script.ChatRequestLike`: what the plan reads."""

    messages: list[Turn]
    max_tokens: int | None
    max_completion_tokens: int | None = None


def prompt_view(request: MessagesRequest) -> PromptView:
    turns = [Turn("system", request.system)] if request.system else []
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            turns.append(Turn(message.role, content))
            continue
        results = [b for b in content if b.get("type") == "tool_result"]
        turns.extend(Turn("tool", b.get("content")) for b in results)
        rest = [b for b in content if b.get("type") != "tool_result"]
        if rest or not results:
            turns.append(Turn(message.role, rest))
    return PromptView(turns, request.max_tokens)


# -- replies ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: bytes  # the input object's JSON
    pieces: list[str]  # the input_json_delta fragments, the leading "" included


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer: a text plan or a tool call, and its usage."""

    text: Completion | None
    tool: ToolCall | None
    input_tokens: int
    output_tokens: int
    stop_reason: str

    @property
    def deltas(self) -> list[str]:
        if self.tool is not None:
            return self.tool.pieces
        assert self.text is not None
        return self.text.pieces


def _example(schema: object) -> object:
    if not isinstance(schema, dict):
        return "mock"
    if "default" in schema:
        return schema["default"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or (kind is None and "properties" in schema):
        return example_input(schema)
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "null": None}.get(
        str(kind), "mock"
    )


def example_input(schema: dict[str, Any] | None) -> dict[str, Any]:
    """A tool `input` that satisfies the plain parts of a JSON schema (see the rules)."""
    properties = (schema or {}).get("properties")
    if not isinstance(properties, dict):
        return {}
    required = (schema or {}).get("required")
    names = [n for n in properties if n in required] if isinstance(required, list) else []
    return {name: _example(properties[name]) for name in names or properties}


def _pieces(text: str, chunks: int | None) -> list[str]:
    # `chunks`: a ceiling division, so that there are at most that many pieces
    size = JSON_PIECE if chunks is None else max(1, -(-len(text) // chunks))
    return ["", *(text[i : i + size] for i in range(0, len(text), size))]


def _tool(request: MessagesRequest, view: PromptView, force: bool | None) -> ToolParam | None:
    """The tool to call, if the answer is a tool call."""
    tools, choice = request.tools, request.tool_choice
    if not tools or force is False:
        return None
    kind = choice.type if choice is not None else "auto"
    if kind == "tool" and choice is not None:
        return next(t for t in tools if t.name == choice.name)
    if force or kind == "any":
        return tools[0]
    if kind == "none":
        return None
    return tools[0] if mentions_weather(view.messages) else None


_encode = msgspec.json.Encoder().encode


def plan_reply(request: MessagesRequest, fault: Fault) -> Reply:
    view = prompt_view(request)
    tool = _tool(request, view, fault.tool_call)
    plan = plan_completion(view, tokens=fault.tokens, chunks=fault.chunks)
    if tool is None:
        stop = "max_tokens" if plan.finish_reason == "length" else "end_turn"
        return Reply(plan, None, plan.prompt_tokens, plan.completion_tokens, stop)
    return call_reply(tool.name, tool.input_schema, plan, "tool_use", fault.chunks)


def call_reply(
    name: str, schema: dict[str, Any] | None, plan: Completion, stop_reason: str, chunks: int | None
) -> Reply:
    """A tool call answer (any dialect): the input made from `schema`, its output tokens
    the input JSON's length / 4, at least 1."""
    arguments = _encode(example_input(schema))
    call = ToolCall(name, arguments, _pieces(arguments.decode(), chunks))
    return Reply(None, call, plan.prompt_tokens, max(1, (len(arguments) + 3) // 4), stop_reason)
