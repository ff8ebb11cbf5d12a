"""OpenAI chat request → Anthropic Messages request (sans-I/O).

The canonical request is OpenAI's; an Anthropic deployment needs it rewritten as a
`POST /v1/messages` body. Only fields with an Anthropic meaning are carried over; the body is
*built*, not patched, because Anthropic rejects fields it does not know.

Rules:
- `system` and `developer` messages, wherever they are, are hoisted into the top-level
  `system`: one text → a string; several → a list of text blocks (in order).
- `user`/`assistant` messages keep their order; consecutive messages of the same role are
  merged into one (Anthropic wants alternating roles). `tool` messages become `tool_result`
  blocks of a user message, so results following one assistant turn merge into one message;
  inside a user message `tool_result` blocks are put first, as Anthropic requires.
- Content parts: `text` → text block (its `cache_control`, an Anthropic extension some
  OpenAI clients send, is kept); `image_url` with a `data:<type>;base64,` URL → a base64 image
  source, with an http(s) URL → a URL image source (`detail` is dropped); `refusal` parts of
  assistant messages → text. Other part types (audio, files) raise `TranslationError`.
- Assistant `tool_calls` → `tool_use` blocks (the arguments JSON string becomes the input
  object; it must be a JSON object). Empty text is dropped; a message left empty is dropped.
- `tools` (type `function`) → `{name, description, input_schema}`; `tool_choice`
  auto/none/required/{function} → auto/none/any/{tool}; `parallel_tool_calls: false` →
  `disable_parallel_tool_use`. A `tool_choice` without `tools` is dropped.
- `max_completion_tokens`, else `max_tokens`, else the caller's default → `max_tokens`
  (required by Anthropic). `stop` (string or list) → `stop_sequences`. `temperature`, `top_p`
  (and the non-OpenAI `top_k`) pass through unchanged: OpenAI allows temperature up to 2,
  Anthropic up to 1, and the upstream's 400 says so better than a silent clamp would.
- `user` (or `metadata.user`) → `metadata.user_id`; other metadata keys are dropped.
- `n` > 1 raises `TranslationError` (Anthropic returns one choice).
- Dropped: `logprobs`, `top_logprobs`, `presence_penalty`, `frequency_penalty`, `logit_bias`,
  `seed`, `response_format` (a JSON schema could become a forced tool; not done),
  `stream_options` (Anthropic streams always carry usage), `store`, `service_tier`,
  `reasoning_effort`, `modalities`, `audio`, `prediction`, message `name`s, and any
  other field.
"""

from __future__ import annotations

from typing import Any

import msgspec

from circuitd.wire.openai_chat import (
    AssistantToolCall,
    ChatMessage,
    ChatRequest,
    ContentPart,
    TranslationError,
    decode_chat_request,
    function_defs,
    parse_data_url,
    tool_arguments,
    tool_choice,
)

__all__ = ["TranslationError", "openai_request_to_anthropic"]


# --- the Anthropic side --------------------------------------------------------------------


class TextBlock(msgspec.Struct, tag="text", tag_field="type", omit_defaults=True):
    text: str
    cache_control: dict[str, Any] | None = None


class Base64Source(msgspec.Struct, tag="base64", tag_field="type"):
    media_type: str
    data: str


class URLSource(msgspec.Struct, tag="url", tag_field="type"):
    url: str


class ImageBlock(msgspec.Struct, tag="image", tag_field="type", omit_defaults=True):
    source: Base64Source | URLSource
    cache_control: dict[str, Any] | None = None


class ToolUseBlock(msgspec.Struct, tag="tool_use", tag_field="type"):
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(msgspec.Struct, tag="tool_result", tag_field="type", omit_defaults=True):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] | None = None


Block = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock


class MessageParam(msgspec.Struct):
    role: str
    content: str | list[Block]


class ToolParam(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    description: str | None = None
    input_schema: dict[str, Any]


class ToolChoiceParam(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class MetadataParam(msgspec.Struct):
    user_id: str | None = None  # optional in an inbound request (`anthropic_inbound`)


class MessagesRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    model: str
    max_tokens: int
    system: str | list[TextBlock] | None = None
    messages: list[MessageParam]
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stream: bool = False
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    metadata: MetadataParam | None = None


_encoder = msgspec.json.Encoder()
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_TOOL_CHOICES = {"auto": "auto", "none": "none", "required": "any", "function": "tool"}


def _image_source(url: str) -> Base64Source | URLSource:
    inline = parse_data_url(url)
    if inline is not None:
        return Base64Source(media_type=inline[0], data=inline[1])
    if url[:8].lower().startswith(("http://", "https://")):
        return URLSource(url=url)
    raise TranslationError("image_url must be an http(s) URL or a base64 data URL")


def _part(part: ContentPart, role: str) -> TextBlock | ImageBlock | None:
    if part.type == "text":
        if not part.text:
            return None
        return TextBlock(part.text, part.cache_control)
    if part.type == "refusal" and role == "assistant":
        return TextBlock(part.refusal) if part.refusal else None
    if part.type == "image_url" and role in ("user", "tool"):
        image = part.image_url
        if image is None:
            raise TranslationError("an image_url content part needs its image_url")
        url = image if isinstance(image, str) else image.url
        return ImageBlock(_image_source(url), part.cache_control)
    raise TranslationError(f"content parts of type {part.type!r} are not supported in {role!r}")


def _blocks(content: str | list[ContentPart] | None, role: str) -> list[Block]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextBlock(content)] if content else []
    blocks: list[Block] = []
    for part in content:
        block = _part(part, role)
        if block is not None:
            blocks.append(block)
    return blocks


def _system_texts(message: ChatMessage, out: list[TextBlock]) -> None:
    content = message.content
    if isinstance(content, str):
        if content:
            out.append(TextBlock(content))
        return
    for part in content or ():
        if part.type != "text":
            raise TranslationError(f"{message.role} messages may only contain text parts")
        if part.text:
            out.append(TextBlock(part.text, part.cache_control))


def _tool_use(call: AssistantToolCall) -> ToolUseBlock:
    return ToolUseBlock(call.id, call.function.name, tool_arguments(call))


def _tool_result(message: ChatMessage) -> ToolResultBlock:
    if not message.tool_call_id:
        raise TranslationError("tool messages need a tool_call_id")
    content = message.content
    if isinstance(content, list):
        parts: list[TextBlock | ImageBlock] = []
        for part in content:
            block = _part(part, "tool")
            if block is not None:
                parts.append(block)
        return ToolResultBlock(message.tool_call_id, parts or None)
    return ToolResultBlock(message.tool_call_id, content or None)


def _conversation(messages: list[ChatMessage]) -> tuple[list[TextBlock], list[MessageParam]]:
    system: list[TextBlock] = []
    turns: list[tuple[str, list[Block]]] = []
    for message in messages:
        role = message.role
        blocks: list[Block]
        if role in ("system", "developer"):
            _system_texts(message, system)
            continue
        if role == "tool":
            role, blocks = "user", [_tool_result(message)]
        elif role == "user":
            blocks = _blocks(message.content, role)
        elif role == "assistant":
            blocks = _blocks(message.content, role)
            blocks.extend(_tool_use(call) for call in message.tool_calls or ())
        else:
            raise TranslationError(f"messages with role {role!r} are not supported")
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    out: list[MessageParam] = []
    for role, blocks in turns:
        if role == "user" and len(blocks) > 1:
            results = [b for b in blocks if isinstance(b, ToolResultBlock)]
            if results and len(results) < len(blocks):
                blocks = [*results, *(b for b in blocks if not isinstance(b, ToolResultBlock))]
        if len(blocks) == 1 and isinstance(blocks[0], TextBlock) and not blocks[0].cache_control:
            out.append(MessageParam(role, blocks[0].text))
        else:
            out.append(MessageParam(role, blocks))
    return system, out


def _tools(request: ChatRequest) -> tuple[list[ToolParam] | None, ToolChoiceParam | None]:
    if not request.tools:
        return None, None
    tools = [
        ToolParam(
            name=function.name,
            description=function.description,
            input_schema=_EMPTY_SCHEMA if function.parameters is None else function.parameters,
        )
        for function in function_defs(request.tools)
    ]
    choice = tool_choice(request.tool_choice)
    kind, name = ("auto", None) if choice is None else (_TOOL_CHOICES[choice[0]], choice[1])
    serial = True if request.parallel_tool_calls is False and kind != "none" else None
    if choice is None and serial is None:
        return tools, None
    return tools, ToolChoiceParam(type=kind, name=name, disable_parallel_tool_use=serial)


def _system(blocks: list[TextBlock]) -> str | list[TextBlock] | None:
    if not blocks:
        return None
    if len(blocks) == 1 and blocks[0].cache_control is None:
        return blocks[0].text
    return blocks


def _user_id(request: ChatRequest) -> MetadataParam | None:
    user = request.user
    if user is None and request.metadata is not None:
        value = request.metadata.get("user")
        user = value if isinstance(value, str) else None
    return MetadataParam(user) if user else None


def openai_request_to_anthropic(
    body: bytes, *, upstream_model: str, default_max_tokens: int
) -> bytes:
    """Translates an OpenAI `chat/completions` body into an Anthropic `/v1/messages` body.

    Raises `TranslationError` if the body does not decode as a chat request or asks for
    something Anthropic cannot do (see the module's rules).
    """
    request = decode_chat_request(body)
    if request.n is not None and request.n > 1:
        raise TranslationError("n > 1 is not supported by this model's provider (Anthropic)")
    system, messages = _conversation(request.messages)
    if not messages:
        raise TranslationError("at least one user or assistant message is required")
    max_tokens = request.output_limit
    tools, choice = _tools(request)
    anthropic = MessagesRequest(
        model=upstream_model,
        max_tokens=default_max_tokens if max_tokens is None else max_tokens,
        system=_system(system),
        messages=messages,
        stop_sequences=request.stop_list,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        stream=bool(request.stream),
        tools=tools,
        tool_choice=choice,
        metadata=_user_id(request),
    )
    return _encoder.encode(anthropic)
