"""Anthropic Messages stream events → OpenAI `chat.completion.chunk` payloads (sans-I/O).

Feed each decoded SSE event (name and data) to `AnthropicStreamTranslator.feed`; it returns
the OpenAI payloads that event produces (JSON texts, and `[DONE]` last):

| Anthropic event                        | OpenAI payloads                                        |
|----------------------------------------|--------------------------------------------------------|
| message_start                          | role chunk `{"role":"assistant","content":""}`         |
| content_block_start text               | nothing (a content chunk if it carries text)           |
| content_block_start tool_use           | `tool_calls[{index, id, type, function{name, ""}}]`    |
| content_block_delta text_delta         | content chunk                                          |
| content_block_delta input_json_delta   | `tool_calls[{index, function{arguments}}]` (not "")    |
| message_delta                          | finish chunk, then the usage chunk (`choices: []`)     |
| message_stop                           | `[DONE]`                                               |
| error                                  | raises `StreamError`                                   |
| ping, content_block_stop, thinking,    | nothing                                                |
| signature and citation deltas, others  |                                                        |

The tool call `index` counts tool_use blocks (OpenAI's meaning), not Anthropic's content
block indexes. Usage is always emitted (the gateway asks OpenAI upstreams for it too):
output tokens from `message_delta`, input and cache tokens from `message_delta` where it has
them, else from `message_start`; mapped as in `anthropic_response`. An event without an
`event:` name is dispatched on its data's `type`. Unknown events are ignored (Anthropic may
add event types); a malformed known event raises `StreamError`.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from circuitd.wire.anthropic_response import (
    AnthropicUsage,
    error_fields,
    finish_reason,
    openai_usage,
)
from circuitd.wire.openai_chat import (
    DONE,
    ROLE_CHUNK,
    ChoiceChunk,
    Delta,
    FunctionDelta,
    StreamError,
    ToolCallDelta,
    chunk_head,
)

__all__ = ["DONE", "AnthropicStreamTranslator", "StreamError"]


# --- Anthropic events: the fields that are read ------------------------------------------


class _Type(msgspec.Struct, frozen=True):
    type: str


class _StartMessage(msgspec.Struct, frozen=True):
    id: str
    model: str | None = None
    usage: AnthropicUsage | None = None


class _MessageStart(msgspec.Struct, frozen=True):
    message: _StartMessage


class _ContentBlock(msgspec.Struct, frozen=True):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None


class _BlockStart(msgspec.Struct, frozen=True):
    index: int
    content_block: _ContentBlock


class _BlockDeltaBody(msgspec.Struct, frozen=True):
    type: str
    text: str | None = None
    partial_json: str | None = None


class _BlockDelta(msgspec.Struct, frozen=True):
    index: int
    delta: _BlockDeltaBody


class _MessageDeltaBody(msgspec.Struct, frozen=True):
    stop_reason: str | None = None


class _MessageDelta(msgspec.Struct, frozen=True):
    delta: _MessageDeltaBody = _MessageDeltaBody()
    usage: AnthropicUsage | None = None


_type_decoder = msgspec.json.Decoder(_Type)
_start_decoder = msgspec.json.Decoder(_MessageStart)
_block_start_decoder = msgspec.json.Decoder(_BlockStart)
_block_delta_decoder = msgspec.json.Decoder(_BlockDelta)
_message_delta_decoder = msgspec.json.Decoder(_MessageDelta)
_encoder = msgspec.json.Encoder()
_T = TypeVar("_T")


class AnthropicStreamTranslator:
    """One stream's translation state. `model` is reported unless `message_start` names the
    model; `created` is the chunks' timestamp."""

    __slots__ = ("_created", "_head", "_model", "_start_usage", "_tools", "done")

    def __init__(self, model: str, created: int) -> None:
        self._model = model
        self._created = created
        self._head = b""  # `{"id":…,"object":…,"created":…,"model":…,"choices":[`
        self._start_usage = AnthropicUsage()
        self._tools: dict[int, int] = {}  # Anthropic block index → OpenAI tool call index
        self.done = False  # message_stop seen

    def feed(self, event_name: str, data: str) -> list[str]:
        """The OpenAI payloads for one Anthropic event (see the module's table)."""
        if event_name == "message":  # no `event:` line: use the data's own type
            event_name = self._decode(_type_decoder, event_name, data).type
        if event_name == "content_block_delta":
            return self._block_delta(self._decode(_block_delta_decoder, event_name, data))
        if event_name == "message_start":
            return self._message_start(self._decode(_start_decoder, event_name, data))
        if event_name == "content_block_start":
            return self._block_start(self._decode(_block_start_decoder, event_name, data))
        if event_name == "message_delta":
            return self._message_delta(self._decode(_message_delta_decoder, event_name, data))
        if event_name == "message_stop":
            self.done = True
            return [DONE]
        if event_name == "error":
            message, _, code = error_fields(500, data.encode())
            raise StreamError(code or "api_error", message)
        return []  # ping, content_block_stop, and event types added later

    @staticmethod
    def _decode(decoder: msgspec.json.Decoder[_T], event_name: str, data: str) -> _T:
        try:
            return decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise StreamError("invalid_stream", f"malformed {event_name} event: {exc}") from None

    def _chunk(self, choice: ChoiceChunk) -> str:
        if not self._head:
            raise StreamError("invalid_stream", "content before message_start")
        return (self._head + _encoder.encode(choice) + b"]}").decode()

    def _message_start(self, event: _MessageStart) -> list[str]:
        message = event.message
        self._head = chunk_head(
            "chatcmpl-" + message.id, self._created, message.model or self._model
        )
        if message.usage is not None:
            self._start_usage = message.usage
        return [self._chunk(ROLE_CHUNK)]

    def _block_start(self, event: _BlockStart) -> list[str]:
        block = event.content_block
        if block.type == "tool_use":
            index = self._tools[event.index] = len(self._tools)
            call = ToolCallDelta(
                index=index,
                id=block.id or "",
                type="function",
                function=FunctionDelta(name=block.name or "", arguments=""),
            )
            return [self._chunk(ChoiceChunk(delta=Delta(tool_calls=[call])))]
        if block.type == "text" and block.text:
            return [self._chunk(ChoiceChunk(delta=Delta(content=block.text)))]
        return []

    def _block_delta(self, event: _BlockDelta) -> list[str]:
        delta = event.delta
        if delta.type == "text_delta":
            if not delta.text:
                return []
            return [self._chunk(ChoiceChunk(delta=Delta(content=delta.text)))]
        if delta.type == "input_json_delta" and delta.partial_json:
            index = self._tools.get(event.index)
            if index is None:  # the input of a server tool block: not the client's call
                return []
            call = ToolCallDelta(index=index, function=FunctionDelta(arguments=delta.partial_json))
            return [self._chunk(ChoiceChunk(delta=Delta(tool_calls=[call])))]
        return []  # thinking, signature and citation deltas

    def _message_delta(self, event: _MessageDelta) -> list[str]:
        finish = finish_reason(event.delta.stop_reason) or "stop"
        out = [self._chunk(ChoiceChunk(delta=Delta(), finish_reason=finish))]
        start = self._start_usage
        last = event.usage or AnthropicUsage()
        usage = openai_usage(
            input_tokens=_first(last.input_tokens, start.input_tokens),
            output_tokens=_first(last.output_tokens, start.output_tokens),
            cache_read=_first(last.cache_read_input_tokens, start.cache_read_input_tokens),
            cache_creation=_first(
                last.cache_creation_input_tokens, start.cache_creation_input_tokens
            ),
        )
        out.append((self._head + b'],"usage":' + _encoder.encode(usage) + b"}").decode())
        return out


def _first(a: int | None, b: int | None) -> int:
    if a is not None:
        return a
    return b or 0
