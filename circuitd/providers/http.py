"""The HTTP plumbing every upstream adapter shares: POST a body and hold the streamed
response, read it whole, or iterate its SSE events in batches.

A batch is the events one network read brought: the relay forwards a batch with one send,
so a stream that arrives in a few reads costs a few writes to the client, not one per event,
and nothing waits for more data than has arrived. httpx's errors become `UpstreamFailure`
here (`failure_from`), and a broken event stream one too, so an adapter only translates.
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
)
from contextlib import asynccontextmanager

import httpx

from circuitd.core.sse import SSEDecoder, SSEError, SSEEvent
from circuitd.providers.base import Deployment, UpstreamFailure
from circuitd.wire.openai_chat import DONE

__all__ = [
    "deployment_timeout",
    "failure_from",
    "post",
    "read_all",
    "sse_batches",
    "translated",
]


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


async def sse_batches(response: httpx.Response) -> AsyncGenerator[list[SSEEvent], None]:
    """The response's events as they arrive, a non-empty batch per network read that
    completed any; ends with the body (an event cut short at the end raises
    `UpstreamFailure`, as a broken one does)."""
    decoder = SSEDecoder()
    try:
        async for data in response.aiter_raw():
            batch = decoder.feed(data)
            if batch:
                yield batch
        decoder.end()
    except httpx.HTTPError as exc:
        raise failure_from(exc) from exc
    except SSEError as exc:
        raise UpstreamFailure(f"malformed event stream: {exc}") from exc


async def translated(
    batches: AsyncIterable[list[SSEEvent]], feed: Callable[[SSEEvent], Iterable[str]]
) -> AsyncGenerator[list[str], None]:
    """Each batch of upstream events as the OpenAI chunk payloads `feed` makes of them,
    ending after `[DONE]`. When `feed` raises (an error event), the payloads made before it
    are yielded first: what the upstream sent before failing is still relayed."""
    async for batch in batches:
        payloads: list[str] = []
        try:
            for event in batch:
                for payload in feed(event):
                    payloads.append(payload)
                    if payload == DONE:
                        yield payloads
                        return
        except Exception:
            if payloads:
                yield payloads
            raise
        if payloads:
            yield payloads
