"""The built-in mock provider: deterministic text and realistic usage, no network.

It answers like `circuitd mock-upstream` (the same `mockupstream.chat` answers, tool calls
included, and the same `"mock"` fault object in the request body, `error_event_after` and
`tool_call` included), but in-process, so `PROVIDER=MOCK` needs nothing else running.
Latency and chunk delays are real `trio.sleep`s: the mock stands in for a provider's timing.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import trio

from circuitd.config import MockConfig
from circuitd.core.embeddings import InputError
from circuitd.mockupstream.chat import chat_decoder, plan_chat
from circuitd.mockupstream.embeddings import decode_embeddings, render_embeddings
from circuitd.mockupstream.faults import (
    CUT,
    DELAY,
    NO_FAULT,
    STALL,
    Fault,
    Frames,
    error_body,
    stream_steps,
)
from circuitd.providers.base import Deployment, UpstreamCall, UpstreamFailure

__all__ = ["MockProvider", "MockReply"]

_JSON = b"application/json"


def _payload(payload: bytes) -> bytes:
    return payload


class MockReply:
    __slots__ = ("_frames", "body", "content_type", "fault", "retry_after", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        *,
        fault: Fault = NO_FAULT,
        frames: Frames | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.fault = fault
        self.retry_after = None if fault.retry_after is None else f"{fault.retry_after:g}"
        self.content_type = _JSON
        self._frames = frames

    async def read(self) -> bytes:
        return self.body

    async def batches(self) -> AsyncGenerator[list[str], None]:
        """The stream's payloads with the fault's steps between them, as `circuitd
        mock-upstream` sends its events (`faults.stream_steps`). What is ready at once comes
        as one batch, as from a real upstream's socket: all of it without a chunk delay; the
        payloads between two delays with one. A cut is an `UpstreamFailure`."""
        if self._frames is None:  # a JSON answer: no events
            return
        delay = (self.fault.chunk_delay_ms or 0) / 1000
        batch: list[str] = []
        for step in stream_steps(self._frames, self.fault):
            if isinstance(step, bytes):
                batch.append(step.decode())
                continue
            if batch:
                yield batch
                batch = []
            if step is DELAY:
                await trio.sleep(delay)
            elif step is STALL:
                await trio.sleep_forever()
            elif step is CUT:
                raise UpstreamFailure("mock: connection cut")
        if batch:
            yield batch


def _failed(status: int, fault: Fault) -> MockReply:
    return MockReply(status, error_body(status, fault.message), fault=fault)


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

    async def _fault(self, mock: Fault | None) -> Fault:
        """The request's fault over the provider's defaults, once its latency has passed."""
        fault = (mock or NO_FAULT).over(self._defaults)
        if fault.latency_ms:
            await trio.sleep(fault.latency_ms / 1000)
        return fault

    @asynccontextmanager
    async def open(self, deployment: Deployment, call: UpstreamCall) -> AsyncIterator[MockReply]:
        yield await self._answer(deployment, call)

    async def _answer(self, deployment: Deployment, call: UpstreamCall) -> MockReply:
        if call.operation == "embeddings":
            return await self._embeddings(deployment, call)
        try:
            request = chat_decoder.decode(call.body)
        except msgspec.DecodeError as exc:
            return MockReply(400, error_body(400, f"Invalid request: {exc}"))
        fault = await self._fault(request.mock)
        if fault.status is not None and fault.status >= 300:
            return _failed(fault.status, fault)
        answer = plan_chat(
            request,
            fault,
            id=f"chatcmpl-mock{next(self._ids):012d}",
            model=deployment.upstream_model,
            tokens=self._tokens,
        )
        if not request.stream:
            return MockReply(200, answer.json(), fault=fault)
        return MockReply(200, fault=fault, frames=answer.frames(_payload))

    async def _embeddings(self, deployment: Deployment, call: UpstreamCall) -> MockReply:
        try:
            request, inputs = decode_embeddings(call.body)
        except (msgspec.DecodeError, InputError) as exc:
            return MockReply(400, error_body(400, f"Invalid request: {exc}", param="input"))
        fault = await self._fault(request.mock)
        if fault.failing:
            assert fault.status is not None
            return _failed(fault.status, fault)
        body = render_embeddings(request, inputs, model=deployment.upstream_model)
        return MockReply(200, body, fault=fault)

    async def aclose(self) -> None:
        """Nothing to release."""
