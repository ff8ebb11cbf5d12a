"""The mock's OpenAI chat dialect, answer side (sans-I/O): a `script.Completion` on the wire.

- `render_completion(...)` -> a `chat.completion` JSON body.
- `render_stream(...)` -> `StreamPayloads`: the `chat.completion.chunk` JSON payloads in
  OpenAI's order (role chunk, content chunks, finish chunk, optional usage chunk with
  `"choices": []`, then `[DONE]`); `sse(payload)` frames one as `data: ...\\n\\n`.
  With a `ToolUse` both render a tool call instead of text (`chat.plan_chat` decides): the
  role chunk carries the call's id and name, the content chunks its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from msgspec import UNSET, UnsetType

from circuitd.mockupstream.script import Completion

__all__ = ["DONE", "StreamPayloads", "ToolUse", "render_completion", "render_stream", "sse"]

DONE = b"[DONE]"
SYSTEM_FINGERPRINT = "fp_circuitd_mock"


class _PromptDetails(msgspec.Struct):
    cached_tokens: int = 0
    audio_tokens: int = 0


class _CompletionDetails(msgspec.Struct):
    reasoning_tokens: int = 0
    audio_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


class _Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: _PromptDetails
    completion_tokens_details: _CompletionDetails


class _Function(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str | None = None  # None: left out (a stream's argument deltas)
    arguments: str


class _ToolCall(msgspec.Struct, kw_only=True):  # in a stream, with its `index` first
    index: int | UnsetType = UNSET
    id: str | UnsetType = UNSET
    type: str | UnsetType = UNSET
    function: _Function


class _Message(msgspec.Struct, kw_only=True):
    role: str = "assistant"
    content: str | None
    tool_calls: list[_ToolCall] | UnsetType = UNSET
    refusal: None = None
    annotations: list[object] = []


class _Choice(msgspec.Struct, kw_only=True):  # fields in OpenAI's order
    index: int = 0
    message: _Message
    logprobs: None = None
    finish_reason: str


class _Body(msgspec.Struct, kw_only=True):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[_Choice]
    usage: _Usage | UnsetType = UNSET  # UNSET fields are left out of the JSON
    service_tier: str = "default"
    system_fingerprint: str = SYSTEM_FINGERPRINT


class _Delta(msgspec.Struct):
    role: str | UnsetType = UNSET
    content: str | UnsetType | None = UNSET
    tool_calls: list[_ToolCall] | UnsetType = UNSET


class _ChunkChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: _Delta
    logprobs: None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct, kw_only=True):
    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    service_tier: str = "default"
    system_fingerprint: str = SYSTEM_FINGERPRINT
    choices: list[_ChunkChoice]
    usage: _Usage | UnsetType | None = UNSET  # null on every chunk when usage was asked for


_encode = msgspec.json.Encoder().encode


def _usage(plan: Completion) -> _Usage:
    return _Usage(
        plan.prompt_tokens,
        plan.completion_tokens,
        plan.total_tokens,
        _PromptDetails(),
        _CompletionDetails(),
    )


@dataclass(frozen=True, slots=True)
class ToolUse:
    """The answer is a call of this tool: the plan's text is the arguments JSON, its pieces
    the argument deltas."""

    id: str
    name: str


def render_completion(
    plan: Completion,
    *,
    id: str,
    created: int,
    model: str,
    include_usage: bool = True,
    tool: ToolUse | None = None,
) -> bytes:
    if tool is None:
        message = _Message(content=plan.text)
    else:
        call = _ToolCall(
            id=tool.id, type="function", function=_Function(name=tool.name, arguments=plan.text)
        )
        message = _Message(content=None, tool_calls=[call])
    choice = _Choice(message=message, finish_reason=plan.finish_reason)
    usage = _usage(plan) if include_usage else UNSET
    return _encode(_Body(id=id, created=created, model=model, choices=[choice], usage=usage))


@dataclass(frozen=True, slots=True)
class StreamPayloads:
    """Event payloads (JSON, or `[DONE]`) split where fault injection needs to act."""

    head: bytes  # the role chunk: delta {"role": "assistant", "content": ""}
    content: list[bytes]  # one per piece
    tail: list[bytes]  # the finish chunk, the usage chunk if any, then [DONE]

    def all(self) -> list[bytes]:
        return [self.head, *self.content, *self.tail]


def render_stream(
    plan: Completion,
    *,
    id: str,
    created: int,
    model: str,
    include_usage: bool,
    tool: ToolUse | None = None,
) -> StreamPayloads:
    usage_field: UnsetType | None = None if include_usage else UNSET

    def chunk(delta: _Delta, finish_reason: str | None = None) -> bytes:
        choice = _ChunkChoice(delta=delta, finish_reason=finish_reason)
        return _encode(
            _Chunk(id=id, created=created, model=model, choices=[choice], usage=usage_field)
        )

    if tool is None:
        head = chunk(_Delta(role="assistant", content=""))
        content = [chunk(_Delta(content=piece)) for piece in plan.pieces]
    else:  # as OpenAI streams a call: its id and name first, then the arguments in pieces
        function = _Function(name=tool.name, arguments="")
        start = _ToolCall(index=0, id=tool.id, type="function", function=function)
        head = chunk(_Delta(role="assistant", content=None, tool_calls=[start]))
        content = [
            chunk(_Delta(tool_calls=[_ToolCall(index=0, function=_Function(arguments=piece))]))
            for piece in plan.pieces
        ]
    tail = [chunk(_Delta(), plan.finish_reason)]
    if include_usage:
        last = _Chunk(id=id, created=created, model=model, choices=[], usage=_usage(plan))
        tail.append(_encode(last))
    tail.append(DONE)
    return StreamPayloads(head, content, tail)


def sse(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"
