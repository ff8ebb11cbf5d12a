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
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
)
from contextlib import aclosing
from typing import Any, Final, TypeVar

import httpx
import trio

from circuitd.core.sse import SSEDecoder, SSEError, SSEEvent
from circuitd.providers.base import Deployment, UpstreamFailure
from circuitd.wire.openai_chat import DONE

__all__ = [
    "Endpoints",
    "Post",
    "Received",
    "data_batches",
    "deployment_timeout",
    "failure_from",
    "read_all",
    "sse_batches",
    "translated",
]


T = TypeVar("T")

# How long the rest of a body is read after its event stream's end ([DONE]): normally only
# the end of its chunked framing, sent right after but often in a later packet.
FINISH_GRACE_S: Final = 0.1


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


PREPARED_URLS = 256  # per provider


class Endpoints:
    """One provider's POST requests: each URL is parsed, and its headers merged with the
    client's defaults, once. httpx's `build_request` redoes both on every call (~25 µs, about
    a tenth of what the gateway itself spends on a call)."""

    def __init__(self, client: httpx.AsyncClient, headers: Mapping[str, str]) -> None:
        self.client = client
        self._headers = headers
        self._prepared: dict[str, tuple[httpx.URL, list[tuple[bytes, bytes]]]] = {}

    def __len__(self) -> int:
        """How many URLs are prepared."""
        return len(self._prepared)

    def request(self, url: str, body: bytes, deployment: Deployment) -> httpx.Request:
        prepared = self._prepared.get(url)
        if prepared is None:
            prototype = self.client.build_request("POST", url, headers=self._headers)
            raw = prototype.headers.raw
            prepared = (prototype.url, [h for h in raw if h[0].lower() != b"content-length"])
            # One URL per operation, or per model where the model is in the URL (Azure,
            # Gemini) — and in env-only mode the client names the model: bounded.
            if len(self._prepared) < PREPARED_URLS:
                self._prepared[url] = prepared
        url_, headers = prepared
        request = httpx.Request(
            "POST",
            url_,
            headers=[*headers, (b"Content-Length", str(len(body)).encode())],
            stream=httpx.ByteStream(body),
            extensions={"timeout": deployment_timeout(self.client, deployment).as_dict()},
        )
        request.read()  # the body is in memory: `request.content` (and a replay) can use it
        return request


class Received:
    """The upstream's response, its body not read yet, and the header fields the gateway
    reads, found in one pass over the raw headers: each of httpx's `Headers` lookups
    normalises and scans them all, the first one after decoding them all to pick an
    encoding (~2 µs a response for three lookups)."""

    __slots__ = ("content_type", "encoded", "response", "retry_after", "status")

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status = response.status_code
        content_type: bytes | None = None
        retry_after: bytes | None = None
        encoded = False
        for name, value in response.headers.raw:
            name = name.lower()
            if name == b"content-type":  # repeated ones joined, as httpx's `get` does
                content_type = value if content_type is None else content_type + b", " + value
            elif name == b"retry-after":
                retry_after = value if retry_after is None else retry_after + b", " + value
            elif name == b"content-encoding":
                encoded = True
        self.content_type = content_type  # None when the upstream did not say
        self.retry_after = None if retry_after is None else retry_after.decode("latin-1")
        self.encoded = encoded  # content-encoded: read through httpx's decoders


class Post:
    """`async with Post(endpoints, url, body, deployment) as received`: the upstream's
    response (`Received`), its body not read yet; closed (the request aborted if it is
    still running) when the block is left."""

    __slots__ = ("_client", "_request", "_response")

    def __init__(self, endpoints: Endpoints, url: str, body: bytes, deployment: Deployment) -> None:
        self._client = endpoints.client
        self._request = endpoints.request(url, body, deployment)

    async def __aenter__(self) -> Received:
        try:
            self._response = await self._client.send(self._request, stream=True)
        except httpx.HTTPError as exc:
            raise failure_from(exc) from exc
        return Received(self._response)

    async def __aexit__(self, *_: object) -> None:
        await self._response.aclose()


async def _body(received: Received) -> AsyncGenerator[bytes, None]:
    """The body as it arrives: the transport's own chunks unless it is content-encoded
    (httpx's decoding layers cost more than the read itself, and are needed only then).
    Closing this closes httpx's iterator under it too: an async generator left suspended
    (a stream read up to its `[DONE]`) would be finalized by trio in a task of its own."""
    response = received.response
    if received.encoded:
        chunks: AsyncIterator[bytes] = response.aiter_bytes()
    else:
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)  # an AsyncClient's
        chunks = aiter(stream)
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()


async def read_all(received: Received) -> bytes:
    try:
        async with aclosing(_body(received)) as chunks:
            return b"".join([chunk async for chunk in chunks])
    except httpx.HTTPError as exc:
        raise failure_from(exc) from exc


def sse_batches(received: Received) -> AsyncGenerator[list[SSEEvent], None]:
    """The response's events as they arrive, a non-empty batch per network read that
    completed any; ends with the body (an event cut short at the end raises
    `UpstreamFailure`, as a broken one does)."""
    return _decoded(received, SSEDecoder.feed)


async def data_batches(received: Received) -> AsyncGenerator[list[str], None]:
    """Each event's data, batched as `sse_batches`, ending after `[DONE]`: what `translated`
    makes of `sse_batches` for an adapter whose payloads are the events' data (OpenAI's),
    without an event object per event (`SSEDecoder.feed_data`)."""
    async with aclosing(_decoded(received, SSEDecoder.feed_data)) as batches:
        async for batch in batches:
            if DONE in batch:
                yield batch[: batch.index(DONE) + 1]
                await _read_past_the_end(batches)
                return
            yield batch


async def _read_past_the_end(batches: AsyncGenerator[Any, None]) -> None:
    """After the stream's `[DONE]` has been yielded (the client has its answer by the time
    this runs): reads and drops what is left of the body, for up to `FINISH_GRACE_S`. A
    body read to its end gives its connection back to the pool; one closed before its end
    closes it, and the next call pays for a new one (a TLS handshake, upstream). Anything
    wrong past the end is not the call's: it only costs the connection."""
    with trio.move_on_after(FINISH_GRACE_S):
        try:
            async for _ in batches:
                pass
        except UpstreamFailure:
            pass


async def _decoded(
    received: Received, decode: Callable[[SSEDecoder, bytes], list[T]]
) -> AsyncGenerator[list[T], None]:
    decoder = SSEDecoder()
    try:
        async with aclosing(_body(received)) as chunks:
            async for data in chunks:
                batch = decode(decoder, data)
                if batch:
                    yield batch
        decoder.end()
    except httpx.HTTPError as exc:
        raise failure_from(exc) from exc
    except SSEError as exc:
        raise UpstreamFailure(f"malformed event stream: {exc}") from exc


async def translated(
    batches: AsyncGenerator[list[SSEEvent], None], feed: Callable[[SSEEvent], Iterable[str]]
) -> AsyncGenerator[list[str], None]:
    """Each batch of upstream events as the OpenAI chunk payloads `feed` makes of them,
    ending after `[DONE]`. When `feed` raises (an error event), the payloads made before it
    are yielded first: what the upstream sent before failing is still relayed. `batches` is
    closed here, whenever this ends: left to the garbage collector, trio would finalize it
    in a task of its own (a wake-up of the loop and a task per stream)."""
    async with aclosing(batches):
        async for batch in batches:
            payloads: list[str] = []
            ended = False
            try:
                for event in batch:
                    for payload in feed(event):
                        payloads.append(payload)
                        if ended := payload == DONE:
                            break
                    if ended:
                        break
            except Exception:
                if payloads:
                    yield payloads
                raise
            if payloads:
                yield payloads
            if ended:
                await _read_past_the_end(batches)
                return
