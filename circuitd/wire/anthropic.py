"""The Anthropic Messages dialect: pure translations to and from the canonical OpenAI wire.

Split by direction (each module states its rules at the top):
- `anthropic_request`: OpenAI chat request → `/v1/messages` request (`TranslationError`);
- `anthropic_response`: Messages answer → `chat.completion`, error answers → OpenAI errors;
- `anthropic_stream`: Messages stream events → `chat.completion.chunk` payloads.

No I/O here: `providers.anthropic` is the adapter that sends and receives.
"""

from __future__ import annotations

from circuitd.wire.anthropic_request import TranslationError, openai_request_to_anthropic
from circuitd.wire.anthropic_response import (
    anthropic_error_to_openai,
    anthropic_response_to_openai,
    finish_reason,
)
from circuitd.wire.anthropic_stream import DONE, AnthropicStreamTranslator, StreamError

__all__ = [
    "DONE",
    "AnthropicStreamTranslator",
    "StreamError",
    "TranslationError",
    "anthropic_error_to_openai",
    "anthropic_response_to_openai",
    "finish_reason",
    "openai_request_to_anthropic",
]
