"""Gemini `streamGenerateContent?alt=sse` events → OpenAI `chat.completion.chunk` payloads
(sans-I/O).

Gemini streams one whole `GenerateContentResponse` per `data:` event and ends the body
without a terminator. Feed each event's data to `GeminiStreamTranslator.feed`; call `end()`
when the body ends cleanly:

| Gemini event                                | OpenAI payloads                                   |
|---------------------------------------------|---------------------------------------------------|
| a candidate seen for the first time         | its role chunk `{"role":"assistant","content":""}`|
| text parts (not `thought`)                  | one content chunk                                 |
| `functionCall` parts                        | one chunk with the whole `tool_calls`             |
| `finishReason`                              | the candidate's finish chunk                      |
| no candidates, `promptFeedback.blockReason` | role chunk, finish chunk `content_filter`         |
| `{"error": {...}}`                          | raises `StreamError` (status: `error.code`)       |
| `end()` after a finish                      | the usage chunk (`choices: []`), `[DONE]`         |
| `end()` without a finish                    | nothing: the stream was cut                       |

Each candidate is a choice (its `index`); tool call indexes count per choice, ids and
finish reasons are made as in `gemini_response`. `usageMetadata` is cumulative in every event:
the last one seen is the usage (none seen: no usage chunk, and the gateway estimates).
A malformed event raises `StreamError("invalid_stream", ...)`.
"""

from __future__ import annotations

import msgspec

from circuitd.wire.gemini_response import (
    Candidate,
    GenerateContentResponse,
    UsageMetadata,
    call_id,
    finish_reason,
    google_error_fields,
    openai_usage,
    tool_call,
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

__all__ = ["DONE", "GeminiStreamTranslator", "StreamError"]

_decoder = msgspec.json.Decoder(GenerateContentResponse)
_encoder = msgspec.json.Encoder()


class GeminiStreamTranslator:
    """One stream's translation state. `model` is reported unless the events name a
    `modelVersion`; `request_id` stands in for a missing `responseId`."""

    __slots__ = ("_calls", "_created", "_head", "_ids", "_model", "_request_id", "_usage", "done")

    def __init__(self, model: str, created: int, request_id: str) -> None:
        self._model = model
        self._created = created
        self._request_id = request_id
        self._head = b""
        self._ids = ""  # the base of made-up tool call ids
        self._calls: dict[int, int] = {}  # choice index → tool calls so far
        self._usage: UsageMetadata | None = None
        self.done = False  # a finish reason was seen

    def feed(self, data: str) -> list[str]:
        """The OpenAI payloads for one Gemini event (see the module's table)."""
        try:
            event = _decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise StreamError("invalid_stream", f"malformed event: {exc}") from None
        if event.error is not None:
            error = event.error
            status = error.code if error.code and 400 <= error.code <= 599 else 500
            message, _, code = google_error_fields(status, error)
            raise StreamError(code or "unknown", message, status=status)
        if not self._head:
            self._ids = event.response_id or self._request_id
            model = event.model_version or self._model
            self._head = chunk_head("chatcmpl-" + self._ids, self._created, model)
        if event.usage_metadata is not None:
            self._usage = event.usage_metadata
        out: list[str] = []
        for position, candidate in enumerate(event.candidates):
            index = position if candidate.index is None else candidate.index
            out.extend(self._candidate(index, candidate))
        if not event.candidates and event.blocked:
            out.extend(self._started(0))
            out.append(self._chunk(ChoiceChunk(delta=Delta(), finish_reason="content_filter")))
            self.done = True
        return out

    def end(self) -> list[str]:
        """The stream's last payloads once its body ended cleanly (see the table)."""
        if not self.done:
            return []
        if self._usage is None:
            return [DONE]
        usage = _encoder.encode(openai_usage(self._usage))
        return [(self._head + b'],"usage":' + usage + b"}").decode(), DONE]

    def _chunk(self, choice: ChoiceChunk) -> str:
        return (self._head + _encoder.encode(choice) + b"]}").decode()

    def _started(self, index: int) -> list[str]:
        if index in self._calls:
            return []
        self._calls[index] = 0
        role = ROLE_CHUNK if index == 0 else ChoiceChunk(index=index, delta=ROLE_CHUNK.delta)
        return [self._chunk(role)]

    def _candidate(self, index: int, candidate: Candidate) -> list[str]:
        out = self._started(index)
        texts = candidate.texts()
        if texts:
            out.append(self._chunk(ChoiceChunk(index=index, delta=Delta(content="".join(texts)))))
        deltas: list[ToolCallDelta] = []
        for part in candidate.calls():
            number = self._calls[index]
            self._calls[index] = number + 1
            call = tool_call(part, call_id(self._ids, index, number))
            deltas.append(
                ToolCallDelta(
                    index=number,
                    id=call.id,
                    type="function",
                    function=FunctionDelta(call.function.name, call.function.arguments),
                    extra_content=call.extra_content or None,
                )
            )
        if deltas:
            out.append(self._chunk(ChoiceChunk(index=index, delta=Delta(tool_calls=deltas))))
        if candidate.finish_reason is not None:
            called = self._calls[index] > 0
            finish = finish_reason(candidate.finish_reason, called=called)
            out.append(self._chunk(ChoiceChunk(index=index, delta=Delta(), finish_reason=finish)))
            self.done = True
        return out
