"""The configuration's shape: frozen msgspec Structs, decoded from TOML (unknown keys rejected).

Defaults here are the embedded defaults: a config with nothing set is a working gateway.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from circuitd.core.backoff import RetryPolicy
from circuitd.core.breaker import BreakerPolicy
from circuitd.core.pricing import Price
from circuitd.providers.openai_presets import Preset

ProviderKind = Literal["openai", "anthropic", "gemini", "mock"]
PROVIDER_KINDS: tuple[str, ...] = ("openai", "anthropic", "gemini", "mock")
# Seed-compatible `PROVIDER` values.
ENV_PROVIDERS = {
    "MOCK": "mock",
    "OPENAI": "openai",
    "ANTHROPIC": "anthropic",
    "GEMINI": "gemini",
}


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    drain_timeout_s: float = 30.0
    max_body_bytes: int = 10 * 1024 * 1024
    body_timeout_s: float = 30.0  # a request body must have all come this long after its head
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class StoreConfig(_Section, frozen=True):
    path: str = "data/circuit.db"
    queue_size: int = 10_000
    batch_rows: int = 256
    flush_interval_ms: float = 50.0
    block_timeout_ms: float = 50.0  # a full queue makes settlement wait this long, then drop


class UpstreamConfig(_Section, frozen=True):
    # "http1": circuitd's own O(1) HTTP/1.1 pool (circuitd/upstream; "h11", its name until it
    # stopped using h11, is still accepted); "httpx": httpcore's pool.
    transport: Literal["http1", "h11", "httpx"] = "http1"
    max_connections: int = 1024
    max_keepalive_connections: int = 256
    keepalive_expiry_s: float = 30.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0  # time to first byte and idle gap between stream chunks
    total_timeout_s: float = 600.0


class MockConfig(_Section, frozen=True):
    """The in-process mock provider: deterministic text, realistic usage."""

    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    tokens: int = 32
    chunks: int | None = None


class ProviderConfig(_Section, frozen=True):
    kind: ProviderKind
    # As in each official SDK: OpenAI-style URLs include `/v1`, Anthropic's and Gemini's
    # do not (Gemini: the host; `/v1beta/models/...` follows).
    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None  # read the key from this environment variable
    headers: dict[str, str] = {}
    # Several keys: one deployment (and breaker) per key, calls spread round-robin among
    # them (circuitd/core/keys.py). `api_key_env` may hold a comma list too.
    api_keys: list[str] = []
    # kind "openai" only: which server of the OpenAI-compatible family (URL shape, auth
    # header, default base URL: circuitd/providers/openai_presets.py), and Azure's api-version.
    preset: Preset = "openai"
    api_version: str | None = None


class DeploymentConfig(_Section, frozen=True):
    provider: str
    model: str | None = None  # upstream model name; default: the alias
    name: str | None = None  # default: "<provider>/<model>"
    input_usd_per_mtok: float | None = None
    cached_input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    # Timeouts for this deployment, overriding [upstream]'s (seconds).
    connect_timeout_s: float | None = None
    read_timeout_s: float | None = None  # first byte, and the longest gap between chunks
    attempt_timeout_s: float | None = None  # one attempt, whole stream included


class ModelConfig(_Section, frozen=True):
    deployments: list[DeploymentConfig]


class KeyConfig(_Section, frozen=True):
    id: str
    key: str | None = None
    key_env: str | None = None
    key_sha256: str | None = None  # hex digest: keeps the secret out of the file
    models: list[str] | None = None  # allowed aliases; None = all
    # Limits for this key; unset ones come from [limits].
    daily_usd_limit: float | None = None
    monthly_usd_limit: float | None = None
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute (prompt estimate + output cap at admission)


class LimitsConfig(_Section, frozen=True):
    """Defaults for every key (and the open-auth `anonymous` caller) that sets none itself.
    Budgets are strict: the worst case of every call in flight is reserved, so admitted spend
    never exceeds a limit (UTC calendar days and months)."""

    daily_usd: float | None = None  # CIRCUIT_DAILY_USD_LIMIT
    monthly_usd: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    default_max_output_tokens: int = 4096  # the output cap reserved when nothing says less
    alert_percents: tuple[int, ...] = (50, 80, 95)  # logged and counted once per period


class AlertsConfig(_Section, frozen=True):
    """Budget alerts ([limits] alert_percents) POSTed as JSON to `webhook_url`, if set, from a
    bounded queue by a background task: retried with backoff, never delaying a call."""

    webhook_url: str | None = None
    webhook_headers: dict[str, str] = {}  # e.g. an Authorization header (never logged)
    timeout_s: float = 5.0  # per attempt
    max_attempts: int = 5
    backoff_base_s: float = 1.0  # full jitter, doubling per attempt ...
    max_backoff_s: float = 60.0  # ... up to this
    queue_size: int = 100  # alerts waiting; a full queue drops (counted)


class MetricsConfig(_Section, frozen=True):
    per_key_labels: bool = False  # budget gauges per key (else summed as key="all")


class PricingConfig(_Section, frozen=True):
    """Over the built-in price table (circuitd/prices.toml): `models` adds or replaces
    entries (matched like the table: exact name, else the longest prefix at a '-');
    `unknown_model` prices any model found nowhere (without it such calls cost 0, and
    `circuitd_unpriced_calls_total` counts them)."""

    models: dict[str, Price] = {}
    unknown_model: Price | None = None


class PassthroughConfig(_Section, frozen=True):
    """Any model name not declared in [models] goes to `provider` (the env-only mode's one
    route), then to each of `fallbacks` in order, asking those for `fallback_model`."""

    provider: str
    fallbacks: list[str] = []
    fallback_model: str | None = None  # None: the same model name


class Config(_Section, frozen=True):
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    mock: MockConfig = MockConfig()
    breaker: BreakerPolicy = BreakerPolicy()
    retry: RetryPolicy = RetryPolicy()
    pricing: PricingConfig = PricingConfig()
    providers: dict[str, ProviderConfig] = {}
    models: dict[str, ModelConfig] = {}
    keys: list[KeyConfig] = []
    limits: LimitsConfig = LimitsConfig()
    alerts: AlertsConfig = AlertsConfig()
    metrics: MetricsConfig = MetricsConfig()
    passthrough: PassthroughConfig | None = None  # any model name, not only declared ones
    source: str = "<env>"  # where this config came from (file path or "<env>")
