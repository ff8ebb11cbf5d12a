"""Embedding inputs: accepted shapes, refusals, token counts (no I/O)."""

from __future__ import annotations

import pytest

from circuitd.core.embeddings import MAX_INPUTS, InputError, input_tokens, split_inputs
from circuitd.core.tokens import HeuristicTokenizer


@pytest.mark.parametrize(
    ("value", "inputs"),
    [
        ("hello", ["hello"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1, 2], [3]], [[1, 2], [3]]),
        (["x"] * MAX_INPUTS, ["x"] * MAX_INPUTS),
    ],
)
def test_accepted_shapes(value: object, inputs: list[object]) -> None:
    assert split_inputs(value) == inputs


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "empty string"),
        ([], "non-empty"),
        (None, "non-empty"),
        (42, "non-empty"),
        ({"text": "x"}, "non-empty"),
        (["a", ""], "empty strings"),
        (["a", 1], "may not mix"),
        ([[1], []], "may not mix"),
        ([1, -1], "may not mix"),
        ([True, 2], "may not mix"),
        ([1.5], "may not mix"),
        ([[1], ["a"]], "may not mix"),
        (["x"] * (MAX_INPUTS + 1), "at most 2048"),
    ],
)
def test_refused_shapes(value: object, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        split_inputs(value)


def test_tokens_count_text_by_tokenizer_and_ids_exactly() -> None:
    tokenizer = HeuristicTokenizer()
    text = "The gateway counts embedding input before the call."
    assert input_tokens([[1, 2, 3], [4]], tokenizer) == 4
    assert input_tokens([text, [7, 8]], tokenizer) == tokenizer.count(text) + 2
    assert input_tokens([text], tokenizer) > 0
