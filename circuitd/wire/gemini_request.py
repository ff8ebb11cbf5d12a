"""OpenAI chat request → Gemini `generateContent` request (sans-I/O).

The body is *built*, not patched: Gemini rejects fields it does not know. The model and
whether to stream are in the URL (`models/{model}:generateContent` or
`:streamGenerateContent?alt=sse`), never in the body.

Rules:
- `system` and `developer` messages, wherever they are, become `systemInstruction.parts`
  (text, in order).
- `user` → role "user", `assistant` → role "model"; consecutive contents of the same role
  are merged (so the results of parallel tool calls travel together, as Gemini wants them).
  Empty texts are dropped; a content left without parts is dropped.
- Content parts: `text` → `{"text"}`; `image_url` with a `data:<type>;base64,` URL →
  `inlineData`, with an http(s) URL → `fileData` (`fileUri`, and `mimeType` when the file
  extension tells it); `input_audio` → `inlineData` (`audio/<format>`); assistant `refusal`
  → text. Other part types raise `TranslationError`.
- Assistant `tool_calls` → `functionCall` parts (`args`: the arguments object; a JSON object
  is required); a call's `extra_content.google.thought_signature` (as Google's own
  OpenAI-compatible endpoint returns it, see `gemini_response`) goes back as the part's
  `thoughtSignature`. Call ids are not sent: Gemini pairs calls and results by name and order.
- `tool` messages → role "user" `functionResponse` parts `{name, response: {"output": text}}`
  (Gemini's convention for a function's output). The name is the function of the earlier
  assistant tool call with that `tool_call_id` (else the message's own `name`).
- `tools` (type `function`) → one `{"functionDeclarations": [...]}` with `name`,
  `description`, `parametersJsonSchema` (OpenAI's parameters are JSON Schema, which the
  OpenAPI-subset `parameters` field would reject in part). `tool_choice` auto/none/required →
  `toolConfig.functionCallingConfig.mode` AUTO/NONE/ANY; `{function}` → ANY with
  `allowedFunctionNames`. A `tool_choice` without `tools` is dropped.
- `generationConfig`: `max_completion_tokens` (else `max_tokens`) → `maxOutputTokens`,
  `stop` → `stopSequences`, `n` → `candidateCount`, `temperature`, `top_p` → `topP`, `top_k`
  → `topK`, `seed`, `presence_penalty`, `frequency_penalty`; `response_format` json_object →
  `responseMimeType` "application/json", json_schema → that and `responseJsonSchema`, text →
  nothing. Values pass unchanged: the upstream's 400 says what is out of range.
- Dropped: `logprobs`, `top_logprobs`, `logit_bias`, `parallel_tool_calls`, `user`,
  `metadata`, `stream`/`stream_options` (Gemini streams always carry usage), `store`,
  `service_tier`, `reasoning_effort`, `modalities`, `audio`, `prediction`, message `name`s
  and any other field.
"""

from __future__ import annotations

import mimetypes
from typing import Any

import msgspec

from circuitd.wire.openai_chat import (
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

__all__ = ["TranslationError", "openai_request_to_gemini"]


class Blob(msgspec.Struct, rename="camel"):
    mime_type: str
    data: str


class FileData(msgspec.Struct, rename="camel", omit_defaults=True):
    file_uri: str
    mime_type: str | None = None


class FunctionCall(msgspec.Struct):
    name: str
    args: dict[str, Any]


class FunctionResponse(msgspec.Struct):
    name: str
    response: dict[str, Any]


class Part(msgspec.Struct, rename="camel", omit_defaults=True):
    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None
    thought_signature: str | None = None


class Content(msgspec.Struct, omit_defaults=True):
    parts: list[Part]
    role: str | None = None


class FunctionDeclaration(msgspec.Struct, rename="camel", omit_defaults=True):
    name: str
    description: str | None = None
    parameters_json_schema: dict[str, Any] | None = None


class Tool(msgspec.Struct, rename="camel"):
    function_declarations: list[FunctionDeclaration]


class FunctionCallingConfig(msgspec.Struct, rename="camel", omit_defaults=True):
    mode: str
    allowed_function_names: list[str] | None = None


class ToolConfig(msgspec.Struct, rename="camel"):
    function_calling_config: FunctionCallingConfig


class GenerationConfig(msgspec.Struct, rename="camel", omit_defaults=True):
    stop_sequences: list[str] | None = None
    response_mime_type: str | None = None
    response_json_schema: dict[str, Any] | None = None
    candidate_count: int | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


class GenerateContentRequest(msgspec.Struct, rename="camel", omit_defaults=True):
    contents: list[Content]
    system_instruction: Content | None = None
    tools: list[Tool] | None = None
    tool_config: ToolConfig | None = None
    generation_config: GenerationConfig | None = None


_encoder = msgspec.json.Encoder()
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}
_EMPTY_CONFIG = GenerationConfig()


def _image(url: str) -> Part:
    inline = parse_data_url(url)
    if inline is not None:
        return Part(inline_data=Blob(*inline))
    if url[:8].lower().startswith(("http://", "https://")):
        mime_type, _ = mimetypes.guess_type(url.partition("?")[0], strict=False)
        return Part(file_data=FileData(url, mime_type))
    raise TranslationError("image_url must be an http(s) URL or a base64 data URL")


def _part(part: ContentPart, role: str) -> Part | None:
    if part.type == "text":
        return Part(text=part.text) if part.text else None
    if part.type == "refusal" and role == "assistant":
        return Part(text=part.refusal) if part.refusal else None
    if part.type == "image_url" and role == "user":
        image = part.image_url
        if image is None:
            raise TranslationError("an image_url content part needs its image_url")
        return _image(image if isinstance(image, str) else image.url)
    if part.type == "input_audio" and role == "user":
        audio = part.input_audio
        if audio is None or not audio.data or not audio.format:
            raise TranslationError("an input_audio content part needs its data and format")
        return Part(inline_data=Blob(f"audio/{audio.format.lower()}", audio.data))
    raise TranslationError(f"content parts of type {part.type!r} are not supported in {role!r}")


def _parts(content: str | list[ContentPart] | None, role: str) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [Part(text=content)] if content else []
    return [p for p in (_part(part, role) for part in content) if p is not None]


def _text(message: ChatMessage) -> str:
    """A system or tool message's text (text parts only)."""
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts: list[str] = []
    for part in content:
        if part.type != "text":
            raise TranslationError(f"{message.role} messages may only contain text parts")
        texts.append(part.text or "")
    return "".join(texts)


def _function_call(message: ChatMessage) -> list[Part]:
    parts: list[Part] = []
    for call in message.tool_calls or ():
        google = (call.extra_content or {}).get("google")
        signature = google.get("thought_signature") if isinstance(google, dict) else None
        parts.append(
            Part(
                function_call=FunctionCall(call.function.name, tool_arguments(call)),
                thought_signature=signature if isinstance(signature, str) else None,
            )
        )
    return parts


def _function_response(message: ChatMessage, names: dict[str, str]) -> Part:
    if not message.tool_call_id:
        raise TranslationError("tool messages need a tool_call_id")
    name = names.get(message.tool_call_id) or message.name
    if not name:
        raise TranslationError(
            f"tool message {message.tool_call_id!r} answers no earlier assistant tool call"
        )
    return Part(function_response=FunctionResponse(name, {"output": _text(message)}))


def _conversation(messages: list[ChatMessage]) -> tuple[Content | None, list[Content]]:
    system: list[Part] = []
    contents: list[Content] = []
    names: dict[str, str] = {}  # tool call id → function name, for the tool results
    for message in messages:
        role = message.role
        if role in ("system", "developer"):
            text = _text(message)
            if text:
                system.append(Part(text=text))
            continue
        if role == "user":
            parts = _parts(message.content, role)
        elif role == "assistant":
            role, parts = "model", _parts(message.content, role)
            parts.extend(_function_call(message))
            names.update((call.id, call.function.name) for call in message.tool_calls or ())
        elif role == "tool":
            role, parts = "user", [_function_response(message, names)]
        else:
            raise TranslationError(f"messages with role {role!r} are not supported")
        if not parts:
            continue
        if contents and contents[-1].role == role:
            contents[-1].parts.extend(parts)
        else:
            contents.append(Content(parts, role))
    return (Content(system) if system else None), contents


def _tools(request: ChatRequest) -> tuple[list[Tool] | None, ToolConfig | None]:
    functions = function_defs(request.tools)
    if not functions:
        return None, None
    declarations = [
        FunctionDeclaration(f.name, f.description, f.parameters or None) for f in functions
    ]
    choice = tool_choice(request.tool_choice)
    if choice is None:
        return [Tool(declarations)], None
    kind, name = choice
    config = FunctionCallingConfig(_MODES[kind], [name] if name else None)
    return [Tool(declarations)], ToolConfig(config)


def _generation_config(request: ChatRequest) -> GenerationConfig | None:
    mime_type = schema = None
    response_format = request.response_format
    if response_format is not None and response_format.type != "text":
        if response_format.type not in ("json_object", "json_schema"):
            raise TranslationError(f"response_format {response_format.type!r} is not supported")
        mime_type = "application/json"
        if response_format.type == "json_schema":
            spec = response_format.json_schema
            if spec is None or spec.schema is None:
                raise TranslationError("response_format json_schema needs json_schema.schema")
            schema = spec.schema
    config = GenerationConfig(
        stop_sequences=request.stop_list,
        response_mime_type=mime_type,
        response_json_schema=schema,
        candidate_count=request.n,
        max_output_tokens=request.output_limit,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )
    return None if config == _EMPTY_CONFIG else config


def openai_request_to_gemini(body: bytes) -> bytes:
    """Translates an OpenAI `chat/completions` body into a Gemini `generateContent` body.

    Raises `TranslationError` if the body does not decode as a chat request or asks for
    something Gemini cannot do (see the module's rules).
    """
    request = decode_chat_request(body)
    system, contents = _conversation(request.messages)
    if not contents:
        raise TranslationError("at least one user or assistant message is required")
    tools, tool_config = _tools(request)
    gemini = GenerateContentRequest(
        contents=contents,
        system_instruction=system,
        tools=tools,
        tool_config=tool_config,
        generation_config=_generation_config(request),
    )
    return _encoder.encode(gemini)
