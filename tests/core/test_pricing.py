from __future__ import annotations

from decimal import Decimal
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuitd.core.pricing import Price, PriceError, PriceTable, cost_micro_usd, micro_to_usd


def price(inp: float, out: float, cached: float | None = None) -> Price:
    return Price(input_usd_per_mtok=inp, output_usd_per_mtok=out, cached_input_usd_per_mtok=cached)


@pytest.mark.parametrize(
    ("p", "inp", "out", "cached", "micro"),
    [
        (price(0.15, 0.60), 0, 0, 0, 0),
        (price(0.15, 0.60), 1, 0, 0, 1),  # 0.15 µUSD, rounded up
        (price(0.15, 0.60), 0, 1, 0, 1),  # 0.60 µUSD, rounded up
        (price(0.15, 0.60), 1, 1, 0, 1),  # 0.75 µUSD: the call is rounded once, not per part
        (price(0.15, 0.60), 7, 0, 0, 2),  # 1.05 µUSD
        (price(2.50, 10.0), 1_000_000, 0, 0, 2_500_000),
        (price(2.50, 10.0), 0, 1_000_000, 0, 10_000_000),
        (price(1.00, 1.00), 7, 0, 0, 7),  # exactly 7 µUSD: no rounding
        (price(0.000001, 0), 999_999, 0, 0, 1),  # 999_999 pico-USD
        (price(0.000001, 0), 1_000_000, 0, 0, 1),  # exactly 1 µUSD
        (price(0.000001, 0), 1_000_001, 0, 0, 2),  # one pico-USD over
        (price(0.29, 0), 1_000_000, 0, 0, 290_000),  # 0.29 * 1e6 is 289999.99999999994 in floats
        # cached tokens are part of the input: 600 * 2.5 + 400 * 1.25 + 100 * 10 = 3000 µUSD
        (price(2.50, 10.0, 1.25), 1000, 100, 400, 3000),
        (price(2.50, 10.0), 1000, 100, 400, 3500),  # no cached price: input price
        (price(2.50, 10.0, 1.25), 1000, 0, 1000, 1250),
        (price(2.50, 10.0, 1.25), 10, 0, 50, 13),  # more cached than input: clamped (12.5)
        (price(0.0, 0.0), 10**9, 10**9, 0, 0),
        (price(2.50, 10.0), 10**15, 10**15, 0, 12_500_000_000_000_000),  # no float overflow
    ],
)
def test_cost_edges(p: Price, inp: int, out: int, cached: int, micro: int) -> None:
    got = cost_micro_usd(p, input_tokens=inp, output_tokens=out, cached_input_tokens=cached)
    assert got == micro
    assert isinstance(got, int)


def test_negative_tokens_rejected() -> None:
    with pytest.raises(PriceError):
        cost_micro_usd(price(1, 1), input_tokens=-1, output_tokens=0)


rates = st.decimals(min_value=0, max_value=1000, places=6)
counts = st.integers(min_value=0, max_value=10**9)


@given(rates, rates, st.none() | rates, counts, counts, counts)
def test_cost_is_the_exact_ceiling(
    inp: Decimal, out: Decimal, cached: Decimal | None, n_in: int, n_out: int, n_cached: int
) -> None:
    p = price(float(inp), float(out), None if cached is None else float(cached))
    n_cached = min(n_cached, n_in)
    exact = (
        (n_in - n_cached) * inp + n_cached * (inp if cached is None else cached) + n_out * out
    )  # USD * 1e6 / 1e6 tokens = µUSD
    got = cost_micro_usd(p, input_tokens=n_in, output_tokens=n_out, cached_input_tokens=n_cached)
    assert got == int(exact.to_integral_value(rounding="ROUND_CEILING"))


def test_micro_to_usd() -> None:
    assert micro_to_usd(2_500_000) == 2.5
    assert micro_to_usd(1) == 0.000001


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf")])
def test_price_rejects_bad_rates(bad: float) -> None:
    with pytest.raises(PriceError):
        price(bad, 1.0)
    with pytest.raises(PriceError):
        price(1.0, 1.0, bad)


# -- table ---------------------------------------------------------------------------------------

TABLE = PriceTable(
    {
        "gpt-4o": price(2.5, 10),
        "gpt-4o-mini": price(0.15, 0.6),
        "gpt-4": price(30, 60),
        "claude-sonnet-4": price(3, 15),
        "claude-sonnet-4-5": price(3, 15, 0.3),
        "gemini-2.0-flash": price(0.1, 0.4),
    }
)


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # the longest prefix wins
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4o1", None),  # a prefix must end at a "-"
        ("gpt-4.1", None),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-2.0", None),
        ("gpt", None),
        ("", None),
        ("-", None),
        ("-gpt-4o", None),
    ],
)
def test_lookup(model: str, base: str | None) -> None:
    expected = None if base is None else TABLE.lookup(base)
    assert TABLE.lookup(model) == expected
    if base is not None:
        assert expected is not None


def test_table_views() -> None:
    assert len(TABLE) == 6
    assert "gpt-4o" in TABLE
    assert "gpt-4o-2024-08-06" not in TABLE  # membership is exact; lookup() is the fuzzy one
    assert dict(TABLE.items())["gpt-4o"] == price(2.5, 10)
    assert sorted(TABLE)[0] == "claude-sonnet-4"


def test_from_toml() -> None:
    table = PriceTable.from_toml(
        b"[models]\n"
        b'"m" = { input_usd_per_mtok = 3, output_usd_per_mtok = 15.5 }\n'
        b'"n" = { input_usd_per_mtok = 1, cached_input_usd_per_mtok = 0.1, '
        b"output_usd_per_mtok = 2 }\n"
    )
    assert table.lookup("m") == price(3, 15.5)
    assert table.lookup("n-2025") == price(1, 2, 0.1)
    assert len(PriceTable.from_toml(b"")) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"[models\n", "not valid TOML"),
        (b"\xff", "not valid TOML"),
        (b"other = 1\n", "unknown key"),
        (b"models = 3\n", "must be a table"),
        (b"[models]\nm = 3\n", "models.m"),
        (b"[models]\nm = { input_usd_per_mtok = 1 }\n", "models.m: .*output_usd_per_mtok"),
        (
            b'[models]\nm = { input_usd_per_mtok = "1", output_usd_per_mtok = 1 }\n',
            "models.m: .*float",
        ),
        (b"[models]\nm = { input_usd_per_mtok = -1, output_usd_per_mtok = 1 }\n", "models.m"),
        (
            b"[models]\nm = { input_usd_per_mtok = 1, output_usd_per_mtok = 1, out = 2 }\n",
            "unknown field `out`",
        ),
        (b'[models]\n"" = { input_usd_per_mtok = 1, output_usd_per_mtok = 1 }\n', "model name"),
    ],
)
def test_from_toml_errors(text: bytes, message: str) -> None:
    with pytest.raises(PriceError, match=message):
        PriceTable.from_toml(text)


# -- the shipped table ---------------------------------------------------------------------------

SHIPPED = PriceTable.from_toml(resources.files("circuitd").joinpath("prices.toml").read_bytes())


@pytest.mark.parametrize(
    "model",
    [
        *("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3", "o4-mini"),
        *("gpt-5", "gpt-5-mini", "gpt-5-nano"),
        *("claude-opus-4-1", "claude-sonnet-4-5", "claude-sonnet-4", "claude-haiku-4-5"),
        "claude-3-5-haiku",
        *("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.0-flash"),
    ],
)
def test_shipped_table_has(model: str) -> None:
    assert model in SHIPPED


def test_shipped_table_is_sane() -> None:
    for model, p in SHIPPED.items():
        if "embedding" in model:  # input only: an embedding generates nothing
            assert p.input_usd_per_mtok > 0 == p.output_usd_per_mtok, model
        else:
            assert 0 < p.input_usd_per_mtok <= p.output_usd_per_mtok, model
        cached = p.cached_input_usd_per_mtok
        assert cached is None or cached < p.input_usd_per_mtok, model


@pytest.mark.parametrize(
    ("snapshot", "base"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # priced apart from gpt-4o
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("o3-pro-2025-06-10", "o3-pro"),  # not o3's price
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("gemini-2.0-flash-lite-001", "gemini-2.0-flash-lite"),
    ],
)
def test_shipped_snapshots(snapshot: str, base: str) -> None:
    assert SHIPPED.lookup(snapshot) == dict(SHIPPED.items())[base]
