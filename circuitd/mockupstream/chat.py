"""The mock's OpenAI chat dialect (sans-I/O): the request view, the answer and its frames.

Shared by `circuitd mock-upstream` (`openai_routes`, over sockets) and the in-process mock
provider (`circuitd.providers.mock`), so that both answer a request, its faults included,
the same way; only the framing differs (`data: ...` events on a socket, bare payloads in
process).

Tool calls, as in the other dialects: with function `tools`, the answer is one call (finish
reason "tool_calls") when `tool_choice` is "required" or names a function (that one), or when
it is "auto"/absent and the last turn is the user's text mentioning "weather"; never with
"none". The fault's `tool_call` overrides both ways. The arguments are made from the
function's `parameters` as the Anthropic dialect makes a tool's input (`anthropic.call_reply`).
The tool fields are read leniently: the mock never refuses a request for their shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from circuitd.mockupstream.anthropic import call_reply
from circuitd.mockupstream.faults import Fault, Frames, error_body
from circuitd.mockupstream.openai_render import ToolUse, render_completion, render_stream
from circuitd.mockupstream.script import Completion, mentions_weather, plan_completion
from circuitd.wire.openai import Message, StreamOptions

__all__ = ["MALFORMED", "ChatAnswer", "ChatBody", "chat_decoder", "plan_chat"]

MALFORMED = b"{not json"  # the payload of a malformed event


class ChatBody(msgspec.Struct, frozen=True):
    """The fields the mock reads; the rest of the body is ignored (and kept in the log)."""

    model: str
    messages: list[Message]
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    mock: Fault | None = None


chat_decoder = msgspec.json.Decoder(ChatBody)


def _functions(tools: list[Any] | None) -> list[dict[str, Any]]:
    """The request's function definitions that have a name."""
    out = []
    for tool in tools or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            out.append(function)
    return out


def _function(body: ChatBody, force: bool | None) -> dict[str, Any] | None:
    """The function to call, if the answer is a function call."""
    functions, choice = _functions(body.tools), body.tool_choice
    if not functions or force is False:
        return None
    if isinstance(choice, dict):  # {"type": "function", "function": {"name": ...}}
        named = choice.get("function")
        name = named.get("name") if isinstance(named, dict) else None
        return next((f for f in functions if f["name"] == name), functions[0])
    if force or choice == "required":
        return functions[0]
    if choice == "none":
        return None
    return functions[0] if mentions_weather(body.messages) else None


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    """What to answer one chat request, rendered on demand (an error answers neither)."""

    body: ChatBody
    fault: Fault
    plan: Completion
    tool: ToolUse | None
    id: str
    model: str

    def json(self) -> bytes:
        return render_completion(
            self.plan,
            id=self.id,
            created=int(time.time()),
            model=self.model,
            include_usage=not self.fault.omit_usage,
            tool=self.tool,
        )

    def frames(self, frame: Callable[[bytes], bytes]) -> Frames:
        """The stream's payloads, each wrapped by `frame`, split for fault injection."""
        options = self.body.stream_options
        wants_usage = bool(options and options.include_usage)
        payloads = render_stream(
            self.plan,
            id=self.id,
            created=int(time.time()),
            model=self.model,
            include_usage=wants_usage and not self.fault.omit_usage,
            tool=self.tool,
        )
        return Frames(
            head=[frame(payloads.head)],
            content=[frame(p) for p in payloads.content],
            tail=[frame(p) for p in payloads.tail],
            malformed=frame(MALFORMED),
            error=frame(error_body(500, self.fault.message)),
        )


def plan_chat(
    body: ChatBody, fault: Fault, *, id: str, model: str, tokens: int | None = None
) -> ChatAnswer:
    """The answer to `body` under `fault`, with the completion `id` (a tool call's id is made
    from it) naming `model`; `tokens`: the length when the fault sets none."""
    length = fault.tokens if fault.tokens is not None else tokens
    plan = plan_completion(body, tokens=length, chunks=fault.chunks)
    function = _function(body, fault.tool_call)
    tool = None
    if function is not None:
        schema = function.get("parameters")
        schema = schema if isinstance(schema, dict) else None
        call = call_reply(function["name"], schema, plan, "tool_calls", fault.chunks)
        assert call.tool is not None
        plan = Completion(
            text=call.tool.arguments.decode(),
            pieces=call.tool.pieces[1:],  # the call's start carries the empty one
            prompt_tokens=call.input_tokens,
            completion_tokens=call.output_tokens,
            finish_reason="tool_calls",
        )
        tool = ToolUse("call_" + id.removeprefix("chatcmpl-"), function["name"])
    return ChatAnswer(body, fault, plan, tool, id, model)
