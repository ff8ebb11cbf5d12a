"""The built-in mock provider: deterministic text and realistic usage, no network.

It answers like `circuitd mock-upstream` (the same `script` and the same `"mock"` fault
object in the request body), but in-process, so `PROVIDER=MOCK` needs nothing else running.
Latency and chunk delays are real `trio.sleep`s: the mock stands in for a provider's timing.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import trio

from circuitd.config import MockConfig
from circuitd.core.embeddings import InputError
from circuitd.mockupstream.embeddings import decode_embeddings, render_embeddings
from circuitd.mockupstream.faults import NO_FAULT, Fault, error_body
from circuitd.mockupstream.script import plan_completion, render_completion, render_stream
from circuitd.providers.base import Deployment, UpstreamCall, UpstreamFailure
from circuitd.wire.openai import Message, StreamOptions

_JSON = b"application/json"


class MockRequest(msgspec.Struct, frozen=True):
    model: str
    messages: list[Message]
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    mock: Fault | None = None


_decoder = msgspec.json.Decoder(MockRequest)


class MockReply:
    __slots__ = ("_payloads", "body", "content_type", "fault", "retry_after", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        *,
        fault: Fault = NO_FAULT,
        payloads: list[bytes] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.fault = fault
        self.retry_after = None if fault.retry_after is None else f"{fault.retry_after:g}"
        self.content_type = _JSON
        self._payloads = payloads or []

    async def read(self) -> bytes:
        return self.body

    async def batches(self) -> AsyncGenerator[list[str], None]:
        """What is ready at once comes as one batch, as from a real upstream's socket: all
        of it without a chunk delay; a chunk at a time with one."""
        fault = self.fault
        delay = (fault.chunk_delay_ms or 0) / 1000
        batch: list[str] = []
        # payloads[0] is the role chunk; "after k chunks" counts content chunks after it.
        for index, payload in enumerate(self._payloads):
            content_index = index - 1
            if content_index >= 0:
                stall = fault.stall_after is not None and content_index >= fault.stall_after
                cut = fault.cut_after is not None and content_index >= fault.cut_after
                if batch and (stall or cut or delay):
                    yield batch
                    batch = []
                if stall:
                    await trio.sleep_forever()
                if cut:
                    raise UpstreamFailure("mock: connection cut")
                if fault.malformed_after is not None and content_index == fault.malformed_after:
                    batch.append("{not json")
                if delay:
                    await trio.sleep(delay)
            batch.append(payload.decode())
        if batch:
            yield batch


class MockProvider:
    kind = "mock"

    def __init__(self, name: str, settings: MockConfig) -> None:
        self.name = name
        self._defaults = Fault(
            latency_ms=settings.latency_ms or None,
            chunk_delay_ms=settings.chunk_delay_ms or None,
            chunks=settings.chunks,
        )
        self._tokens = settings.tokens
        self._ids = itertools.count(1)

    @asynccontextmanager
    async def open(self, deployment: Deployment, call: UpstreamCall) -> AsyncIterator[MockReply]:
        yield await self._answer(deployment, call)

    async def _answer(self, deployment: Deployment, call: UpstreamCall) -> MockReply:
        if call.operation == "embeddings":
            return await self._embeddings(deployment, call)
        try:
            request = _decoder.decode(call.body)
        except msgspec.DecodeError as exc:
            return MockReply(400, error_body(400, f"Invalid request: {exc}"))
        fault = (request.mock or NO_FAULT).over(self._defaults)
        if fault.latency_ms:
            await trio.sleep(fault.latency_ms / 1000)
        if fault.status is not None and fault.status >= 300:
            return MockReply(fault.status, error_body(fault.status, fault.message), fault=fault)
        tokens = fault.tokens if fault.tokens is not None else self._tokens
        plan = plan_completion(request, tokens=tokens, chunks=fault.chunks)
        completion_id = f"chatcmpl-mock{next(self._ids):012d}"
        created = int(time.time())
        include_usage = not fault.omit_usage
        if not request.stream:
            body = render_completion(
                plan,
                id=completion_id,
                created=created,
                model=deployment.upstream_model,
                include_usage=include_usage,
            )
            return MockReply(200, body, fault=fault)
        wants_usage = bool(request.stream_options and request.stream_options.include_usage)
        stream = render_stream(
            plan,
            id=completion_id,
            created=created,
            model=deployment.upstream_model,
            include_usage=include_usage and wants_usage,
        )
        return MockReply(200, fault=fault, payloads=stream.all())

    async def _embeddings(self, deployment: Deployment, call: UpstreamCall) -> MockReply:
        try:
            request, inputs = decode_embeddings(call.body)
        except (msgspec.DecodeError, InputError) as exc:
            return MockReply(400, error_body(400, f"Invalid request: {exc}", param="input"))
        fault = (request.mock or NO_FAULT).over(self._defaults)
        if fault.latency_ms:
            await trio.sleep(fault.latency_ms / 1000)
        if fault.failing:
            assert fault.status is not None
            return MockReply(fault.status, error_body(fault.status, fault.message), fault=fault)
        body = render_embeddings(request, inputs, model=deployment.upstream_model)
        return MockReply(200, body, fault=fault)

    async def aclose(self) -> None:
        """Nothing to release."""
