"""The Gemini `generateContent` dialect: pure translations to and from the canonical OpenAI
wire.

Split by direction (each module states its rules at the top):
- `gemini_request`: OpenAI chat request → `generateContent` request (`TranslationError`);
- `gemini_response`: `GenerateContentResponse` → `chat.completion`, errors → OpenAI errors;
- `gemini_stream`: `streamGenerateContent?alt=sse` events → `chat.completion.chunk` payloads.

No I/O here: `providers.gemini` is the adapter that sends and receives.
"""

from __future__ import annotations

from circuitd.wire.gemini_request import TranslationError, openai_request_to_gemini
from circuitd.wire.gemini_response import (
    finish_reason,
    gemini_error_to_openai,
    gemini_response_to_openai,
    retry_delay,
)
from circuitd.wire.gemini_stream import DONE, GeminiStreamTranslator, StreamError

__all__ = [
    "DONE",
    "GeminiStreamTranslator",
    "StreamError",
    "TranslationError",
    "finish_reason",
    "gemini_error_to_openai",
    "gemini_response_to_openai",
    "openai_request_to_gemini",
    "retry_delay",
]
