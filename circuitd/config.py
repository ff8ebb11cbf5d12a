"""Configuration: frozen msgspec Structs decoded from TOML, plus environment overrides.

Two modes:
- **config file** (`--config`, `CIRCUIT_CONFIG`): models are declared (alias → deployments);
  an unknown model is a 404.
- **env-only** (no file): the seed-compatible variables (`PROVIDER`, `CIRCUIT_API_KEYS`,
  `OPENAI_API_KEY`, ...) describe one provider and every model name passes through to it.

Environment variables override the file in both modes. `load_config` collects every error it
can find (one per section entry, each with the path of the bad field) before giving up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from circuitd.core.backoff import RetryPolicy
from circuitd.core.breaker import BreakerPolicy
from circuitd.core.pricing import Price

ProviderKind = Literal["openai", "mock"]
PROVIDER_KINDS: tuple[str, ...] = ("openai", "mock")
# Seed-compatible `PROVIDER` values; ANTHROPIC's adapter is not built yet (see issue 6).
ENV_PROVIDERS = {"MOCK": "mock", "OPENAI": "openai"}


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    drain_timeout_s: float = 30.0
    max_body_bytes: int = 10 * 1024 * 1024
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class StoreConfig(_Section, frozen=True):
    path: str = "data/circuit.db"
    queue_size: int = 10_000
    batch_rows: int = 256
    flush_interval_ms: float = 50.0
    block_timeout_ms: float = 50.0  # a full queue makes settlement wait this long, then drop


class UpstreamConfig(_Section, frozen=True):
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
    base_url: str | None = None  # OpenAI-style: includes the `/v1` prefix
    api_key: str | None = None
    api_key_env: str | None = None  # read the key from this environment variable
    headers: dict[str, str] = {}


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
    daily_usd_limit: float | None = None


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
    default_daily_usd_limit: float | None = None
    passthrough: PassthroughConfig | None = None  # any model name, not only declared ones
    source: str = "<env>"  # where this config came from (file path or "<env>")


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
    "default_daily_usd_limit": float | None,
    "passthrough": PassthroughConfig | None,
}


def read_dotenv(path: Path) -> dict[str, str]:
    """Parses a `.env` file: `KEY=VALUE` lines, `export` prefix, quotes, `#` comments."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[name.strip()] = value
    return values


def environment(cwd: Path | None = None) -> dict[str, str]:
    """The process environment layered over `./.env` (real variables win, as with dotenv)."""
    env = read_dotenv((cwd or Path.cwd()) / ".env")
    env.update(os.environ)
    return env


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


def _env_float(env: Mapping[str, str], name: str, errors: list[str]) -> float | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        result = float(value)
    except ValueError:
        errors.append(f"{name}={value!r} is not a number")
        return None
    if result < 0:
        errors.append(f"{name} must be ≥ 0")
    return result


def _env_int(env: Mapping[str, str], name: str, errors: list[str]) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        errors.append(f"{name}={value!r} is not an integer")
        return None


# The key each env-only provider kind needs.
_ENV_KEYS = {"openai": "OPENAI_API_KEY"}


def _env_kind(name: str, value: str, errors: list[str]) -> str | None:
    if value == "ANTHROPIC":
        errors.append(f"{name}=ANTHROPIC: the Anthropic adapter is not available yet (issue 6)")
        return None
    if value not in ENV_PROVIDERS:
        errors.append(f"{name}={value!r}: expected one of {', '.join(ENV_PROVIDERS)}")
        return None
    return ENV_PROVIDERS[value]


def _env_passthrough(env: Mapping[str, str], errors: list[str]) -> tuple[dict[str, Any], Any]:
    """Env-only mode: `PROVIDER` (else OpenAI if its key is set, else mock) serves every
    model name; `CIRCUIT_FALLBACK` (comma list) follows it, with `CIRCUIT_FALLBACK_MODEL` as
    the fallbacks' upstream model."""
    chosen = env.get("PROVIDER", "").strip().upper()
    if not chosen:
        chosen = "OPENAI" if env.get("OPENAI_API_KEY") else "MOCK"
    primary = _env_kind("PROVIDER", chosen, errors) or "mock"
    fallbacks: list[str] = []
    for value in env.get("CIRCUIT_FALLBACK", "").upper().split(","):
        kind = _env_kind("CIRCUIT_FALLBACK", value.strip(), errors) if value.strip() else None
        if kind is not None and kind != primary and kind not in fallbacks:
            fallbacks.append(kind)
    for kind in (primary, *fallbacks):
        needed = _ENV_KEYS.get(kind)
        if needed and not env.get(needed):
            errors.append(f"provider {kind.upper()} needs {needed}")
    providers = {kind: {"kind": kind} for kind in (primary, *fallbacks)}
    passthrough = {
        "provider": primary,
        "fallbacks": fallbacks,
        "fallback_model": env.get("CIRCUIT_FALLBACK_MODEL", "").strip() or None,
    }
    return providers, passthrough


def _apply_env(
    raw: dict[str, Any], env: Mapping[str, str], errors: list[str], *, env_only: bool
) -> None:
    """Layers the environment over the decoded-to-builtins config (before validation)."""
    if env_only:
        raw["providers"], raw["passthrough"] = _env_passthrough(env, errors)
    server = raw.setdefault("server", {})
    store = raw.setdefault("store", {})
    if isinstance(server, dict):
        if env.get("CIRCUIT_HOST"):
            server["host"] = env["CIRCUIT_HOST"]
        for name, field in (("CIRCUIT_PORT", "port"), ("CIRCUIT_WORKERS", "workers")):
            number = _env_int(env, name, errors)
            if number is not None:
                server[field] = number
        if env.get("CIRCUIT_LOG_LEVEL"):
            server["log_level"] = env["CIRCUIT_LOG_LEVEL"].lower()
    if isinstance(store, dict) and env.get("CIRCUIT_DB"):
        store["path"] = env["CIRCUIT_DB"]
    limit = _env_float(env, "CIRCUIT_DAILY_USD_LIMIT", errors)
    if limit is not None:
        raw["default_daily_usd_limit"] = limit
    api_keys = [k.strip() for k in env.get("CIRCUIT_API_KEYS", "").split(",") if k.strip()]
    if api_keys:
        keys = raw.setdefault("keys", [])
        if isinstance(keys, list):
            keys.extend({"id": f"env-{i + 1}", "key": key} for i, key in enumerate(api_keys))
    # Provider secrets and base URLs: fill providers of that kind that do not set their own.
    providers = raw.get("providers")
    if isinstance(providers, dict):
        for provider in providers.values():
            if not isinstance(provider, dict) or provider.get("kind") != "openai":
                continue
            if not provider.get("api_key") and not provider.get("api_key_env"):
                provider["api_key_env"] = "OPENAI_API_KEY"
            if not provider.get("base_url") and env.get("OPENAI_BASE_URL"):
                provider["base_url"] = env["OPENAI_BASE_URL"]


def _check(config: Config, env: Mapping[str, str], errors: list[str]) -> None:
    """Semantic checks that the types alone cannot express."""
    if not 0 <= config.server.port <= 65535:
        errors.append("server.port must be between 0 and 65535 - at `$.server.port`")
    if config.server.workers < 1:
        errors.append("server.workers must be ≥ 1 - at `$.server.workers`")
    if config.server.max_body_bytes < 1024:
        errors.append("server.max_body_bytes must be ≥ 1024 - at `$.server.max_body_bytes`")
    if config.store.queue_size < 1 or config.store.batch_rows < 1:
        errors.append("store.queue_size and store.batch_rows must be ≥ 1 - at `$.store`")
    for name, provider in config.providers.items():
        missing_key = provider.api_key_env and provider.api_key_env not in env
        if provider.kind != "mock" and not provider.api_key and missing_key:
            errors.append(
                f"provider `{name}` reads its key from ${provider.api_key_env}, "
                f"which is not set - at `$.providers.{name}.api_key_env`"
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
    _apply_env(raw, env, errors, env_only=path is None)
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
