"""Loading: TOML + environment → a validated `Config`, every error found reported with its path.

Two modes:
- **config file** (`--config`, `CIRCUIT_CONFIG`): models are declared (alias → deployments);
  an unknown model is a 404 unless a `[passthrough]` section routes it.
- **env-only** (no file): the seed-compatible variables describe one provider (and its
  fallbacks) and every model name passes through to it.

Environment variables override the file in both modes. `load_config` collects every error it
can find (one per section entry, each with the path of the bad field) before giving up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from circuitd.config.env import apply_env, environment
from circuitd.config.presets import preset_problems
from circuitd.config.schema import (
    AlertsConfig,
    Config,
    KeyConfig,
    LimitsConfig,
    MetricsConfig,
    MockConfig,
    ModelConfig,
    PassthroughConfig,
    PricingConfig,
    ProviderConfig,
    ServerConfig,
    StoreConfig,
    UpstreamConfig,
)
from circuitd.core.backoff import RetryPolicy
from circuitd.core.breaker import BreakerPolicy


class ConfigError(Exception):
    """The configuration is invalid; `errors` lists every problem found, each with a path."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(errors))
        self.source = source
        self.errors = errors


_SECTION_TYPES: dict[str, Any] = {
    "server": ServerConfig,
    "store": StoreConfig,
    "upstream": UpstreamConfig,
    "mock": MockConfig,
    "breaker": BreakerPolicy,
    "retry": RetryPolicy,
    "pricing": PricingConfig,
    "providers": dict[str, ProviderConfig],
    "models": dict[str, ModelConfig],
    "keys": list[KeyConfig],
    "limits": LimitsConfig,
    "passthrough": PassthroughConfig | None,
    "alerts": AlertsConfig,
    "metrics": MetricsConfig,
}


def _decode_sections(raw: Mapping[str, Any], errors: list[str]) -> dict[str, Any]:
    """Converts each section (and each entry of table sections) on its own, so that one bad
    field does not hide the others."""
    decoded: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in _SECTION_TYPES:
            known = ", ".join(sorted(_SECTION_TYPES))
            errors.append(f"unknown section `{name}` (expected one of: {known})")
            continue
        section_type = _SECTION_TYPES[name]
        if name in ("providers", "models") and isinstance(value, dict):
            item_type = ProviderConfig if name == "providers" else ModelConfig
            items = {}
            for key, item in value.items():
                try:
                    items[key] = msgspec.convert(item, item_type)
                except msgspec.ValidationError as exc:
                    errors.append(_with_path(str(exc), f"$.{name}.{key}"))
            decoded[name] = items
            continue
        try:
            decoded[name] = msgspec.convert(value, section_type)
        except msgspec.ValidationError as exc:
            errors.append(_with_path(str(exc), f"$.{name}"))
    return decoded


def _with_path(message: str, prefix: str) -> str:
    # msgspec reports paths relative to the converted value (`$...`); make them absolute.
    if " - at `$" in message:
        head, _, path = message.rpartition(" - at `$")
        return f"{head} - at `{prefix}{path}"
    return f"{message} - at `{prefix}`"


def _check(config: Config, env: Mapping[str, str], errors: list[str]) -> None:
    """Semantic checks that the types alone cannot express."""
    if not 0 <= config.server.port <= 65535:
        errors.append("server.port must be between 0 and 65535 - at `$.server.port`")
    if config.server.workers < 1:
        errors.append("server.workers must be ≥ 1 - at `$.server.workers`")
    if config.server.max_body_bytes < 1024:
        errors.append("server.max_body_bytes must be ≥ 1024 - at `$.server.max_body_bytes`")
    if not config.server.body_timeout_s > 0:
        errors.append("server.body_timeout_s must be > 0 - at `$.server.body_timeout_s`")
    if config.store.queue_size < 1 or config.store.batch_rows < 1:
        errors.append("store.queue_size and store.batch_rows must be ≥ 1 - at `$.store`")
    limits = config.limits
    alerts = config.alerts
    url = alerts.webhook_url
    if url is not None and not url.startswith(("http://", "https://")):
        errors.append("alerts.webhook_url must be an http(s) URL - at `$.alerts.webhook_url`")
    backoff = (alerts.backoff_base_s, alerts.max_backoff_s)
    if alerts.queue_size < 1 or alerts.max_attempts < 1 or not alerts.timeout_s > 0:
        errors.append("alerts: queue_size, max_attempts ≥ 1 and timeout_s > 0 - at `$.alerts`")
    if not all(0 <= b < math.inf for b in backoff):
        errors.append("alerts: backoff_base_s, max_backoff_s must be ≥ 0 - at `$.alerts`")
    for name, value in (("daily_usd", limits.daily_usd), ("monthly_usd", limits.monthly_usd)):
        if value is not None and value < 0:
            errors.append(f"limits.{name} must be ≥ 0 - at `$.limits.{name}`")
    if limits.default_max_output_tokens < 1:
        errors.append("limits.default_max_output_tokens must be ≥ 1 - at `$.limits`")
    for name, provider in config.providers.items():
        missing_key = provider.api_key_env and provider.api_key_env not in env
        if provider.kind != "mock" and not provider.api_key and missing_key:
            errors.append(
                f"provider `{name}` reads its key from ${provider.api_key_env}, "
                f"which is not set - at `$.providers.{name}.api_key_env`"
            )
        errors.extend(
            f"provider `{name}`: {problem} - at `$.providers.{name}`"
            for problem in preset_problems(provider)
        )
    if config.passthrough is None and not config.models:
        errors.append("no models declared - at `$.models`")
    if config.passthrough is not None:
        for i, name in enumerate([config.passthrough.provider, *config.passthrough.fallbacks]):
            if name not in config.providers:
                where = "provider" if i == 0 else f"fallbacks[{i - 1}]"
                errors.append(f"unknown provider `{name}` - at `$.passthrough.{where}`")
    for alias, model in config.models.items():
        if not model.deployments:
            errors.append(f"model `{alias}` has no deployments - at `$.models.{alias}`")
        for i, dep in enumerate(model.deployments):
            if dep.provider not in config.providers:
                errors.append(
                    f"unknown provider `{dep.provider}` - at "
                    f"`$.models.{alias}.deployments[{i}].provider`"
                )
    seen: set[str] = set()
    for i, key in enumerate(config.keys):
        where = f"`$.keys[{i}]`"
        if key.id in seen:
            errors.append(f"duplicate key id `{key.id}` - at {where}")
        seen.add(key.id)
        sources = [s for s in (key.key, key.key_env, key.key_sha256) if s]
        if len(sources) != 1:
            errors.append(
                f"key `{key.id}` needs exactly one of key, key_env, key_sha256 - at {where}"
            )
        if key.key_env and key.key_env not in env:
            errors.append(f"key `{key.id}` reads ${key.key_env}, which is not set - at {where}")
        if key.key_sha256 and (
            len(key.key_sha256) != 64
            or any(c not in "0123456789abcdef" for c in key.key_sha256.lower())
        ):
            errors.append(f"key `{key.id}`: key_sha256 must be 64 hex digits - at {where}")
        unknown = [a for a in key.models or () if config.models and a not in config.models]
        errors.extend(f"key `{key.id}` allows unknown model `{a}` - at {where}" for a in unknown)


def load_config(path: str | Path | None, env: Mapping[str, str]) -> Config:
    """Builds the config snapshot from an optional TOML file and the environment.

    Raises `ConfigError` listing every problem found.
    """
    errors: list[str] = []
    source = str(path) if path else "<env>"
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(source, [f"cannot read config file: {exc.strerror}"]) from exc
        try:
            parsed = msgspec.toml.decode(data)
        except msgspec.DecodeError as exc:
            raise ConfigError(source, [f"invalid TOML: {exc}"]) from exc
        if not isinstance(parsed, dict):
            raise ConfigError(source, ["the file must be a TOML table"])
        raw = parsed
    apply_env(raw, env, errors, env_only=path is None)
    sections = _decode_sections(raw, errors)
    if errors:
        raise ConfigError(source, errors)
    config = Config(**sections, source=source)
    _check(config, env, errors)
    if errors:
        raise ConfigError(source, errors)
    return config


def config_path_from(cli_path: str | None, env: Mapping[str, str]) -> str | None:
    return cli_path or env.get("CIRCUIT_CONFIG") or None


@dataclass(frozen=True)
class ConfigSource:
    """Where the config comes from, so that a reload reads it the same way: the file (or
    env-only), `./.env` and the environment, and the command line's overrides on top."""

    cli_path: str | None = None
    overrides: tuple[tuple[str, str], ...] = ()

    def load(self) -> tuple[Config, dict[str, str]]:
        """Raises `ConfigError`."""
        env = environment()
        env.update(self.overrides)
        return load_config(config_path_from(self.cli_path, env), env), env
