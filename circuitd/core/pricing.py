"""Prices and the cost of a call, in integer micro-USD (µUSD), exactly (sans-I/O).

Prices are quoted as USD per million tokens, which is numerically the same as pico-USD
(1e-12 USD) per token. Each rate is turned into an integer count of pico-USD per token (rates
finer than 1e-6 USD per million tokens are rounded to that), the call's total is summed in
integers, and the total is rounded *up* to the next µUSD: never under-charge, never drift.

Cached tokens follow OpenAI's usage semantics: `input_tokens` includes `cached_input_tokens`.
Tiered prices (long-context surcharges) and cache *writes* (Anthropic bills those at 1.25x
input) are not modelled: operators price such deployments explicitly in their config.

`PriceTable.from_toml` takes the file's bytes (the caller reads `circuitd/prices.toml` with
`importlib.resources`) and `lookup` maps dated snapshots to their base model.
"""

from __future__ import annotations

import math
from collections.abc import ItemsView, Iterator, Mapping

import msgspec

__all__ = ["Price", "PriceError", "PriceTable", "cost_micro_usd", "micro_to_usd"]

_PICO_PER_MICRO = 1_000_000


class PriceError(ValueError):
    """A price file or price that cannot be used."""


class Price(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    cached_input_usd_per_mtok: float | None = None  # None: cached input costs as much as input

    def __post_init__(self) -> None:
        for rate in (self.input_usd_per_mtok, self.output_usd_per_mtok):
            _check_rate(rate)
        if self.cached_input_usd_per_mtok is not None:
            _check_rate(self.cached_input_usd_per_mtok)


def _check_rate(rate: float) -> None:
    if not math.isfinite(rate) or rate < 0:
        # msgspec turns ValueError raised here into a ValidationError naming the field.
        raise PriceError(f"price must be a finite number >= 0, got {rate!r}")


def _pico_per_token(usd_per_mtok: float) -> int:
    # round(), not int(): 0.15 * 1e6 is 150000.00000000003 and 0.29 * 1e6 is 289999.99999999994
    return round(usd_per_mtok * 1_000_000)


def cost_micro_usd(
    price: Price, *, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
) -> int:
    """The call's cost in µUSD, rounded up. `cached_input_tokens` is a subset of the input;
    a provider that reports more cached than input tokens is clamped to all-cached."""
    if input_tokens < 0 or output_tokens < 0 or cached_input_tokens < 0:
        raise PriceError("token counts must be >= 0")
    cached = min(cached_input_tokens, input_tokens)
    input_rate = _pico_per_token(price.input_usd_per_mtok)
    cached_rate = (
        input_rate
        if price.cached_input_usd_per_mtok is None
        else _pico_per_token(price.cached_input_usd_per_mtok)
    )
    pico = (
        (input_tokens - cached) * input_rate
        + cached * cached_rate
        + output_tokens * _pico_per_token(price.output_usd_per_mtok)
    )
    return -(-pico // _PICO_PER_MICRO)


def micro_to_usd(micro: int) -> float:
    return micro / 1_000_000


class PriceTable:
    """Model name → `Price`. Immutable once built."""

    __slots__ = ("_prices",)

    def __init__(self, prices: Mapping[str, Price]) -> None:
        for model in prices:
            if not model or model != model.strip():
                raise PriceError(f"bad model name {model!r}")
        self._prices = dict(prices)

    @classmethod
    def from_toml(cls, text: bytes) -> PriceTable:
        """Parse a price file: a `[models]` table of `"name" = { input_usd_per_mtok = ...,
        cached_input_usd_per_mtok = ..., output_usd_per_mtok = ... }` entries."""
        try:
            doc = msgspec.toml.decode(text)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise PriceError(f"price file is not valid TOML: {exc}") from None
        unknown = sorted(set(doc) - {"models"})
        if unknown:
            raise PriceError(f"unknown key(s) in price file: {', '.join(unknown)}")
        models = doc.get("models", {})
        if not isinstance(models, dict):
            raise PriceError("`models` must be a table")
        prices: dict[str, Price] = {}
        for model, entry in models.items():
            try:  # one model at a time, so that an error names the model
                prices[model] = msgspec.convert(entry, Price)
            except msgspec.ValidationError as exc:
                raise PriceError(f"models.{model}: {exc}") from None
        return cls(prices)

    def updated(self, overrides: Mapping[str, Price]) -> PriceTable:
        """A copy with `overrides` added or replacing entries of the same name."""
        return PriceTable({**self._prices, **overrides})

    def lookup(self, model: str) -> Price | None:
        """The price of `model`, else of its longest known prefix ending at a '-': dated
        snapshots and aliases (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`,
        `gemini-2.0-flash-001`) cost what their base model costs."""
        prices = self._prices
        price = prices.get(model)
        end = len(model)
        while price is None:
            end = model.rfind("-", 0, end)
            if end <= 0:
                return None
            price = prices.get(model[:end])
        return price

    def items(self) -> ItemsView[str, Price]:
        return self._prices.items()

    def __contains__(self, model: object) -> bool:
        return model in self._prices

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)
