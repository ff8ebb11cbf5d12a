"""What the mock says: deterministic completions (sans-I/O); `openai_render` writes them.

Shared by `circuitd mock-upstream` (over sockets) and circuitd's in-process mock provider, so
that both give the same text and usage for the same request.

- `plan_completion(request, tokens=, chunks=, default_tokens=)` -> `Completion`: the assistant
  text (drawn from a fixed vocabulary, seeded by a hash of the last user message), its split
  into content pieces, and usage. One word is one completion token; `max_completion_tokens` /
  `max_tokens` cut the text and make `finish_reason` "length".
- `estimate_prompt_tokens(messages)`: ~4 characters per token + 4 per message + 3 for the
  reply priming. Deliberately simpler than `circuitd.core.tokens`: the provider's count is
  *its own*, and tests can tell provider usage from the gateway's estimate.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DEFAULT_TOKENS",
    "ChatRequestLike",
    "Completion",
    "MessageLike",
    "estimate_prompt_tokens",
    "mentions_weather",
    "message_text",
    "plan_completion",
]

DEFAULT_TOKENS = (16, 48)  # inclusive range of the hash-chosen length when none is asked for

_VOCABULARY = [
    "the",
    "a",
    "circuit",
    "gateway",
    "request",
    "token",
    "budget",
    "stream",
    "answer",
    "model",
    "provider",
    "latency",
    "quickly",
    "carefully",
    "every",
    "small",
    "large",
    "upstream",
    "client",
    "server",
    "response",
    "message",
    "chunk",
    "usage",
    "cost",
    "limit",
    "window",
    "breaker",
    "open",
    "closed",
    "half",
    "retry",
    "fallback",
    "signal",
    "route",
    "settle",
    "ledger",
    "value",
    "simple",
    "deterministic",
    "mock",
    "reply",
    "text",
    "word",
    "sentence",
    "because",
    "while",
    "after",
    "before",
    "never",
    "always",
    "often",
    "data",
    "path",
    "node",
    "queue",
    "batch",
    "writer",
    "reader",
    "socket",
]


class MessageLike(Protocol):
    """A chat message: `circuitd.wire.openai.Message` or any struct of the same shape."""

    @property
    def role(self) -> str: ...
    @property
    def content(self) -> object: ...  # str, a list of parts ({"type": "text", "text": ...}), None


class ChatRequestLike(Protocol):
    """The fields of a chat request the plan reads (`circuitd.wire.openai.ChatRequestView`)."""

    @property
    def messages(self) -> Sequence[MessageLike]: ...
    @property
    def max_tokens(self) -> int | None: ...
    @property
    def max_completion_tokens(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    pieces: list[str]  # the content deltas, in order; "".join(pieces) == text
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def message_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def mentions_weather(messages: Sequence[MessageLike]) -> bool:
    """Whether the last turn is the user's text mentioning "weather": then a request that
    leaves the choice to the model ("auto") gets a tool call, in every dialect."""
    last = messages[-1]
    return last.role == "user" and "weather" in message_text(last.content).lower()


def estimate_prompt_tokens(messages: Sequence[MessageLike]) -> int:
    return 3 + sum(4 + (len(message_text(m.content)) + 3) // 4 for m in messages)


def _seed(messages: Sequence[MessageLike]) -> int:
    last_user = next((m for m in reversed(messages) if m.role == "user"), None)
    text = message_text(last_user.content) if last_user is not None else ""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@functools.lru_cache(maxsize=4096)  # benchmarks repeat prompts; a miss costs a few µs
def _words(seed: int, count: int) -> tuple[str, ...]:
    """`count` words in sentences of 4-11 words, each capitalised and ending in '.', every
    word but the first with its leading space. shake_128 is a portable, fast PRNG here."""
    data = hashlib.shake_128(seed.to_bytes(8, "little")).digest(2 * count)
    vocabulary, size = _VOCABULARY, len(_VOCABULARY)
    words: list[str] = []
    sentence_left = 0
    for i in range(count):
        word = vocabulary[data[2 * i] % size]
        if sentence_left == 0:
            word = word.capitalize()
            sentence_left = 4 + data[2 * i + 1] % 8
        sentence_left -= 1
        if sentence_left == 0 or i == count - 1:
            word += "."
        words.append(" " + word if i else word)
    return tuple(words)


def plan_completion(
    request: ChatRequestLike,
    *,
    tokens: int | None = None,
    chunks: int | None = None,
    default_tokens: tuple[int, int] = DEFAULT_TOKENS,
) -> Completion:
    """The completion for `request`: `tokens` words if given, else a length chosen by the hash
    within `default_tokens` (at least `chunks`, so that many chunks can be sent), cut at the
    request's max tokens. `chunks` groups the words into that many pieces (default: one word
    per piece, as OpenAI streams roughly one token per chunk)."""
    seed = _seed(request.messages)
    if tokens is None:
        low, high = default_tokens
        tokens = low + seed % (high - low + 1)
        if chunks is not None:
            tokens = max(tokens, chunks)
    limit = request.max_completion_tokens
    if limit is None:
        limit = request.max_tokens
    finish_reason = "stop"
    if limit is not None and limit < tokens:
        tokens, finish_reason = max(limit, 0), "length"
    words = _words(seed, tokens)
    if chunks is None or chunks >= len(words):
        pieces = list(words)
    else:
        size, extra = divmod(len(words), max(chunks, 1))
        pieces, start = [], 0
        for i in range(max(chunks, 1)):
            end = start + size + (1 if i < extra else 0)
            pieces.append("".join(words[start:end]))
            start = end
    return Completion(
        text="".join(words),
        pieces=pieces,
        prompt_tokens=estimate_prompt_tokens(request.messages),
        completion_tokens=len(words),
        finish_reason=finish_reason,
    )
