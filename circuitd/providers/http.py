"""The HTTP plumbing of the adapters that translate a dialect (Anthropic, Gemini): POST the
translated body and hold the streamed response, read it whole, or iterate its SSE events.

httpx's errors become `UpstreamFailure` here (`failure_from`), and a broken event stream
one too, so an adapter only translates.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx

from circuitd.core.sse import SSEDecoder, SSEError, SSEEvent
from circuitd.providers.base import Deployment, UpstreamFailure
from circuitd.providers.openai import deployment_timeout, failure_from

__all__ = ["post", "read_all", "sse_events"]


@asynccontextmanager
async def post(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    deployment: Deployment,
) -> AsyncIterator[httpx.Response]:
    """The upstream's response, its body not read yet; closed (the request aborted if it is
    still running) when the context is left."""
    request = client.build_request(
        "POST",
        url,
        content=body,
        headers=headers,
        timeout=deployment_timeout(client, deployment),
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise failure_from(exc) from exc
    try:
        yield response
    finally:
        await response.aclose()


async def read_all(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    except httpx.HTTPError as exc:
        raise failure_from(exc) from exc


async def sse_events(response: httpx.Response) -> AsyncGenerator[SSEEvent, None]:
    """The response's events as they arrive; ends with the body (an event cut short at the
    end raises `UpstreamFailure`, as a broken one does)."""
    decoder = SSEDecoder()
    try:
        async for data in response.aiter_raw():
            for event in decoder.feed(data):
                yield event
        decoder.end()
    except httpx.HTTPError as exc:
        raise failure_from(exc) from exc
    except SSEError as exc:
        raise UpstreamFailure(f"malformed event stream: {exc}") from exc
