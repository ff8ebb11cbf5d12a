"""Several API keys per provider (sans-I/O): splitting, fingerprints, spreading calls.

A provider with several keys (`api_keys = ["k1", "k2"]`, or `OPENAI_API_KEY=k1,k2`) serves
each of its deployments once per key: `openai/gpt-4o-mini#3fa9c1d2`, `...#90be4c11`. Each
has its own breaker, so a revoked or overloaded key is taken out of rotation alone.

Spreading: round-robin among the keys of one configured deployment. Every call starts at
that deployment's next key and, if it fails there, tries its other keys (ring order) before
the next configured deployment (the fallback). An open breaker skips its key as it skips any
deployment, so the healthy keys share the traffic between them. Retries (`[retry]`) stay per
deployment, so per key: a retryable 5xx is retried on the same key before the next key is
tried; a refused key (401/403) is not retried and counts against that key's breaker.

A key is never shown: names, logs, metrics and `/health` carry its `fingerprint`, a short
prefix of its SHA-256 that tells keys apart without revealing anything usable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

__all__ = [
    "FINGERPRINT_HEX",
    "RoundRobin",
    "fingerprint",
    "keyed_name",
    "provider_keys",
    "split_keys",
]

FINGERPRINT_HEX = 8  # 32 bits: distinct for any realistic number of keys, useless to guess one
T = TypeVar("T")


def split_keys(values: Iterable[str]) -> tuple[str, ...]:
    """The keys in `values` (each possibly a comma list), stripped, blanks and repeats
    dropped, in order."""
    keys: dict[str, None] = {}
    for value in values:
        for key in value.split(","):
            if key.strip():
                keys[key.strip()] = None
    return tuple(keys)


def provider_keys(configured: Iterable[str], from_env: str | None) -> tuple[str, ...]:
    """A provider's keys: those in its config (`api_key`, `api_keys`), else those in its
    environment variable (a comma list)."""
    return split_keys(configured) or split_keys([from_env or ""])


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:FINGERPRINT_HEX]


def keyed_name(name: str, key_fingerprint: str | None) -> str:
    """A deployment's name for one of several keys (unchanged for a provider's only key)."""
    return name if key_fingerprint is None else f"{name}#{key_fingerprint}"


class RoundRobin(Generic[T]):
    """The order a call tries a model's deployments in: groups (one configured deployment's
    keys) in their configured order, each group rotated to start at its next member."""

    __slots__ = ("_groups", "_turns")

    def __init__(self, groups: Sequence[Sequence[T]]) -> None:
        self._groups = tuple(tuple(group) for group in groups if group)
        self._turns = [0] * len(self._groups)

    @property
    def spreads(self) -> bool:
        """Whether any group has more than one member (else the order never changes)."""
        return any(len(group) > 1 for group in self._groups)

    def members(self) -> tuple[T, ...]:
        """Every member in configured order (what a listing shows)."""
        return tuple(member for group in self._groups for member in group)

    def next(self) -> tuple[T, ...]:
        order: list[T] = []
        for index, group in enumerate(self._groups):
            start = self._turns[index]
            self._turns[index] = (start + 1) % len(group)
            order.extend(group[start:])
            order.extend(group[:start])
        return tuple(order)
