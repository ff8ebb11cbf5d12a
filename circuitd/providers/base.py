"""The provider seam: how the relay talks to any upstream, in the OpenAI wire format.

A provider turns a canonical (OpenAI-shaped) request body into an upstream call and exposes
the answer as a `Reply`: status, a few headers, and either the whole JSON body (`read`) or the
stream's event payloads (`events`, each an OpenAI `chat.completion.chunk` JSON text or
`[DONE]`). Providers with another dialect translate inside; the relay never knows.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from circuitd.core.pricing import Price


@dataclass(frozen=True, slots=True)
class Deployment:
    """One place a model can be served: provider + upstream model (+ key, later)."""

    name: str
    provider: Provider
    upstream_model: str
    price: Price | None
    context_window: int | None = None
    max_output_tokens: int | None = None
    connect_timeout_s: float | None = None  # None: the shared client's
    read_timeout_s: float | None = None
    attempt_timeout_s: float | None = None  # None: only the call's deadline


# What a call asks for, named as the OpenAI path under /v1. Only providers that have an
# `embeddings` API (`EMBEDDING_KINDS`) are ever given an embeddings call.
Operation = Literal["chat/completions", "embeddings"]
EMBEDDING_KINDS = frozenset({"openai", "mock"})


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    request_id: str
    body: bytes  # canonical request JSON, already rewritten for this deployment
    stream: bool
    operation: Operation = "chat/completions"


class UpstreamFailure(Exception):
    """The upstream could not be reached or broke the protocol (connect error, cut, garbage).

    `timeout`: a timeout passed (connect, first byte, idle gap); `connect`: no connection
    was made, so the upstream saw nothing of the request; `status`: the HTTP status the
    upstream's in-stream error event stands for (an Anthropic `overloaded_error` is a 529), so
    that retries and the breaker treat it like the same error answered up front.
    """

    def __init__(
        self,
        message: str,
        *,
        timeout: bool = False,
        connect: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.connect = connect
        self.status = status


class UnsupportedRequest(Exception):
    """The request cannot be expressed in this provider's dialect (e.g. `n` > 1 for
    Anthropic): the client's fault, answered 400 and never retried."""


class Reply(Protocol):
    status: int
    retry_after: str | None
    content_type: bytes

    async def read(self) -> bytes:
        """The whole body (JSON answers and error bodies)."""
        ...

    def batches(self) -> AsyncGenerator[list[str], None]:
        """Stream event payloads in OpenAI chunk format, in non-empty batches of those that
        arrived together (the relay writes a batch to the client at once); ends after
        `[DONE]` or raises `UpstreamFailure` if the stream is cut or malformed."""
        ...


class Provider(Protocol):
    name: str  # as configured, e.g. "openai"
    kind: str  # adapter family, e.g. "openai", "mock"

    def open(
        self, deployment: Deployment, call: UpstreamCall
    ) -> AbstractAsyncContextManager[Reply]:
        """Starts the upstream call; the reply is valid inside the context. Leaving the
        context early (cancellation, client gone) aborts the upstream request."""
        ...

    async def aclose(self) -> None: ...
