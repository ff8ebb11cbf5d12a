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
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from urllib.parse import quote

import httpx
import msgspec

from circuitd.providers.base import (
    Deployment,
    UnsupportedRequest,
    UpstreamCall,
    UpstreamFailure,
)
from circuitd.providers.http import post, read_all, sse_batches, translated
from circuitd.wire.gemini import (
    GeminiStreamTranslator,
    StreamError,
    TranslationError,
    gemini_error_to_openai,
    gemini_response_to_openai,
    openai_request_to_gemini,
    retry_delay,
)

__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "GeminiProvider", "GeminiReply", "model_url"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
_JSON = b"application/json"
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


class GeminiReply:
    """A Gemini answer, read or streamed in the OpenAI wire format. `content_type` is always
    JSON: `read()` returns translated JSON whatever the upstream sent."""

    __slots__ = (
        "_created",
        "_model",
        "_request_id",
        "_response",
        "content_type",
        "retry_after",
        "status",
    )

    def __init__(
        self, response: httpx.Response, *, model: str, created: int, request_id: str
    ) -> None:
        self._response = response
        self._model = model
        self._created = created
        self._request_id = request_id
        self.status = response.status_code
        self.retry_after = response.headers.get("retry-after")
        self.content_type = _JSON

    async def read(self) -> bytes:
        body = await read_all(self._response)
        if not 200 <= self.status < 300:
            if self.retry_after is None:  # Gemini tells a 429's wait in the body
                self.retry_after = retry_delay(body)
            return gemini_error_to_openai(self.status, body)
        try:
            return gemini_response_to_openai(
                body, model=self._model, created=self._created, request_id=self._request_id
            )
        except msgspec.DecodeError as exc:
            raise UpstreamFailure(f"malformed Gemini answer: {exc}") from exc

    async def batches(self) -> AsyncGenerator[list[str], None]:
        translator = GeminiStreamTranslator(self._model, self._created, self._request_id)
        try:
            batches = translated(sse_batches(self._response), lambda e: translator.feed(e.data))
            async with aclosing(batches):
                async for batch in batches:
                    yield batch
            last = list(translator.end())
            if last:
                yield last
        except StreamError as exc:
            raise UpstreamFailure(f"Gemini stream error: {exc}", status=exc.status) from exc


class GeminiProvider:
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
        self.name = name
        self._client = client
        self._base_url = base_url or DEFAULT_BASE_URL
        self._version = version
        self._headers = {"content-type": "application/json"}
        self._headers.update({key.lower(): value for key, value in (headers or {}).items()})
        if api_key:
            self._headers["x-goog-api-key"] = api_key

    @asynccontextmanager
    async def open(self, deployment: Deployment, call: UpstreamCall) -> AsyncIterator[GeminiReply]:
        try:
            body = openai_request_to_gemini(call.body)
        except TranslationError as exc:
            raise UnsupportedRequest(str(exc)) from exc
        url = model_url(
            self._base_url, deployment.upstream_model, stream=call.stream, version=self._version
        )
        async with post(self._client, url, body, self._headers, deployment) as response:
            yield GeminiReply(
                response,
                model=deployment.upstream_model,
                created=int(time.time()),
                request_id=call.request_id,
            )

    async def aclose(self) -> None:
        """The shared client is owned (and closed) by the gateway."""
