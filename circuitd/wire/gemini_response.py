"""Gemini `GenerateContentResponse` → OpenAI `chat.completion`, errors → OpenAI errors
(sans-I/O).

- One choice per candidate (`index` as Gemini numbers them). Text parts are joined into
  `message.content`; `thought` parts (thought summaries) are dropped; `functionCall` parts
  become `tool_calls` (`arguments`: the `args` object's JSON as Gemini sent it). A call's id is
  Gemini's where it gives one, else `call_<response id>_<choice>_<n>`; its `thoughtSignature` rides
  along as `extra_content.google.thought_signature`, as Google's own OpenAI-compatible
  endpoint does, so that a client sending the history back returns it (Gemini 3 checks it).
  `content` is null when the answer is only tool calls, as OpenAI does.
- `finishReason` → `finish_reason`: STOP → stop, or tool_calls when the candidate called a
  function; MAX_TOKENS → length; SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII,
  MODEL_ARMOR and the IMAGE_* filters → content_filter; anything else (OTHER, LANGUAGE,
  MALFORMED_FUNCTION_CALL, …) → stop.
- A blocked prompt (`promptFeedback.blockReason`, no candidates) is one empty choice with
  finish_reason content_filter.
- Usage follows OpenAI's semantics: `prompt_tokens = promptTokenCount +
  toolUsePromptTokenCount`, `completion_tokens = candidatesTokenCount + thoughtsTokenCount`
  (thinking is billed as output, and OpenAI counts reasoning inside completion tokens),
  `prompt_tokens_details.cached_tokens = cachedContentTokenCount` (Gemini counts it inside
  the prompt too), `completion_tokens_details.reasoning_tokens = thoughtsTokenCount`. No
  `usageMetadata`: no usage (the gateway then estimates).
- `model` is Gemini's `modelVersion`, else the deployment's; `id` is `chatcmpl-` + the
  `responseId`, else the gateway's request id.
- Errors `{"error":{"code","message","status","details"}}` (also wrapped in a one-element
  list, as Google's streaming endpoints answer) become OpenAI's
  `{"error":{"message","type","code","param"}}`: `code` is Google's status lower-cased
  (`resource_exhausted`), or `invalid_api_key` for an API_KEY_INVALID error; `type` the
  nearest OpenAI/gateway family (table below). `retry_delay` reads the RetryInfo detail
  (`"retryDelay": "37s"`) Gemini sends with a 429 instead of a Retry-After header.
"""

from __future__ import annotations

import math

import msgspec
from msgspec import UNSET, UnsetType

from circuitd.errors import ErrorBody, ErrorEnvelope
from circuitd.wire.openai_chat import (
    AssistantMessage,
    Choice,
    Completion,
    CompletionTokensDetails,
    Function,
    OpenAIUsage,
    PromptTokensDetails,
    ToolCall,
    error_family,
)

__all__ = [
    "Candidate",
    "GenerateContentResponse",
    "GoogleError",
    "UsageMetadata",
    "call_id",
    "error_fields",
    "finish_reason",
    "gemini_error_to_openai",
    "gemini_response_to_openai",
    "openai_usage",
    "retry_delay",
    "tool_call",
]

_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)

# Google status → OpenAI error `type` (the gateway's own names where it has them).
ERROR_TYPES = {
    "INVALID_ARGUMENT": "invalid_request_error",
    "FAILED_PRECONDITION": "invalid_request_error",
    "OUT_OF_RANGE": "invalid_request_error",
    "NOT_FOUND": "invalid_request_error",
    "ALREADY_EXISTS": "invalid_request_error",
    "UNAUTHENTICATED": "authentication_error",
    "PERMISSION_DENIED": "permission_error",
    "RESOURCE_EXHAUSTED": "rate_limit_exceeded",
    "CANCELLED": "server_error",
    "UNKNOWN": "server_error",
    "INTERNAL": "server_error",
    "DATA_LOSS": "server_error",
    "NOT_IMPLEMENTED": "server_error",
    "UNAVAILABLE": "service_unavailable",
    "DEADLINE_EXCEEDED": "upstream_timeout",
}


def finish_reason(reason: str | None, *, called: bool = False) -> str | None:
    """OpenAI's `finish_reason` for a Gemini `finishReason` (None: not finished)."""
    if reason is None:
        return None
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if called else "stop"


# --- the Gemini answer: the fields that are read -------------------------------------------


class _FunctionCall(msgspec.Struct, frozen=True):
    name: str = ""
    args: msgspec.Raw = msgspec.Raw()  # kept as sent: it becomes `arguments` verbatim
    id: str | None = None


class _Part(msgspec.Struct, frozen=True, rename="camel"):
    text: str | None = None
    thought: bool | None = None
    function_call: _FunctionCall | None = None
    thought_signature: str | None = None


class _Content(msgspec.Struct, frozen=True):
    parts: list[_Part] = []


class Candidate(msgspec.Struct, frozen=True, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None
    index: int | None = None

    def texts(self) -> list[str]:
        parts = self.content.parts if self.content else ()
        return [p.text for p in parts if p.text and not p.thought]

    def calls(self) -> list[_Part]:
        parts = self.content.parts if self.content else ()
        return [p for p in parts if p.function_call is not None]


class UsageMetadata(msgspec.Struct, frozen=True, rename="camel"):
    prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    cached_content_token_count: int | None = None
    thoughts_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None


class _PromptFeedback(msgspec.Struct, frozen=True, rename="camel"):
    block_reason: str | None = None


class GoogleError(msgspec.Struct, frozen=True):
    code: int | None = None
    message: str = ""
    status: str | None = None
    details: list[dict[str, object]] = []


class GenerateContentResponse(msgspec.Struct, frozen=True, rename="camel"):
    candidates: list[Candidate] = []
    prompt_feedback: _PromptFeedback | None = None
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None
    error: GoogleError | None = None  # only in a stream's error event

    @property
    def blocked(self) -> bool:
        feedback = self.prompt_feedback
        return not self.candidates and feedback is not None and bool(feedback.block_reason)


def openai_usage(usage: UsageMetadata) -> OpenAIUsage:
    prompt = (usage.prompt_token_count or 0) + (usage.tool_use_prompt_token_count or 0)
    thoughts = usage.thoughts_token_count or 0
    completion = (usage.candidates_token_count or 0) + thoughts
    return OpenAIUsage(
        prompt,
        completion,
        prompt + completion,
        PromptTokensDetails(usage.cached_content_token_count or 0),
        CompletionTokensDetails(thoughts),
    )


def tool_call(part: _Part, fallback_id: str) -> ToolCall:
    """The OpenAI tool call for a `functionCall` part."""
    call = part.function_call
    assert call is not None
    raw = bytes(call.args)
    arguments = raw.decode() if raw and raw != b"null" else "{}"
    extra: dict[str, object] | UnsetType = UNSET
    if part.thought_signature:
        extra = {"google": {"thought_signature": part.thought_signature}}
    return ToolCall(
        id=call.id or fallback_id, function=Function(call.name, arguments), extra_content=extra
    )


_response_decoder = msgspec.json.Decoder(GenerateContentResponse)
_encoder = msgspec.json.Encoder()


def call_id(base: str, choice: int, number: int) -> str:
    """The id of a tool call Gemini gave none: unique in the answer, and in the conversation
    as long as response ids are."""
    return f"call_{base}_{choice}_{number}"


def _choice(candidate: Candidate, position: int, base: str) -> Choice:
    index = position if candidate.index is None else candidate.index
    texts = candidate.texts()
    calls = [tool_call(p, call_id(base, index, n)) for n, p in enumerate(candidate.calls())]
    return Choice(
        index=index,
        message=AssistantMessage(
            role="assistant",
            content="".join(texts) if texts or not calls else None,
            refusal=None,
            tool_calls=calls or None,
        ),
        finish_reason=finish_reason(candidate.finish_reason or "STOP", called=bool(calls)),
    )


def gemini_response_to_openai(body: bytes, *, model: str, created: int, request_id: str) -> bytes:
    """Translates a successful `generateContent` answer. Raises `msgspec.DecodeError` if
    `body` is not one (the caller treats that as a broken upstream)."""
    response = _response_decoder.decode(body)
    base = response.response_id or request_id
    choices = [_choice(c, i, base) for i, c in enumerate(response.candidates)]
    if not choices:  # a blocked prompt (or an empty answer): one empty choice
        blocked = response.blocked
        message = AssistantMessage(role="assistant", content=None if blocked else "", refusal=None)
        reason = "content_filter" if blocked else "stop"
        choices = [Choice(message=message, finish_reason=reason)]
    usage = response.usage_metadata
    completion = Completion(
        id="chatcmpl-" + base,
        created=created,
        model=response.model_version or model,
        choices=choices,
        usage=None if usage is None else openai_usage(usage),
    )
    return _encoder.encode(completion)


# --- errors --------------------------------------------------------------------------------


class _ErrorResponse(msgspec.Struct, frozen=True):
    error: GoogleError


_error_decoder = msgspec.json.Decoder(_ErrorResponse | list[_ErrorResponse])


def _google_error(body: bytes) -> GoogleError | None:
    try:
        decoded = _error_decoder.decode(body)
    except msgspec.DecodeError:
        return None
    if isinstance(decoded, list):
        return decoded[0].error if decoded else None
    return decoded.error


def _reason(error: GoogleError) -> str | None:
    for detail in error.details:
        reason = detail.get("reason")
        if isinstance(reason, str):
            return reason
    return None


def google_error_fields(status: int, error: GoogleError) -> tuple[str, str, str | None]:
    if _reason(error) == "API_KEY_INVALID":
        return error.message or "API key not valid.", "authentication_error", "invalid_api_key"
    kind = error.status or ""
    message = error.message or kind or f"Gemini answered {status}"
    return message, ERROR_TYPES.get(kind) or error_family(status), kind.lower() or None


def error_fields(status: int, body: bytes) -> tuple[str, str, str | None]:
    """(message, OpenAI type, code) for a Gemini error answer."""
    error = _google_error(body)
    if error is None:
        summary = body[:300].decode("utf-8", "replace").strip()
        message = f"Gemini answered {status}" + (f": {summary}" if summary else "")
        return message, error_family(status), None
    return google_error_fields(status, error)


def gemini_error_to_openai(status: int, body: bytes) -> bytes:
    """A Gemini error answer (any non-2xx body) as an OpenAI error body."""
    message, kind, code = error_fields(status, body)
    return _encoder.encode(ErrorEnvelope(ErrorBody(message, kind, code)))


def retry_delay(body: bytes) -> str | None:
    """The seconds of a RetryInfo detail (`"retryDelay": "37s"`), as a Retry-After value."""
    error = _google_error(body)
    for detail in error.details if error is not None else ():
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                return None
            return f"{seconds:g}" if math.isfinite(seconds) and seconds >= 0 else None
    return None
