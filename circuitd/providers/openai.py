"""OpenAI-compatible adapter (OpenAI, Azure OpenAI, Ollama, vLLM, any server speaking its API).

The canonical format *is* OpenAI's, so requests pass through as bytes and stream events are
only split into payloads, never re-encoded. Where a preset puts the URL and the key is
`openai_presets`; chat completions and embeddings go through the same path.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx

from circuitd.core.sse import SSEDecoder, SSEError
from circuitd.providers.base import Deployment, Operation, UpstreamCall, UpstreamFailure
from circuitd.providers.openai_presets import Preset, PresetTarget

DONE = "[DONE]"


def failure_from(exc: httpx.HTTPError) -> UpstreamFailure:
    """One place that turns httpx's exceptions into the gateway's upstream failure."""
    timeout = isinstance(exc, httpx.TimeoutException)
    connect = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
    kind = type(exc).__name__
    return UpstreamFailure(f"{kind}: {exc}" if str(exc) else kind, timeout=timeout, connect=connect)


def deployment_timeout(client: httpx.AsyncClient, deployment: Deployment) -> httpx.Timeout:
    """The client's timeouts with the deployment's overrides."""
    base = client.timeout
    if deployment.connect_timeout_s is None and deployment.read_timeout_s is None:
        return base
    connect = deployment.connect_timeout_s
    read = deployment.read_timeout_s
    return httpx.Timeout(
        connect=base.connect if connect is None else connect,
        read=base.read if read is None else read,
        write=base.write if read is None else read,
        pool=base.pool,
    )


class HttpxReply:
    __slots__ = ("_response", "content_type", "retry_after", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.retry_after = response.headers.get("retry-after")
        self.content_type = response.headers.get("content-type", "application/json").encode()

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except httpx.HTTPError as exc:
            raise failure_from(exc) from exc

    async def events(self) -> AsyncGenerator[str, None]:
        decoder = SSEDecoder()
        try:
            async for data in self._response.aiter_raw():
                for event in decoder.feed(data):
                    yield event.data
                    if event.data == DONE:
                        return
            decoder.end()
        except httpx.HTTPError as exc:
            raise failure_from(exc) from exc
        except SSEError as exc:
            raise UpstreamFailure(f"malformed event stream: {exc}") from exc


class OpenAIProvider:
    kind = "openai"

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        base_url: str | None,
        api_key: str | None,
        headers: Mapping[str, str] | None = None,
        preset: Preset = "openai",
        api_version: str | None = None,
    ) -> None:
        self.name = name
        self._client = client
        self.target = PresetTarget.of(preset, base_url, api_version)
        # Most presets have one URL per operation: composed here, not per call.
        operations: tuple[Operation, ...] = ("chat/completions", "embeddings")
        self._urls = {op: self.target.url(op, "") for op in operations}
        self._headers = {
            "content-type": "application/json",
            **(headers or {}),
            **self.target.auth_headers(api_key),
        }

    @asynccontextmanager
    async def open(self, deployment: Deployment, call: UpstreamCall) -> AsyncIterator[HttpxReply]:
        target = self.target
        url = (
            target.url(call.operation, deployment.upstream_model)
            if target.per_model
            else self._urls[call.operation]
        )
        request = self._client.build_request(
            "POST",
            url,
            content=call.body,
            headers=self._headers,
            timeout=deployment_timeout(self._client, deployment),
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise failure_from(exc) from exc
        try:
            yield HttpxReply(response)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        """The shared client is owned (and closed) by the gateway."""
