"""Views of the OpenAI wire format: just the fields the gateway reads.

Everything else in a request passes through untouched; the gateway re-encodes a body only to
rename `model` and to ask for usage on streams (see `gateway.rewrite`).
"""

from __future__ import annotations

from typing import Any

import msgspec


class StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool | None = None


class Message(msgspec.Struct, frozen=True):
    role: str
    content: str | list[Any] | None = None
    name: str | None = None


class CircuitBreakerOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The request extension `"circuit_breaker": {...}`; consumed, never sent upstream."""

    fallback_models: list[str] = []


class ChatRequestView(msgspec.Struct, frozen=True):
    model: str
    messages: list[Message]
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    circuit_breaker: CircuitBreakerOptions | None = None


class PromptTokensDetails(msgspec.Struct, frozen=True):
    cached_tokens: int | None = 0


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int | None = None
    prompt_tokens_details: PromptTokensDetails | None = None

    @property
    def cached_tokens(self) -> int:
        details = self.prompt_tokens_details
        return (details.cached_tokens or 0) if details else 0


class ChoiceMessage(msgspec.Struct, frozen=True):
    content: str | None = None


class Choice(msgspec.Struct, frozen=True):
    message: ChoiceMessage | None = None


class CompletionView(msgspec.Struct, frozen=True):
    """A `chat.completion` body, reduced to what settlement needs (the text only to estimate
    usage when the provider reports none)."""

    usage: Usage | None = None
    choices: list[Choice] = []


class Delta(msgspec.Struct, frozen=True):
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[Any] | None = None


class ChoiceChunk(msgspec.Struct, frozen=True):
    delta: Delta | None = None
    finish_reason: str | None = None


class ChunkView(msgspec.Struct, frozen=True):
    """A `chat.completion.chunk` event, reduced to what the relay needs."""

    choices: list[ChoiceChunk] = []
    usage: Usage | None = None
    error: dict[str, Any] | None = None


class ModelEntry(msgspec.Struct, frozen=True):
    """One entry of `GET /v1/models`: OpenAI's fields plus the gateway's own."""

    id: str
    owned_by: str
    providers: list[str]
    deployments: list[str]
    context_window: int | None
    input_usd_per_mtok: float | None
    cached_input_usd_per_mtok: float | None
    output_usd_per_mtok: float | None
    object: str = "model"
    created: int = 0


class ModelList(msgspec.Struct, frozen=True):
    data: list[ModelEntry]
    object: str = "list"


chat_request_decoder = msgspec.json.Decoder(ChatRequestView)
completion_decoder = msgspec.json.Decoder(CompletionView)
chunk_decoder = msgspec.json.Decoder(ChunkView)
