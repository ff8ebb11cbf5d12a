"""Gemini in the configuration: the provider kind, its variables, env-only mode."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from circuitd.config import ConfigError, PassthroughConfig, load_config
from circuitd.gateway.runtime import build_provider
from circuitd.providers.gemini import GeminiProvider


def test_gemini_key_alone_selects_gemini() -> None:
    config = load_config(None, {"GEMINI_API_KEY": "AIza"})
    assert config.passthrough == PassthroughConfig(provider="gemini")
    assert config.providers["gemini"].kind == "gemini"
    assert config.providers["gemini"].api_key_env == "GEMINI_API_KEY"


def test_openai_and_anthropic_keys_come_first() -> None:
    both = {"GEMINI_API_KEY": "AIza", "ANTHROPIC_API_KEY": "sk-ant"}
    assert load_config(None, both).passthrough == PassthroughConfig(provider="anthropic")


def test_gemini_as_a_fallback_with_its_base_url() -> None:
    env = {
        "PROVIDER": "MOCK",
        "CIRCUIT_FALLBACK": "gemini",
        "GEMINI_API_KEY": "AIza",
        "GEMINI_BASE_URL": "http://gemini.test",
    }
    config = load_config(None, env)
    assert config.passthrough == PassthroughConfig(provider="mock", fallbacks=["gemini"])
    assert config.providers["gemini"].base_url == "http://gemini.test"
    with pytest.raises(ConfigError) as info:
        load_config(None, {"PROVIDER": "GEMINI"})
    assert "provider GEMINI needs GEMINI_API_KEY" in info.value.errors


async def test_a_gemini_provider_section_builds_the_adapter(tmp_path: Path) -> None:
    path = tmp_path / "circuitd.toml"
    path.write_text(
        '[providers.g]\nkind = "gemini"\n\n'
        '[models.flash]\ndeployments = [{ provider = "g", model = "gemini-2.5-flash" }]\n'
    )
    config = load_config(path, {"GEMINI_API_KEY": "AIza-env"})
    spec = config.providers["g"]
    assert (spec.kind, spec.api_key_env) == ("gemini", "GEMINI_API_KEY")
    async with httpx.AsyncClient() as client:
        provider = build_provider("g", spec, config, {}, client, "AIza-env")
    assert isinstance(provider, GeminiProvider) and provider.kind == "gemini"
