"""What every adapter of another dialect (Anthropic, Gemini) shares around its translations.

`TranslatingProvider.open` translates the canonical request (a `TranslationError` becomes
`UnsupportedRequest`, before any I/O), POSTs it with `http.post` and wraps the response in the
adapter's `TranslatedReply`. The reply reads or streams the answer in the OpenAI wire format:
`content_type` is always JSON, whatever the upstream sent; an error answer is translated to an
OpenAI error body, a malformed one or an error event is an `UpstreamFailure`. An adapter says
only what differs: its URL, headers and translations.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import ClassVar

import httpx
import msgspec

from circuitd.core.sse import SSEEvent
from circuitd.providers.base import Deployment, UnsupportedRequest, UpstreamCall, UpstreamFailure
from circuitd.providers.http import Endpoints, Post, Received, read_all, sse_batches, translated
from circuitd.wire.openai_chat import StreamError, TranslationError

__all__ = ["StreamTranslation", "TranslatedReply", "TranslatingProvider", "upstream_headers"]

_JSON = b"application/json"

# How a reply translates its stream: each event's payloads, and those that end the stream.
StreamTranslation = tuple[Callable[[SSEEvent], Iterable[str]], Callable[[], Iterable[str]]]


def upstream_headers(
    headers: Mapping[str, str] | None, own: Mapping[str, str], key: tuple[str, str | None]
) -> dict[str, str]:
    """A JSON content type and the dialect's `own` headers, the configured `headers` over them
    (names lower-cased), then the API key's header (`key`: name and key) if there is a key."""
    out = {"content-type": "application/json", **own}
    out.update({name.lower(): value for name, value in (headers or {}).items()})
    name, api_key = key
    if api_key:
        out[name] = api_key
    return out


class TranslatedReply:
    """An answer in another dialect, read or streamed in the OpenAI wire format."""

    answer_name: ClassVar[str]  # e.g. "Anthropic message", for a malformed answer's failure
    dialect: ClassVar[str]  # e.g. "Anthropic", for an error event's failure

    __slots__ = ("_created", "_model", "_received", "content_type", "retry_after", "status")

    def __init__(self, received: Received, *, model: str, created: int) -> None:
        self._received = received
        self._model = model
        self._created = created
        self.status = received.status
        self.retry_after = received.retry_after
        self.content_type = _JSON

    def _answer(self, body: bytes) -> bytes:
        """A 2xx answer as a `chat.completion` (`msgspec.DecodeError` if it is malformed)."""
        raise NotImplementedError

    def _error(self, body: bytes) -> bytes:
        """An error answer as an OpenAI error body."""
        raise NotImplementedError

    def _stream(self) -> StreamTranslation:
        raise NotImplementedError

    def _event_status(self, error: StreamError) -> int | None:
        """The HTTP status an in-stream error stands for."""
        return error.status

    async def read(self) -> bytes:
        body = await read_all(self._received)
        if not 200 <= self.status < 300:
            return self._error(body)
        try:
            return self._answer(body)
        except msgspec.DecodeError as exc:
            raise UpstreamFailure(f"malformed {self.answer_name}: {exc}") from exc

    async def batches(self) -> AsyncGenerator[list[str], None]:
        feed, end = self._stream()
        try:
            batches = translated(sse_batches(self._received), feed)
            async with aclosing(batches):
                async for batch in batches:
                    yield batch
            last = list(end())
            if last:
                yield last
        except StreamError as exc:
            status = self._event_status(exc)
            raise UpstreamFailure(f"{self.dialect} stream error: {exc}", status=status) from exc


class TranslatingProvider:
    """The adapter's shell: `open` and `aclose` (the shared client is the gateway's)."""

    def __init__(self, name: str, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.name = name
        self._endpoints = Endpoints(client, headers)

    def _translate(self, deployment: Deployment, call: UpstreamCall) -> bytes:
        """The request body in the dialect (`TranslationError` if it cannot be said)."""
        raise NotImplementedError

    def _url(self, deployment: Deployment, call: UpstreamCall) -> str:
        raise NotImplementedError

    def _reply(
        self, received: Received, deployment: Deployment, call: UpstreamCall
    ) -> TranslatedReply:
        raise NotImplementedError

    @asynccontextmanager
    async def open(
        self, deployment: Deployment, call: UpstreamCall
    ) -> AsyncIterator[TranslatedReply]:
        try:
            body = self._translate(deployment, call)
        except TranslationError as exc:
            raise UnsupportedRequest(str(exc)) from exc
        url = self._url(deployment, call)
        async with Post(self._endpoints, url, body, deployment) as received:
            yield self._reply(received, deployment, call)

    async def aclose(self) -> None:
        """The shared client is owned (and closed) by the gateway."""
