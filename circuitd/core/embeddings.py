"""Embedding inputs (sans-I/O): what `input` may hold, and its tokens for admission.

OpenAI's `input` is a string, an array of strings, an array of token ids, or an array of
token-id arrays; at most 2048 items, none empty. `split_inputs` turns it into one item per
embedding (a string or a token-id list) or raises `InputError` with a message fit for the
client. `input_tokens` counts them: strings with the gateway's tokenizer (an estimate),
token ids exactly. Nothing is generated, so a call's worst case is its input alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from circuitd.core.tokens import Tokenizer

__all__ = ["MAX_INPUTS", "EmbeddingInput", "InputError", "input_tokens", "split_inputs"]

MAX_INPUTS = 2048
EmbeddingInput = str | list[int]


class InputError(ValueError):
    """`input` is not something an embeddings API accepts."""


def _token_ids(value: list[object]) -> list[int] | None:
    if value and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value):
        return [t for t in value if isinstance(t, int)]
    return None


def split_inputs(value: object) -> list[EmbeddingInput]:
    if isinstance(value, str):
        if not value:
            raise InputError("`input` must not be an empty string.")
        return [value]
    if not isinstance(value, list) or not value:
        raise InputError(
            "`input` must be a non-empty string, array of strings, array of token ids, "
            "or array of token-id arrays."
        )
    if len(value) > MAX_INPUTS:
        raise InputError(f"`input` may hold at most {MAX_INPUTS} items, not {len(value)}.")
    if all(isinstance(item, str) for item in value):
        if not all(value):
            raise InputError("`input` must not contain empty strings.")
        return [item for item in value if isinstance(item, str)]
    ids = _token_ids(value)
    if ids is not None:
        return [ids]
    arrays = [_token_ids(item) if isinstance(item, list) else None for item in value]
    if all(a is not None for a in arrays):
        return [a for a in arrays if a is not None]
    raise InputError(
        "`input` must be a string, an array of strings, an array of token ids (integers ≥ 0) "
        "or an array of non-empty token-id arrays; its items may not mix these."
    )


def input_tokens(inputs: Sequence[EmbeddingInput], tokenizer: Tokenizer) -> int:
    return sum(tokenizer.count(i) if isinstance(i, str) else len(i) for i in inputs)
