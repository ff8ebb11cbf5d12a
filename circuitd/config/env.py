"""The environment's part of the configuration: `.env`, and the variables layered over the
file (or standing alone in env-only mode: the seed-compatible `PROVIDER`, `CIRCUIT_API_KEYS`,
`OPENAI_API_KEY`, ...)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from circuitd.config.schema import ENV_PROVIDERS


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


# Per provider kind: the variable with its key and the one with its base URL.
_ENV_KEYS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
}
_ENV_BASE_URLS = {
    "openai": "OPENAI_BASE_URL",
    "anthropic": "ANTHROPIC_BASE_URL",
    "gemini": "GEMINI_BASE_URL",
}
# OpenAI presets other than OpenAI's own: their key and base URL variables (Azure's as its
# SDKs read them); Ollama and vLLM take no key unless one is configured.
_PRESET_ENV: dict[str, tuple[str | None, str | None]] = {
    "azure": ("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT"),
    "ollama": (None, None),
    "vllm": (None, None),
}


def _env_kind(name: str, value: str, errors: list[str]) -> str | None:
    if value not in ENV_PROVIDERS:
        errors.append(f"{name}={value!r}: expected one of {', '.join(ENV_PROVIDERS)}")
        return None
    return ENV_PROVIDERS[value]


def _env_passthrough(env: Mapping[str, str], errors: list[str]) -> tuple[dict[str, Any], Any]:
    """Env-only mode: `PROVIDER` (else OpenAI, Anthropic or Gemini if its key is set, else mock)
    serves every model name; `CIRCUIT_FALLBACK` (comma list) follows it, with
    `CIRCUIT_FALLBACK_MODEL` as the fallbacks' upstream model."""
    chosen = env.get("PROVIDER", "").strip().upper()
    if not chosen:  # the first provider whose key is set, else the mock
        chosen = next(
            (
                name
                for name in ("OPENAI", "ANTHROPIC", "GEMINI")
                if env.get(_ENV_KEYS[name.lower()])
            ),
            "MOCK",
        )
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


def apply_env(
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
        limits = raw.setdefault("limits", {})
        if isinstance(limits, dict):
            limits["daily_usd"] = limit
    api_keys = [k.strip() for k in env.get("CIRCUIT_API_KEYS", "").split(",") if k.strip()]
    if api_keys:
        keys = raw.setdefault("keys", [])
        if isinstance(keys, list):
            keys.extend({"id": f"env-{i + 1}", "key": key} for i, key in enumerate(api_keys))
    # Provider secrets and base URLs: fill providers of that kind that do not set their own.
    providers = raw.get("providers")
    if isinstance(providers, dict):
        for provider in providers.values():
            kind = provider.get("kind") if isinstance(provider, dict) else None
            if not isinstance(provider, dict) or kind not in _ENV_KEYS:
                continue
            preset = provider.get("preset")
            key_var, url_var = (
                _PRESET_ENV[preset]
                if kind == "openai" and isinstance(preset, str) and preset in _PRESET_ENV
                else (_ENV_KEYS[kind], _ENV_BASE_URLS[kind])
            )
            keyed = any(provider.get(k) for k in ("api_key", "api_key_env", "api_keys"))
            if key_var and not keyed:
                provider["api_key_env"] = key_var
            if url_var and not provider.get("base_url") and env.get(url_var):
                provider["base_url"] = env[url_var]
