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
from collections.abc import Mapping

import httpx

from circuitd.providers.base import Deployment, UpstreamCall
from circuitd.providers.http import Received
from circuitd.providers.translating import (
    StreamTranslation,
    TranslatedReply,
    TranslatingProvider,
    upstream_headers,
)
from circuitd.wire.anthropic import (
    AnthropicStreamTranslator,
    StreamError,
    anthropic_error_to_openai,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
)

__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "AnthropicProvider", "AnthropicReply"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096


class AnthropicReply(TranslatedReply):
    """An Anthropic answer, read or streamed in the OpenAI wire format."""

    answer_name, dialect = "Anthropic message", "Anthropic"
    __slots__ = ()

    def _answer(self, body: bytes) -> bytes:
        return anthropic_response_to_openai(body, model=self._model, created=self._created)

    def _error(self, body: bytes) -> bytes:
        return anthropic_error_to_openai(self.status, body)

    def _stream(self) -> StreamTranslation:
        translator = AnthropicStreamTranslator(self._model, self._created)
        return (lambda e: translator.feed(e.event, e.data)), lambda: ()  # ends at message_stop

    def _event_status(self, error: StreamError) -> int:
        return ERROR_EVENT_STATUS.get(error.error_type, 500)


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


class AnthropicProvider(TranslatingProvider):
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
        own = {"anthropic-version": version}
        super().__init__(name, client, upstream_headers(headers, own, ("x-api-key", api_key)))
        self._messages_url = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/v1/messages"
        self._default_max_tokens = default_max_tokens

    def _max_tokens(self, deployment: Deployment) -> int:
        """The `max_tokens` sent when the client gives none: the adapter's default, capped
        at the deployment's output limit where one is configured."""
        cap = deployment.max_output_tokens
        return min(self._default_max_tokens, cap) if cap else self._default_max_tokens

    def _translate(self, deployment: Deployment, call: UpstreamCall) -> bytes:
        return openai_request_to_anthropic(
            call.body,
            upstream_model=deployment.upstream_model,
            default_max_tokens=self._max_tokens(deployment),
        )

    def _url(self, deployment: Deployment, call: UpstreamCall) -> str:
        return self._messages_url

    def _reply(
        self, received: Received, deployment: Deployment, call: UpstreamCall
    ) -> AnthropicReply:
        return AnthropicReply(received, model=deployment.upstream_model, created=int(time.time()))
