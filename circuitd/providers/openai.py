"""OpenAI-compatible adapter (OpenAI, Azure OpenAI, Ollama, vLLM, any server speaking its API).

The canonical format *is* OpenAI's, so requests pass through as bytes and stream events are
only split into payloads, never re-encoded. Where a preset puts the URL and the key is
`openai_presets`; chat completions and embeddings go through the same path.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx

from circuitd.providers.base import Deployment, Operation, UpstreamCall
from circuitd.providers.http import (
    Endpoints,
    Post,
    Received,
    data_batches,
    failure_from,
    read_all,
)
from circuitd.providers.openai_presets import Preset, PresetTarget

__all__ = ["HttpxReply", "OpenAIProvider", "failure_from"]


class HttpxReply:
    __slots__ = ("_received", "content_type", "retry_after", "status")

    def __init__(self, received: Received) -> None:
        self._received = received
        self.status = received.status
        self.retry_after = received.retry_after
        self.content_type = received.content_type or b"application/json"

    async def read(self) -> bytes:
        return await read_all(self._received)

    def batches(self) -> AsyncGenerator[list[str], None]:
        return data_batches(self._received)


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
        self.target = PresetTarget.of(preset, base_url, api_version)
        # Most presets have one URL per operation: composed here, not per call.
        operations: tuple[Operation, ...] = ("chat/completions", "embeddings")
        self._urls = {op: self.target.url(op, "") for op in operations}
        self._endpoints = Endpoints(
            client,
            {
                "content-type": "application/json",
                **(headers or {}),
                **self.target.auth_headers(api_key),
            },
        )

    @asynccontextmanager
    async def open(self, deployment: Deployment, call: UpstreamCall) -> AsyncIterator[HttpxReply]:
        target = self.target
        url = (
            target.url(call.operation, deployment.upstream_model)
            if target.per_model
            else self._urls[call.operation]
        )
        async with Post(self._endpoints, url, call.body, deployment) as received:
            yield HttpxReply(received)

    async def aclose(self) -> None:
        """The shared client is owned (and closed) by the gateway."""
