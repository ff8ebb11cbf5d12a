"""`POST /v1/embeddings`: what differs from a chat call before the shared pipeline runs it.

An embeddings call goes through `App._chat` like any chat call (auth, admission, router with
breakers, retries and fallback, `json_attempt`, settlement: one ledger row); this module
decodes its body and picks its candidates:

- the body is checked (`core.embeddings`: `input` shapes, at most 2048 items) and its input
  tokens are counted up front, so admission reserves exactly input tokens at the input price
  (no output) and settlement falls back to that count if the upstream reports no usage;
- the chat pipeline reads a `ChatRequestView`: here one with the model and the
  `circuit_breaker` extension (fallback models) and no messages;
- only providers with an embeddings API (`EMBEDDING_KINDS`: OpenAI-compatible, mock) are
  tried; other deployments (Anthropic, Gemini) are skipped, and a model served by none of
  them is a 400.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from circuitd.core.embeddings import InputError, input_tokens, split_inputs
from circuitd.core.tokens import Tokenizer
from circuitd.errors import InvalidRequest
from circuitd.providers.base import EMBEDDING_KINDS, Deployment
from circuitd.wire.openai import ChatRequestView
from circuitd.wire.openai_embeddings import embedding_request_decoder

__all__ = ["EmbeddingsRequest", "decode_embeddings_request", "embedding_candidates"]


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    view: ChatRequestView  # model and fallbacks as the chat pipeline reads them; no messages
    input_tokens: int

    @property
    def tokens(self) -> tuple[int, int]:
        """(prompt, output) for admission: nothing is generated."""
        return self.input_tokens, 0


def decode_embeddings_request(body: bytes, tokenizer: Tokenizer) -> EmbeddingsRequest:
    try:
        request = embedding_request_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request.") from None
    if not request.model:
        raise InvalidRequest("`model` must be a non-empty string.", param="model")
    try:
        inputs = split_inputs(request.input)
    except InputError as exc:
        raise InvalidRequest(str(exc), param="input") from None
    view = ChatRequestView(
        model=request.model, messages=[], circuit_breaker=request.circuit_breaker
    )
    return EmbeddingsRequest(view, input_tokens(inputs, tokenizer))


def embedding_candidates(candidates: Sequence[Deployment], model: str) -> list[Deployment]:
    """The candidates whose provider has an embeddings API; 400 when there is none."""
    able = [d for d in candidates if d.provider.kind in EMBEDDING_KINDS]
    if not able:
        kinds = ", ".join(sorted({d.provider.kind for d in candidates}))
        raise InvalidRequest(
            f"The model `{model}` is served only by providers without an embeddings API "
            f"({kinds}); embeddings need an OpenAI-compatible provider.",
            param="model",
        )
    return able
