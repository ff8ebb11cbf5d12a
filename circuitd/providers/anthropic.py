"""Anthropic Messages adapter: the canonical OpenAI request in, OpenAI-shaped answers out.

`open` translates the request (`wire.anthropic`), POSTs it to `{base_url}/v1/messages` with
`x-api-key` and `anthropic-version` over the gateway's shared client, and wraps the answer in
an `AnthropicReply` that translates back: `read()` gives a `chat.completion` body (or an
OpenAI error body for a non-2xx answer), `events()` gives `chat.completion.chunk` payloads and
`[DONE]`. The base URL is the host without `/v1`, as in the official `anthropic` SDK.

A request Anthropic cannot express raises `UnsupportedRequest` from `open`, before any I/O:
the relay turns it into a 400 `invalid_request_error` that is neither retried nor counted
against the deployment.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager

import httpx
import msgspec

from circuitd.providers.base import (
    Deployment,
    UnsupportedRequest,
    UpstreamCall,
    UpstreamFailure,
)
from circuitd.providers.http import post, read_all, sse_batches, translated
from circuitd.wire.anthropic import (
    AnthropicStreamTranslator,
    StreamError,
    TranslationError,
    anthropic_error_to_openai,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
)

__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "AnthropicProvider", "AnthropicReply"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
_JSON = b"application/json"


class AnthropicReply:
    """An Anthropic answer, read or streamed in the OpenAI wire format. `content_type` is
    always JSON: `read()` returns translated JSON whatever the upstream sent."""

    __slots__ = ("_created", "_model", "_response", "content_type", "retry_after", "status")

    def __init__(self, response: httpx.Response, *, model: str, created: int) -> None:
        self._response = response
        self._model = model
        self._created = created
        self.status = response.status_code
        self.retry_after = response.headers.get("retry-after")
        self.content_type = _JSON

    async def read(self) -> bytes:
        body = await read_all(self._response)
        if not 200 <= self.status < 300:
            return anthropic_error_to_openai(self.status, body)
        try:
            return anthropic_response_to_openai(body, model=self._model, created=self._created)
        except msgspec.DecodeError as exc:
            raise UpstreamFailure(f"malformed Anthropic message: {exc}") from exc

    async def batches(self) -> AsyncGenerator[list[str], None]:
        translator = AnthropicStreamTranslator(self._model, self._created)
        try:
            batches = translated(
                sse_batches(self._response), lambda e: translator.feed(e.event, e.data)
            )
            async with aclosing(batches):
                async for batch in batches:
                    yield batch
        except StreamError as exc:
            status = ERROR_EVENT_STATUS.get(exc.error_type, 500)
            raise UpstreamFailure(f"Anthropic stream error: {exc}", status=status) from exc


# The HTTP status each Anthropic error type is answered with when it is not an event.
ERROR_EVENT_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicProvider:
    kind = "anthropic"

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        version: str = API_VERSION,
    ) -> None:
        self.name = name
        self._client = client
        self._url = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/v1/messages"
        self._default_max_tokens = default_max_tokens
        self._headers = {"content-type": "application/json", "anthropic-version": version}
        self._headers.update({key.lower(): value for key, value in (headers or {}).items()})
        if api_key:
            self._headers["x-api-key"] = api_key

    def _max_tokens(self, deployment: Deployment) -> int:
        """The `max_tokens` sent when the client gives none: the adapter's default, capped
        at the deployment's output limit where one is configured."""
        cap = deployment.max_output_tokens
        return min(self._default_max_tokens, cap) if cap else self._default_max_tokens

    @asynccontextmanager
    async def open(
        self, deployment: Deployment, call: UpstreamCall
    ) -> AsyncIterator[AnthropicReply]:
        try:
            body = openai_request_to_anthropic(
                call.body,
                upstream_model=deployment.upstream_model,
                default_max_tokens=self._max_tokens(deployment),
            )
        except TranslationError as exc:
            raise UnsupportedRequest(str(exc)) from exc
        async with post(self._client, self._url, body, self._headers, deployment) as response:
            yield AnthropicReply(
                response, model=deployment.upstream_model, created=int(time.time())
            )

    async def aclose(self) -> None:
        """The shared client is owned (and closed) by the gateway."""
