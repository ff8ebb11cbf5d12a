"""Anthropic Messages request → the canonical OpenAI chat request (sans-I/O).

The inbound direction of the Anthropic dialect: a client calling `POST /v1/messages` gets the
pipeline an OpenAI client gets, so its body becomes the canonical chat body here. It is decoded
with the Structs `anthropic_request` encodes (one set of Anthropic types), then *built* as an
OpenAI body: only fields with an OpenAI meaning are carried over.

Rules:
- `model`, `stream` kept; `max_tokens` is required, as Anthropic requires it (missing →
  `TranslationError("max_tokens: Field required")`), and becomes `max_tokens`. Streams ask
  for usage (`stream_options.include_usage`): the final `message_delta` reports it.
- `system` (a string or text blocks) → a first `system` message: a string, or text parts when
  there are several blocks or one has `cache_control`.
- Text blocks → text parts; a message that is one plain text block → a string. `cache_control`
  is kept on text parts (the extension `anthropic_request` reads, so a call routed back to an
  Anthropic upstream keeps its prompt caching). Images: base64 → a `data:<type>;base64,` URL,
  url → that URL, as `image_url` parts.
- User `tool_result` blocks → `tool` messages, put before the rest of their turn (OpenAI wants
  them right after the assistant's `tool_calls`); their content is a string or text/image
  parts. `is_error` has no OpenAI field and is dropped.
- Assistant text blocks → one `content` string; `tool_use` blocks → `tool_calls` (the input
  object's JSON as `arguments`).
- `tools` → function tools (`input_schema` → `parameters`); `tool_choice` auto/any/tool/none →
  auto/required/{function}/none; `disable_parallel_tool_use` → `parallel_tool_calls: false`.
- `stop_sequences` → `stop`; `temperature`, `top_p` kept; `top_k` dropped (OpenAI has none and
  refuses unknown parameters); `metadata.user_id` → `user`.
- Dropped: `thinking`, `service_tier`, `container`, `mcp_servers`, and every other field.
  Blocks other than text, image, tool_use and tool_result (documents, thinking, server tools)
  are refused with `TranslationError`, naming the field.
"""

from __future__ import annotations

from typing import Any

import msgspec

from circuitd.wire.anthropic_request import (
    Base64Source,
    Block,
    ImageBlock,
    MessagesRequest,
    TextBlock,
    ToolChoiceParam,
    ToolResultBlock,
    ToolUseBlock,
    TranslationError,
)

__all__ = [
    "InboundRequest",
    "TranslationError",
    "anthropic_request_to_openai",
    "count_tokens_request",
    "uncounted_text",
]

_decoder = msgspec.json.Decoder(MessagesRequest)
_object_decoder = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}

Json = dict[str, Any]


class InboundRequest(msgspec.Struct, frozen=True):
    """A translated request: the canonical body, and what the answer's translation needs."""

    body: bytes  # the OpenAI chat request
    model: str
    stop_sequences: tuple[str, ...]


def _text_part(block: TextBlock) -> Json:
    part: Json = {"type": "text", "text": block.text}
    if block.cache_control is not None:
        part["cache_control"] = block.cache_control
    return part


def _image_part(block: ImageBlock) -> Json:
    source = block.source
    if isinstance(source, Base64Source):
        url = f"data:{source.media_type};base64,{source.data}"
    else:
        url = source.url
    return {"type": "image_url", "image_url": {"url": url}}


def _content(blocks: list[TextBlock | ImageBlock]) -> str | list[Json]:
    """A string for one plain text block, else parts."""
    if len(blocks) == 1:
        only = blocks[0]
        if isinstance(only, TextBlock) and only.cache_control is None:
            return only.text
    return [_text_part(b) if isinstance(b, TextBlock) else _image_part(b) for b in blocks]


def _tool_message(block: ToolResultBlock) -> Json:
    content = block.content
    if content is None:
        text: str | list[Json] = ""
    elif isinstance(content, str):
        text = content
    else:
        text = _content(content) if content else ""
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}


def _user(blocks: list[Block], out: list[Json]) -> None:
    rest: list[TextBlock | ImageBlock] = []
    for block in blocks:
        if isinstance(block, ToolResultBlock):
            out.append(_tool_message(block))
        elif isinstance(block, ToolUseBlock):
            raise TranslationError("messages: tool_use blocks belong in assistant messages")
        else:
            rest.append(block)
    if rest:
        out.append({"role": "user", "content": _content(rest)})


def _assistant(blocks: list[Block], out: list[Json]) -> None:
    texts: list[str] = []
    calls: list[Json] = []
    for block in blocks:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            arguments = _encoder.encode(block.input).decode()
            calls.append(
                {
                    "id": block.id,
                    "type": "function",
                    "function": {"name": block.name, "arguments": arguments},
                }
            )
        else:
            kind = "image" if isinstance(block, ImageBlock) else "tool_result"
            raise TranslationError(f"messages: {kind} blocks belong in user messages")
    message: Json = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    out.append(message)


def _messages(request: MessagesRequest) -> list[Json]:
    out: list[Json] = []
    system = request.system
    if isinstance(system, str):
        if system:
            out.append({"role": "system", "content": system})
    elif system:
        out.append({"role": "system", "content": _content(list(system))})
    for message in request.messages:
        content = message.content
        blocks: list[Block] = [TextBlock(content)] if isinstance(content, str) else content
        if message.role == "user":
            _user(blocks, out)
        elif message.role == "assistant":
            _assistant(blocks, out)
        else:
            raise TranslationError(
                f"messages: role {message.role!r} is not supported; use 'user' or 'assistant'"
            )
    return out


def _tool_choice(choice: ToolChoiceParam) -> str | Json:
    if choice.type == "tool":
        if not choice.name:
            raise TranslationError("tool_choice: type 'tool' needs a name")
        return {"type": "function", "function": {"name": choice.name}}
    if choice.type not in _TOOL_CHOICES:
        raise TranslationError(f"tool_choice: type {choice.type!r} is not supported")
    return _TOOL_CHOICES[choice.type]


def _decode(body: bytes) -> MessagesRequest:
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "missing required field `max_tokens`" in text:
            raise TranslationError("max_tokens: Field required") from None
        raise TranslationError(f"Invalid request: {text}") from None
    except msgspec.DecodeError:
        raise TranslationError("Invalid request: the body is not valid JSON.") from None


def anthropic_request_to_openai(body: bytes) -> InboundRequest:
    """Translates a `/v1/messages` body into an OpenAI `chat/completions` body.

    Raises `TranslationError` (a 400) if the body is not a Messages request or asks for
    something the canonical request cannot say (see the module's rules).
    """
    request = _decode(body)
    if not request.model:
        raise TranslationError("model: a non-empty string is required")
    if request.max_tokens < 1:
        raise TranslationError("max_tokens: must be at least 1")
    if not request.messages:
        raise TranslationError("messages: at least one message is required")
    out: Json = {"model": request.model, "messages": _messages(request)}
    out["max_tokens"] = request.max_tokens
    if request.stop_sequences:
        out["stop"] = request.stop_sequences
    if request.temperature is not None:
        out["temperature"] = request.temperature
    if request.top_p is not None:
        out["top_p"] = request.top_p
    if request.tools:
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": tool.input_schema,
                },
            }
            for tool in request.tools
        ]
        choice = request.tool_choice
        if choice is not None:
            out["tool_choice"] = _tool_choice(choice)
            if choice.disable_parallel_tool_use and choice.type != "none":
                out["parallel_tool_calls"] = False
    if request.metadata is not None and request.metadata.user_id:
        out["user"] = request.metadata.user_id
    if request.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return InboundRequest(
        body=_encoder.encode(out),
        model=request.model,
        stop_sequences=tuple(request.stop_sequences or ()),
    )


def count_tokens_request(body: bytes) -> InboundRequest:
    """A `/v1/messages/count_tokens` body (a Messages request without `max_tokens`),
    translated as `anthropic_request_to_openai` translates a call."""
    try:
        data = _object_decoder.decode(body)
    except msgspec.DecodeError:
        raise TranslationError("Invalid request: the body is not a JSON object.") from None
    data.setdefault("max_tokens", 1)
    data.pop("stream", None)
    return anthropic_request_to_openai(_encoder.encode(data))


def uncounted_text(request: InboundRequest) -> str:
    """What `core.tokens.estimate_prompt_tokens` leaves out of a canonical request: the tool
    definitions and the assistant's tool call arguments, as JSON text."""
    data = _object_decoder.decode(request.body)
    texts = [_encoder.encode(data["tools"]).decode()] if "tools" in data else []
    for message in data["messages"]:
        for call in message.get("tool_calls") or ():
            function = call["function"]
            texts.append(function["name"] + " " + function["arguments"])
    return "\n".join(texts)
