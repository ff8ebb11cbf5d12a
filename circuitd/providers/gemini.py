"""Gemini API adapter: the canonical OpenAI request in, OpenAI-shaped answers out.

`open` translates the request (`wire.gemini`) and POSTs it with `x-goog-api-key` over the
gateway's shared client to `{base_url}/v1beta/models/{model}:generateContent`, or
`:streamGenerateContent?alt=sse` for a stream; `GeminiReply` translates the answer back:
`read()` gives a `chat.completion` body (or an OpenAI error body for a non-2xx answer),
`events()` gives `chat.completion.chunk` payloads and `[DONE]`.

URLs are composed as the official `google-genai` SDK composes them: the base URL is the host
(`https://generativelanguage.googleapis.com`), the API version and `models/{model}` follow.
A base URL that already ends in a version (`.../v1`, `.../v1beta`) is used as is, for
proxies that fix it. The model keeps a `models/` or `tunedModels/` prefix it already has.

A request Gemini cannot express raises `UnsupportedRequest` from `open`, before any I/O.
An error event in a stream is an `UpstreamFailure` with the status its `error.code` gives,
so a 503 UNAVAILABLE told in-stream is retried like one answered up front.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from urllib.parse import quote

import httpx

from circuitd.providers.base import Deployment, UpstreamCall
from circuitd.providers.http import Received
from circuitd.providers.translating import (
    StreamTranslation,
    TranslatedReply,
    TranslatingProvider,
    upstream_headers,
)
from circuitd.wire.gemini import (
    GeminiStreamTranslator,
    gemini_error_to_openai,
    gemini_response_to_openai,
    openai_request_to_gemini,
    retry_delay,
)

__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "GeminiProvider", "GeminiReply", "model_url"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
_VERSIONED = re.compile(r"/v\d+(?:(?:alpha|beta)\d*)?$")


def model_url(base_url: str, model: str, *, stream: bool, version: str = API_VERSION) -> str:
    """The `generateContent` (or SSE `streamGenerateContent`) URL of `model`."""
    base = base_url.rstrip("/")
    if not _VERSIONED.search(base):
        base = f"{base}/{version}"
    if not model.startswith(("models/", "tunedModels/")):
        model = "models/" + model
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{base}/{quote(model, safe='/')}:{method}"


class GeminiReply(TranslatedReply):
    """A Gemini answer, read or streamed in the OpenAI wire format."""

    answer_name, dialect = "Gemini answer", "Gemini"
    __slots__ = ("_request_id",)

    def __init__(self, received: Received, *, model: str, created: int, request_id: str) -> None:
        super().__init__(received, model=model, created=created)
        self._request_id = request_id

    def _answer(self, body: bytes) -> bytes:
        return gemini_response_to_openai(
            body, model=self._model, created=self._created, request_id=self._request_id
        )

    def _error(self, body: bytes) -> bytes:
        if self.retry_after is None:  # Gemini tells a 429's wait in the body
            self.retry_after = retry_delay(body)
        return gemini_error_to_openai(self.status, body)

    def _stream(self) -> StreamTranslation:
        translator = GeminiStreamTranslator(self._model, self._created, self._request_id)
        return (lambda e: translator.feed(e.data)), translator.end  # the body just ends


class GeminiProvider(TranslatingProvider):
    kind = "gemini"

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        version: str = API_VERSION,
    ) -> None:
        super().__init__(name, client, upstream_headers(headers, {}, ("x-goog-api-key", api_key)))
        self._base_url = base_url or DEFAULT_BASE_URL
        self._version = version

    def _translate(self, deployment: Deployment, call: UpstreamCall) -> bytes:
        return openai_request_to_gemini(call.body)

    def _url(self, deployment: Deployment, call: UpstreamCall) -> str:
        model = deployment.upstream_model
        return model_url(self._base_url, model, stream=call.stream, version=self._version)

    def _reply(self, received: Received, deployment: Deployment, call: UpstreamCall) -> GeminiReply:
        return GeminiReply(
            received,
            model=deployment.upstream_model,
            created=int(time.time()),
            request_id=call.request_id,
        )
