"""OpenAI `chat.completion.chunk` payloads → Anthropic Messages stream events (sans-I/O).

Feed each chunk payload the relay forwards to `ChunkTranslator.feed` and `end()` on `[DONE]`;
each returns the SSE frames (`event: <type>` + `data: <json>`) to send at once — nothing is
held beyond the open content block's index and the stop reason:

| OpenAI                              | Anthropic events                                         |
|-------------------------------------|----------------------------------------------------------|
| first chunk (any)                   | message_start (usage zero), ping                         |
| delta.content / delta.refusal       | content_block_start text (if no text block is open),     |
|                                     | content_block_delta text_delta                           |
| delta.tool_calls[i] first seen      | content_block_stop of the open block,                    |
|                                     | content_block_start tool_use {id, name, input: {}}       |
| delta.tool_calls[i].arguments       | content_block_delta input_json_delta                     |
| finish_reason                       | content_block_stop of the open block                     |
| usage (the last chunk)              | nothing: kept for message_delta                          |
| [DONE] (`end`)                      | message_delta (stop_reason, usage), message_stop         |
| the relay's `{"error": {...}}`      | error {"type":"error","error":{type, message}}           |

Block indexes count Anthropic blocks in order; a text block after a tool block opens a new
one. `stop_reason` and usage follow `anthropic_inbound_answer`. The final usage is the
upstream's (OpenAI-compatible streams are always asked for it); `message_start` carries
zeros, which `message_delta` replaces, as the Anthropic SDK expects.
"""

from __future__ import annotations

from typing import Any

import msgspec

from circuitd.wire.anthropic_events import (
    BlockDelta,
    BlockStart,
    BlockStop,
    JsonDelta,
    MessageDelta,
    MessageStart,
    MessageStop,
    Ping,
    StopDelta,
    TextDelta,
    frame,
)
from circuitd.wire.anthropic_inbound_answer import (
    ErrorEvent,
    ErrorObject,
    Message,
    MessageUsage,
    message_id,
    message_usage,
    stop_reason,
)
from circuitd.wire.anthropic_request import TextBlock, ToolUseBlock
from circuitd.wire.openai import Usage

__all__ = ["ChunkTranslator"]


# --- OpenAI chunks: no stricter than the relay's `wire.openai.ChunkView` --------------------


class _FunctionDelta(msgspec.Struct, frozen=True):
    name: Any = None
    arguments: Any = None


class _ToolCallDelta(msgspec.Struct, frozen=True):
    index: Any = 0
    id: Any = None
    function: _FunctionDelta | None = None


class _Delta(msgspec.Struct, frozen=True):
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[Any] | None = None


class _ChoiceChunk(msgspec.Struct, frozen=True):
    index: Any = 0
    delta: _Delta | None = None
    finish_reason: str | None = None
    stop_reason: Any = None  # vLLM: the stop string that matched


class _Chunk(msgspec.Struct, frozen=True):
    id: Any = None
    model: Any = None
    choices: list[_ChoiceChunk] = []
    usage: Usage | None = None
    error: dict[str, Any] | None = None  # the relay's own error frame ends a failed stream


_chunk_decoder = msgspec.json.Decoder(_Chunk)
_PING = frame("ping", Ping())


class ChunkTranslator:
    """One stream's translation state. `model` and `fallback_id` are used until a chunk names
    its own; `stop_sequences` are the request's (to tell stop_sequence from end_turn)."""

    __slots__ = (
        "_blocks",
        "_fallback_id",
        "_finish",
        "_matched",
        "_model",
        "_open",
        "_open_text",
        "_started",
        "_stop_sequences",
        "_tools",
        "_usage",
    )

    def __init__(self, *, model: str, fallback_id: str, stop_sequences: tuple[str, ...]) -> None:
        self._model = model
        self._fallback_id = fallback_id
        self._stop_sequences = stop_sequences
        self._started = False
        self._blocks = 0  # blocks started so far: the next block's index
        self._open: int | None = None  # the open block's index
        self._open_text = False  # whether the open block is a text block
        self._tools: dict[int, int] = {}  # OpenAI tool call index → block index
        self._finish: str | None = None
        self._matched: object = None
        self._usage: Usage | None = None

    def feed(self, payload: str) -> bytes:
        """The frames for one chunk payload. Raises `msgspec.DecodeError` only for a payload
        the relay would not have forwarded either."""
        chunk = _chunk_decoder.decode(payload)
        if chunk.error is not None:
            return self._failed(chunk.error)
        out: list[bytes] = []
        if not self._started:
            self._start(chunk, out)
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            if choice.index not in (0, None):
                continue  # one answer: the request never asks for `n`
            delta = choice.delta
            if delta is not None:
                for text in (delta.content, delta.refusal):
                    if text:
                        self._text(text, out)
                for call in delta.tool_calls or ():
                    self._tool_call(call, out)
            if choice.finish_reason is not None:
                self._finish, self._matched = choice.finish_reason, choice.stop_reason
                self._close(out)
        return b"".join(out)

    def end(self) -> bytes:
        """The frames that end a complete stream (the upstream's `[DONE]`)."""
        out: list[bytes] = []
        if not self._started:
            self._start(_Chunk(), out)
        self._close(out)
        reason, sequence = stop_reason(self._finish, self._matched, self._stop_sequences)
        out.append(
            frame(
                "message_delta",
                MessageDelta(StopDelta(reason, sequence), message_usage(self._usage)),
            )
        )
        out.append(frame("message_stop", MessageStop()))
        return b"".join(out)

    @staticmethod
    def _failed(error: dict[str, Any]) -> bytes:
        """The event that ends a failed stream: `overloaded_error` when no upstream could
        take the call, else `api_error` (cuts, upstream errors and timeouts alike)."""
        message = error.get("message")
        kind = "overloaded_error" if error.get("code") == "service_unavailable" else "api_error"
        text = message if isinstance(message, str) and message else "Upstream stream failed."
        return frame("error", ErrorEvent(ErrorObject(kind, text)))

    def _start(self, chunk: _Chunk, out: list[bytes]) -> None:
        self._started = True
        model = chunk.model if isinstance(chunk.model, str) and chunk.model else self._model
        message = Message(
            id=message_id(chunk.id, self._fallback_id),
            model=model,
            content=[],
            stop_reason=None,
            usage=MessageUsage(),
        )
        out.append(frame("message_start", MessageStart(message)))
        out.append(_PING)

    def _open_block(self, block: TextBlock | ToolUseBlock, out: list[bytes]) -> int:
        self._close(out)
        index = self._open = self._blocks
        self._blocks += 1
        self._open_text = isinstance(block, TextBlock)
        out.append(frame("content_block_start", BlockStart(index, block)))
        return index

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(frame("content_block_stop", BlockStop(self._open)))
            self._open = None

    def _text(self, text: str, out: list[bytes]) -> None:
        if self._open is None or not self._open_text:
            self._open_block(TextBlock(""), out)
        assert self._open is not None
        out.append(frame("content_block_delta", BlockDelta(self._open, TextDelta(text))))

    def _tool_call(self, raw: object, out: list[bytes]) -> None:
        try:
            call = msgspec.convert(raw, _ToolCallDelta)
        except msgspec.ValidationError:
            return  # not a tool call delta the client could use
        key = call.index if isinstance(call.index, int) else 0
        function = call.function or _FunctionDelta()
        index = self._tools.get(key)
        if index is None:
            name = function.name if isinstance(function.name, str) else ""
            block = ToolUseBlock(call.id if isinstance(call.id, str) else "", name, {})
            index = self._tools[key] = self._open_block(block, out)
        arguments = function.arguments
        if isinstance(arguments, str) and arguments:
            out.append(frame("content_block_delta", BlockDelta(index, JsonDelta(arguments))))
