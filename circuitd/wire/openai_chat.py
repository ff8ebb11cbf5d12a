"""The OpenAI chat shapes every dialect translator shares (sans-I/O).

The canonical wire is OpenAI's, so each provider dialect (`wire.anthropic_*`,
`wire.gemini_*`) reads the same request and writes the same answers:

- request side: `ChatRequest`, a view of the chat request with the fields any translator
  reads (the union: each translator ignores what its dialect has no use for), and helpers for
  what every translation does the same way: base64 data URLs, tool call arguments, the
  normalised `tool_choice`;
- answer side: the `chat.completion` Structs (`Completion`, `Choice`, `AssistantMessage`,
  `ToolCall`, `OpenAIUsage`), and the chunk Structs with `chunk_head`, the shared prefix of
  every `chat.completion.chunk` of one stream.

`TranslationError` is the one error of a request a dialect cannot express (answered 400).
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "DONE",
    "ROLE_CHUNK",
    "AssistantMessage",
    "AssistantToolCall",
    "ChatMessage",
    "ChatRequest",
    "Choice",
    "ChoiceChunk",
    "Completion",
    "CompletionTokensDetails",
    "ContentPart",
    "Delta",
    "Function",
    "FunctionDelta",
    "OpenAIUsage",
    "PromptTokensDetails",
    "StreamError",
    "ToolCall",
    "ToolCallDelta",
    "TranslationError",
    "chunk_head",
    "decode_chat_request",
    "error_family",
    "parse_data_url",
    "tool_arguments",
    "tool_choice",
]

DONE = "[DONE]"


class TranslationError(ValueError):
    """The OpenAI request cannot be expressed in the provider's dialect (answer 400)."""


class StreamError(Exception):
    """An upstream stream reported an error in-stream or broke its event protocol.

    `error_type`: the provider's name for the error (`invalid_stream` when the events
    themselves are broken); `status`: the HTTP status the error stands for, where the event
    says it (Gemini's `error.code`), else None (the adapter maps `error_type`)."""

    def __init__(self, error_type: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.status = status


# --- the request: just the fields that some dialect translates -----------------------------


class ImageURL(msgspec.Struct, frozen=True):
    url: str
    detail: str | None = None


class InputAudio(msgspec.Struct, frozen=True):
    data: str = ""
    format: str = ""


class ContentPart(msgspec.Struct, frozen=True):
    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: ImageURL | str | None = None
    input_audio: InputAudio | None = None
    cache_control: dict[str, Any] | None = None


class CalledFunction(msgspec.Struct, frozen=True):
    name: str
    arguments: str = ""


class AssistantToolCall(msgspec.Struct, frozen=True):
    id: str
    function: CalledFunction
    type: str = "function"
    extra_content: dict[str, Any] | None = None  # provider extras (Gemini: thought signature)


class ChatMessage(msgspec.Struct, frozen=True):
    role: str
    content: str | list[ContentPart] | None = None
    tool_calls: list[AssistantToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class FunctionDef(msgspec.Struct, frozen=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolDef(msgspec.Struct, frozen=True):
    type: str
    function: FunctionDef | None = None


class NamedFunction(msgspec.Struct, frozen=True):
    name: str


class ToolChoiceObject(msgspec.Struct, frozen=True):
    type: str
    function: NamedFunction | None = None


class JSONSchemaFormat(msgspec.Struct, frozen=True):
    name: str | None = None
    schema: dict[str, Any] | None = None


class ResponseFormat(msgspec.Struct, frozen=True):
    type: str
    json_schema: JSONSchemaFormat | None = None


class ChatRequest(msgspec.Struct, frozen=True):
    messages: list[ChatMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # not OpenAI's; some clients send it for other providers
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stream: bool | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    tools: list[ToolDef] | None = None
    tool_choice: str | ToolChoiceObject | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None

    @property
    def output_limit(self) -> int | None:
        """`max_completion_tokens`, else the older `max_tokens`."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    @property
    def stop_list(self) -> list[str] | None:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return stop or None


_request_decoder = msgspec.json.Decoder(ChatRequest)
_arguments_decoder = msgspec.json.Decoder(dict[str, Any])


def decode_chat_request(body: bytes) -> ChatRequest:
    try:
        return _request_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise TranslationError(f"Invalid chat request: {exc}") from None


def parse_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:<type>;base64,<data>` URL; None if `url` is not
    a data URL; `TranslationError` if it is one in another form."""
    if not url[:5].lower().startswith("data:"):
        return None
    header, comma, data = url[5:].partition(",")
    params = header.split(";")
    if not comma or params[-1].lower() != "base64" or not params[0]:
        raise TranslationError("image_url data URLs must look like data:<media type>;base64,<data>")
    return params[0].lower(), data


def tool_arguments(call: AssistantToolCall) -> dict[str, Any]:
    """An assistant tool call's arguments as an object (empty arguments: `{}`)."""
    arguments = call.function.arguments
    try:
        return _arguments_decoder.decode(arguments) if arguments.strip() else {}
    except msgspec.DecodeError:
        raise TranslationError(
            f"tool call {call.id!r}: function.arguments must be a JSON object"
        ) from None


def tool_choice(choice: str | ToolChoiceObject | None) -> tuple[str, str | None] | None:
    """`tool_choice` as ("auto" | "none" | "required" | "function", function name), or None
    when the request sets none."""
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise TranslationError(f"tool_choice {choice!r} is not supported")
        return choice, None
    if choice.type == "function" and choice.function is not None:
        return "function", choice.function.name
    raise TranslationError(f"tool_choice of type {choice.type!r} is not supported")


def function_defs(tools: list[ToolDef] | None) -> list[FunctionDef]:
    """The request's function tools (other tool types: `TranslationError`)."""
    out: list[FunctionDef] = []
    for tool in tools or ():
        if tool.type != "function" or tool.function is None:
            raise TranslationError(f"tools of type {tool.type!r} are not supported")
        out.append(tool.function)
    return out


def error_family(status: int) -> str:
    """The OpenAI error `type` for an upstream status when its body says nothing better."""
    if status == 429:
        return "rate_limit_exceeded"
    return "invalid_request_error" if 400 <= status < 500 else "server_error"


# --- chat.completion ---------------------------------------------------------------------


class PromptTokensDetails(msgspec.Struct):
    cached_tokens: int


class CompletionTokensDetails(msgspec.Struct):
    reasoning_tokens: int


class OpenAIUsage(msgspec.Struct, omit_defaults=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails | None = None


class Function(msgspec.Struct):
    name: str
    arguments: str


class ToolCall(msgspec.Struct, kw_only=True):
    id: str
    type: str = "function"
    function: Function
    extra_content: dict[str, Any] | UnsetType = UNSET  # UNSET: left out of the JSON


class AssistantMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    # No defaults but `tool_calls`: the rest is always encoded, nulls included.
    role: str
    content: str | None
    refusal: None
    tool_calls: list[ToolCall] | None = None


class Choice(msgspec.Struct, kw_only=True):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: str | None


class Completion(msgspec.Struct, kw_only=True):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: OpenAIUsage | None


# --- chat.completion.chunk -----------------------------------------------------------------


class FunctionDelta(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    index: int
    id: str | None = None
    type: str | None = None
    function: FunctionDelta
    extra_content: dict[str, Any] | None = None


class Delta(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChoiceChunk(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: Delta
    logprobs: None = None
    finish_reason: str | None = None


ROLE_CHUNK = ChoiceChunk(delta=Delta(role="assistant", content=""))
_encoder = msgspec.json.Encoder()


def chunk_head(id: str, created: int, model: str) -> bytes:
    """`{"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":[`: a
    stream's chunks differ only after it (choices, then `]}` or `],"usage":…}`)."""
    return b"".join(
        (
            b'{"id":',
            _encoder.encode(id),
            b',"object":"chat.completion.chunk","created":',
            str(created).encode(),
            b',"model":',
            _encoder.encode(model),
            b',"choices":[',
        )
    )
