"""A view of the OpenAI `POST /v1/embeddings` request: just the fields the gateway reads.

The body is forwarded as it came (`model` renamed for a deployment, the gateway's
`circuit_breaker` extension removed); `input` is checked by `core.embeddings`, which
msgspec's unions of arrays cannot express. The answer is relayed as `json_attempt` relays a
chat completion: only its `usage` is read (`prompt_tokens`; no completion tokens).
"""

from __future__ import annotations

from typing import Any

import msgspec

from circuitd.wire.openai import CircuitBreakerOptions


class EmbeddingRequestView(msgspec.Struct, frozen=True):
    model: str
    input: str | list[Any]
    circuit_breaker: CircuitBreakerOptions | None = None  # the gateway's extension


embedding_request_decoder = msgspec.json.Decoder(EmbeddingRequestView)
