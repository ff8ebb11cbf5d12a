"""Key authentication: presented key → `Principal`. Keys come as `Authorization: Bearer <key>`;
the Anthropic routes also take `x-api-key: <key>` (`authenticate_api_key`).

Keys are held only as SHA-256 digests. A lookup hashes the presented key and finds the digest
in a dict: comparisons run on digests, never on secrets, so their timing can at most reveal a
prefix of a digest of the attacker's own guess — nothing about a stored key.

With no keys configured the gateway is open (local development) and every caller is the
`anonymous` principal; `server.serve` refuses that on a non-loopback address.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from circuitd.config import KeyConfig, LimitsConfig
from circuitd.errors import InvalidApiKey, ModelNotAllowed

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    allowed_models: frozenset[str] | None  # None: every model
    daily_usd_limit: float | None = None
    monthly_usd_limit: float | None = None
    rpm: int | None = None
    tpm: int | None = None

    def check_model(self, alias: str) -> None:
        if self.allowed_models is not None and alias not in self.allowed_models:
            raise ModelNotAllowed(
                f"The API key `{self.key_id}` may not use the model `{alias}`.", param="model"
            )


ANONYMOUS_ID = "anonymous"


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class Authenticator:
    def __init__(self, by_digest: Mapping[bytes, Principal], anonymous: Principal) -> None:
        self._by_digest = dict(by_digest)
        self.anonymous = anonymous  # every caller, when no keys are configured

    @classmethod
    def from_config(
        cls, keys: Iterable[KeyConfig], env: Mapping[str, str], limits: LimitsConfig
    ) -> Authenticator:
        by_digest: dict[bytes, Principal] = {}
        for key in keys:
            if key.key_sha256:
                key_digest = bytes.fromhex(key.key_sha256)
            else:
                secret = key.key if key.key is not None else env[key.key_env or ""]
                key_digest = digest(secret)
            by_digest[key_digest] = Principal(
                key_id=key.id,
                allowed_models=frozenset(key.models) if key.models is not None else None,
                daily_usd_limit=_first(key.daily_usd_limit, limits.daily_usd),
                monthly_usd_limit=_first(key.monthly_usd_limit, limits.monthly_usd),
                rpm=_first(key.rpm, limits.rpm),
                tpm=_first(key.tpm, limits.tpm),
            )
        anonymous = Principal(
            key_id=ANONYMOUS_ID,
            allowed_models=None,
            daily_usd_limit=limits.daily_usd,
            monthly_usd_limit=limits.monthly_usd,
            rpm=limits.rpm,
            tpm=limits.tpm,
        )
        return cls(by_digest, anonymous)

    @property
    def open(self) -> bool:
        return not self._by_digest

    def authenticate(self, authorization: bytes | None) -> Principal:
        if self.open:
            return self.anonymous
        if not authorization:
            raise InvalidApiKey(
                "Missing API key. Send it as `Authorization: Bearer <key>`.", param=None
            )
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            raise InvalidApiKey("Malformed Authorization header; expected `Bearer <key>`.")
        return self._lookup(token.strip())

    def authenticate_api_key(self, api_key: bytes | None, authorization: bytes | None) -> Principal:
        """Anthropic-style routes: the key in `x-api-key` (as the Anthropic SDK sends it), else
        `Authorization: Bearer <key>`."""
        if self.open or (not api_key and authorization):
            return self.authenticate(authorization)
        if not api_key or not api_key.strip():
            raise InvalidApiKey(
                "Missing API key. Send it as `x-api-key: <key>` or `Authorization: Bearer <key>`."
            )
        return self._lookup(api_key.strip())

    def _lookup(self, key: bytes) -> Principal:
        principal = self._by_digest.get(hashlib.sha256(key).digest())
        if principal is None:
            raise InvalidApiKey("Incorrect API key provided.")
        return principal


def _first(value: T | None, default: T | None) -> T | None:
    return value if value is not None else default
