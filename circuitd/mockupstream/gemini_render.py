"""The mock's Gemini dialect, answer side (sans-I/O): JSON, SSE, errors.

- JSON (`render_response`): a `GenerateContentResponse`: one candidate (its text, or one
  `functionCall` part with a `thoughtSignature`, as thinking models send it), `finishReason`,
  `usageMetadata` (prompt, candidates and total token counts, the prompt's TEXT modality),
  `modelVersion` (the model in the URL), `responseId`.
- Streams (`render_events`): one `data:` event per content chunk that faults count (a text
  piece, or the whole `functionCall`), each with `usageMetadata` holding the prompt count so
  far, then a last event with an empty text part, `finishReason` and the whole usage. No
  head events, no terminator: the body just ends, as Gemini's does.
- `omit_usage`: no `usageMetadata` anywhere (the gateway must then estimate).
- Errors (`error_body`): `{"error":{"code","message","status"}}` with Google's status for the
  code (table below; other 4xx: INVALID_ARGUMENT, other 5xx: INTERNAL)
  and, for a 429 with `retry_after`, a RetryInfo detail (`"retryDelay": "2s"`): Gemini
  says the wait in the body, not in a Retry-After header. A bad API key is a 400 with an
  ErrorInfo detail, reason API_KEY_INVALID (`bad_key_body`), a missing one a 403.
  The stream's error event is `data: {"error": ...}` 503 UNAVAILABLE "The model is overloaded.
  Please try again later." (or the fault's message); its malformed event `data: {not json`.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from circuitd.mockupstream.anthropic import Reply
from circuitd.mockupstream.faults import Frames

__all__ = [
    "MODELS",
    "UNREGISTERED",
    "bad_key_body",
    "error_body",
    "models_body",
    "render_events",
    "render_response",
]

MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash", "mock-1")

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The request was aborted."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in the forum."),
    501: ("NOT_IMPLEMENTED", "Operation is not implemented."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}
UNREGISTERED = (
    "Method doesn't allow unregistered callers (callers without established identity)."
    " Please use API Key or other form of API consumer identity to call this API."
)
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"

_encode = msgspec.json.Encoder().encode


class _FunctionCall(msgspec.Struct):
    name: str
    args: msgspec.Raw


class _Part(msgspec.Struct, rename="camel", omit_defaults=True):
    text: str | None = None
    function_call: _FunctionCall | None = None
    thought_signature: str | None = None


class _Content(msgspec.Struct):
    parts: list[_Part]
    role: str = "model"


class _Candidate(msgspec.Struct, rename="camel"):
    content: _Content
    finish_reason: str | UnsetType = UNSET
    index: int = 0


class _ModalityCount(msgspec.Struct, rename="camel"):
    modality: str
    token_count: int


class _Usage(msgspec.Struct, rename="camel", omit_defaults=True):
    prompt_token_count: int
    candidates_token_count: int | None = None
    total_token_count: int = 0
    prompt_tokens_details: list[_ModalityCount] | None = None


class _Response(msgspec.Struct, rename="camel"):
    candidates: list[_Candidate]
    usage_metadata: _Usage | UnsetType
    model_version: str
    response_id: str


def _usage(reply: Reply, *, final: bool) -> _Usage:
    prompt = reply.input_tokens
    details = [_ModalityCount("TEXT", prompt)]
    if not final:
        return _Usage(prompt, None, prompt, details)
    return _Usage(prompt, reply.output_tokens, prompt + reply.output_tokens, details)


def _parts(reply: Reply, text: str | None) -> list[_Part]:
    if text is None and reply.tool is not None:
        call = _FunctionCall(reply.tool.name, msgspec.Raw(reply.tool.arguments))
        return [_Part(function_call=call, thought_signature=signature(reply.tool.name))]
    return [_Part(text=text or "")]


def signature(name: str) -> str:
    """The `thoughtSignature` of a call to `name`: thinking models sign their function calls
    and Gemini 3 wants the signature back with the call in the next turn."""
    return base64.b64encode(f"mock-signature:{name}".encode()).decode()


def render_response(reply: Reply, *, id: str, model: str, omit_usage: bool = False) -> bytes:
    """The JSON answer: a `GenerateContentResponse`."""
    text = None if reply.text is None else reply.text.text
    candidate = _Candidate(_Content(_parts(reply, text)), reply.stop_reason)
    usage: _Usage | UnsetType = UNSET if omit_usage else _usage(reply, final=True)
    return _encode(_Response([candidate], usage, model, id))


def _event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\r\n\r\n"  # Google ends its SSE lines with CRLF


def render_events(
    reply: Reply,
    *,
    id: str,
    model: str,
    omit_usage: bool = False,
    error_message: str | None = None,
) -> Frames:
    """The SSE answer, split for fault injection (see the module's rules)."""

    def event(parts: list[_Part], finish: str | None, *, final: bool) -> bytes:
        usage: _Usage | UnsetType = UNSET if omit_usage else _usage(reply, final=final)
        candidate = _Candidate(_Content(parts), UNSET if finish is None else finish)
        return _event(_encode(_Response([candidate], usage, model, id)))

    if reply.text is None:
        content = [event(_parts(reply, None), None, final=False)]
    else:
        content = [event([_Part(text=piece)], None, final=False) for piece in reply.text.pieces]
    tail = [event([_Part(text="")], reply.stop_reason, final=True)]
    return Frames(
        head=[],
        content=content,
        tail=tail,
        malformed=_event(b"{not json"),
        error=_event(error_body(503, error_message)),
    )


def _status(status: int) -> tuple[str, str]:
    if status in _ERRORS:
        return _ERRORS[status]
    if status >= 500:
        return _ERRORS[500]
    return _ERRORS[400]


def error_body(
    status: int, message: str | None = None, *, retry_after: float | None = None
) -> bytes:
    name, default = _status(status)
    error: dict[str, Any] = {"code": status, "message": message or default, "status": name}
    if status == 429 and retry_after is not None:
        error["details"] = [{"@type": _RETRY_INFO, "retryDelay": f"{retry_after:g}s"}]
    return _encode({"error": error})


def bad_key_body() -> bytes:
    info = {
        "@type": _ERROR_INFO,
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    error = {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [info],
    }
    return _encode({"error": error})


def models_body() -> bytes:
    """`GET /v1beta/models` in Gemini's shape (one page)."""
    models = [
        {
            "name": f"models/{m}",
            "displayName": m,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
        }
        for m in MODELS
    ]
    return _encode({"models": models})
