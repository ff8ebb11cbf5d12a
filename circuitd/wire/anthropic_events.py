"""Anthropic Messages stream events, as written (sans-I/O): one set of Structs for every writer.

Written by the inbound `/v1/messages` route (`anthropic_inbound_stream`) and by the mock
upstream's Anthropic dialect (`circuitd.mockupstream.anthropic_render`). Each encodes as the
`data:` of its event, the `type` tag first; `frame` makes the whole SSE frame.

These are for encoding only: `MessageDelta.usage` is either the full usage (as the API sends
it today) or only `output_tokens` (as its documentation shows it), a union msgspec cannot
decode. Reading Anthropic streams is `anthropic_stream`'s job, with its own lenient views.
"""

from __future__ import annotations

import msgspec

from circuitd.core.sse import encode_event
from circuitd.wire.anthropic_inbound_answer import Message, MessageUsage
from circuitd.wire.anthropic_request import TextBlock, ToolUseBlock

__all__ = [
    "BlockDelta",
    "BlockStart",
    "BlockStop",
    "JsonDelta",
    "MessageDelta",
    "MessageStart",
    "MessageStop",
    "OutputUsage",
    "Ping",
    "StopDelta",
    "TextDelta",
    "frame",
]


class MessageStart(msgspec.Struct, tag="message_start", tag_field="type"):
    message: Message


class Ping(msgspec.Struct, tag="ping", tag_field="type"):
    pass


class BlockStart(msgspec.Struct, tag="content_block_start", tag_field="type"):
    index: int
    content_block: TextBlock | ToolUseBlock


class TextDelta(msgspec.Struct, tag="text_delta", tag_field="type"):
    text: str


class JsonDelta(msgspec.Struct, tag="input_json_delta", tag_field="type"):
    partial_json: str


class BlockDelta(msgspec.Struct, tag="content_block_delta", tag_field="type"):
    index: int
    delta: TextDelta | JsonDelta


class BlockStop(msgspec.Struct, tag="content_block_stop", tag_field="type"):
    index: int


class StopDelta(msgspec.Struct):
    stop_reason: str
    stop_sequence: str | None = None


class OutputUsage(msgspec.Struct):
    output_tokens: int


class MessageDelta(msgspec.Struct, tag="message_delta", tag_field="type"):
    delta: StopDelta
    usage: MessageUsage | OutputUsage


class MessageStop(msgspec.Struct, tag="message_stop", tag_field="type"):
    pass


_encode = msgspec.json.Encoder().encode


def frame(name: str, event: msgspec.Struct) -> bytes:
    """`event: <name>` + `data: <the event's JSON>`: one SSE frame."""
    return encode_event(_encode(event), event=name)
