"""Several keys per provider: splitting, fingerprints and the round-robin order (no I/O)."""

from __future__ import annotations

import pytest

from circuitd.core.keys import RoundRobin, fingerprint, keyed_name, provider_keys, split_keys


@pytest.mark.parametrize(
    ("values", "keys"),
    [
        ([""], ()),
        (["k1"], ("k1",)),
        (["k1,k2"], ("k1", "k2")),
        ([" k1 , ,k2,"], ("k1", "k2")),
        (["k1,k2", "k2", "k3"], ("k1", "k2", "k3")),  # repeats dropped, first order kept
        ([",,"], ()),
    ],
)
def test_split_keys(values: list[str], keys: tuple[str, ...]) -> None:
    assert split_keys(values) == keys


def test_configured_keys_win_over_the_environment() -> None:
    assert provider_keys(["", "a"], "x,y") == ("a",)
    assert provider_keys(["", ""], "x, y") == ("x", "y")
    assert provider_keys([], None) == ()


def test_fingerprint_is_stable_short_and_hides_the_key() -> None:
    key = "sk-proj-very-secret-0123456789"
    assert fingerprint(key) == fingerprint(key)
    assert len(fingerprint(key)) == 8
    assert fingerprint(key) != fingerprint(key + "x")
    assert key[-4:] not in fingerprint(key) and key[:4] not in fingerprint(key)
    assert keyed_name("openai/gpt-4o", None) == "openai/gpt-4o"
    assert keyed_name("openai/gpt-4o", "abcd1234") == "openai/gpt-4o#abcd1234"


def test_round_robin_rotates_each_group_and_keeps_group_order() -> None:
    ring = RoundRobin([["a1", "a2", "a3"], ["b"], ["c1", "c2"]])
    assert ring.spreads
    assert ring.members() == ("a1", "a2", "a3", "b", "c1", "c2")
    orders = [ring.next() for _ in range(4)]
    assert orders == [
        ("a1", "a2", "a3", "b", "c1", "c2"),
        ("a2", "a3", "a1", "b", "c2", "c1"),
        ("a3", "a1", "a2", "b", "c1", "c2"),
        ("a1", "a2", "a3", "b", "c2", "c1"),
    ]


def test_every_call_tries_every_member_once() -> None:
    ring = RoundRobin([["k1", "k2"], ["fallback"]])
    for _ in range(5):
        order = ring.next()
        assert sorted(order) == ["fallback", "k1", "k2"]
        assert order[-1] == "fallback"  # a model's keys before the next model


def test_single_members_do_not_spread() -> None:
    ring = RoundRobin([["a"], ["b"], []])
    assert not ring.spreads
    assert ring.next() == ring.next() == ("a", "b")


def test_first_choice_is_even_across_keys() -> None:
    ring = RoundRobin([["k1", "k2", "k3"]])
    firsts = [ring.next()[0] for _ in range(300)]
    assert {k: firsts.count(k) for k in ("k1", "k2", "k3")} == {"k1": 100, "k2": 100, "k3": 100}
