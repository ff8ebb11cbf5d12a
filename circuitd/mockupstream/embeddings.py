"""What the mock answers to `POST /v1/embeddings` (sans-I/O; shared with the mock provider).

Each input gets a deterministic unit vector seeded by a hash of its text (or token ids), as
floats or as base64 little-endian float32 (the openai SDK asks for base64 by default). Usage
counts ~4 characters per token for text, like the mock's chat prompts, and token ids as they
are: the mock's own count, which tests can tell from the gateway's estimate.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import struct
from typing import Any

import msgspec

from circuitd.core.embeddings import EmbeddingInput, InputError, split_inputs
from circuitd.mockupstream.faults import Fault

__all__ = ["DEFAULT_DIMENSIONS", "EmbeddingsBody", "decode_embeddings", "render_embeddings"]

DEFAULT_DIMENSIONS = 1536  # text-embedding-3-small and ada-002
_DIMENSIONS = {"text-embedding-3-large": 3072}
MAX_DIMENSIONS = 4096


class EmbeddingsBody(msgspec.Struct, frozen=True):
    model: str
    input: str | list[Any]
    encoding_format: str | None = None
    dimensions: int | None = None
    mock: Fault | None = None


_decoder = msgspec.json.Decoder(EmbeddingsBody)


class _Embedding(msgspec.Struct, kw_only=True):  # fields in OpenAI's order
    object: str = "embedding"
    index: int
    embedding: list[float] | str


class _Usage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class _List(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[_Embedding]
    model: str
    usage: _Usage


_encode = msgspec.json.Encoder().encode


def decode_embeddings(body: bytes) -> tuple[EmbeddingsBody, list[EmbeddingInput]]:
    """Raises `msgspec.DecodeError` (bad JSON or fields) or `InputError` (bad values)."""
    request = _decoder.decode(body)
    inputs = split_inputs(request.input)
    if request.encoding_format not in (None, "float", "base64"):
        raise InputError("`encoding_format` must be 'float' or 'base64'.")
    if request.dimensions is not None and not 1 <= request.dimensions <= MAX_DIMENSIONS:
        raise InputError(f"`dimensions` must be between 1 and {MAX_DIMENSIONS}.")
    return request, inputs


@functools.lru_cache(maxsize=1024)
def _vector(seed: bytes, dimensions: int) -> tuple[float, ...]:
    data = hashlib.shake_128(seed).digest(2 * dimensions)
    raw = [
        int.from_bytes(data[2 * i : 2 * i + 2], "little") / 32768.0 - 1.0 for i in range(dimensions)
    ]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return tuple(round(v / norm, 6) for v in raw)


def _seed(item: EmbeddingInput) -> bytes:
    text = item if isinstance(item, str) else ",".join(map(str, item))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _tokens(item: EmbeddingInput) -> int:
    return max(1, (len(item) + 3) // 4) if isinstance(item, str) else len(item)


def render_embeddings(
    request: EmbeddingsBody, inputs: list[EmbeddingInput], *, model: str
) -> bytes:
    dimensions = request.dimensions or _DIMENSIONS.get(model, DEFAULT_DIMENSIONS)
    data = []
    for index, item in enumerate(inputs):
        vector = _vector(_seed(item), dimensions)
        embedding: list[float] | str = list(vector)
        if request.encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append(_Embedding(index=index, embedding=embedding))
    tokens = sum(_tokens(item) for item in inputs)
    return _encode(_List(data=data, model=model, usage=_Usage(tokens, tokens)))
