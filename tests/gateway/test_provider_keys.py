"""Config → providers → deployments for presets and several keys (built, never called)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from circuitd.config import ConfigError, load_config
from circuitd.core.keys import fingerprint
from circuitd.gateway.runtime import Snapshot, build_snapshot, default_prices
from circuitd.providers.openai import OpenAIProvider

K1, K2, K3 = "sk-first-secret-aaaa", "sk-second-secret-bbbb", "sk-third-secret-cccc"


def snapshot(env: dict[str, str], config_text: str | None = None, *, tmp: Path) -> Snapshot:
    path = None
    if config_text is not None:
        path = tmp / "circuitd.toml"
        path.write_text(config_text)
    config = load_config(path, env)
    return build_snapshot(config, env, httpx.AsyncClient(), default_prices())


def test_env_comma_list_makes_one_deployment_per_key(tmp_path: Path) -> None:
    snap = snapshot({"PROVIDER": "OPENAI", "OPENAI_API_KEY": f"{K1}, {K2}"}, tmp=tmp_path)
    names = [d.name for d in snap.router.resolve("gpt-4o-mini")]
    assert sorted(names) == sorted(f"openai/gpt-4o-mini#{fingerprint(k)}" for k in (K1, K2))
    # round-robin: the next call starts at the other key
    assert [d.name for d in snap.router.resolve("gpt-4o-mini")] == names[::-1]
    providers = {d.provider for d in snap.router.resolve("gpt-4o-mini")}
    assert len(providers) == 2 and {p.name for p in providers} == {"openai"}
    assert K1 not in repr(snap.models_body) and K2 not in repr(names)


CONFIG = """
[providers.azure]
kind = "openai"
preset = "azure"
base_url = "https://res.openai.azure.com"
api_keys = ["{k1}", "{k2}", "{k3}"]

[providers.local]
kind = "openai"
preset = "ollama"

[models.chat]
deployments = [
  {{ provider = "azure", model = "my-gpt4o" }},
  {{ provider = "local", model = "llama3.2" }},
]
"""


def test_config_keys_spread_before_the_fallback(tmp_path: Path) -> None:
    snap = snapshot({}, CONFIG.format(k1=K1, k2=K2, k3=K3), tmp=tmp_path)
    keyed = [f"azure/my-gpt4o#{fingerprint(k)}" for k in (K1, K2, K3)]
    seen = [[d.name for d in snap.router.resolve("chat")] for _ in range(3)]
    assert seen == [
        [*keyed, "local/llama3.2"],
        [*keyed[1:], keyed[0], "local/llama3.2"],
        [keyed[2], *keyed[:2], "local/llama3.2"],
    ]
    assert snap.router.models["chat"][0].name == keyed[0]  # listings keep the config order
    local = snap.router.models["chat"][-1].provider
    assert isinstance(local, OpenAIProvider)
    assert local.target.url("chat/completions", "x") == (
        "http://localhost:11434/v1/chat/completions"
    )


def test_one_key_keeps_the_plain_name(tmp_path: Path) -> None:
    snap = snapshot({"PROVIDER": "OPENAI", "OPENAI_API_KEY": K1}, tmp=tmp_path)
    assert [d.name for d in snap.router.resolve("gpt-4o")] == ["openai/gpt-4o"]


def test_azure_reads_its_own_variables(tmp_path: Path) -> None:
    text = """
[providers.az]
kind = "openai"
preset = "azure"
[models.m]
deployments = [{ provider = "az", model = "dep" }]
"""
    env = {"AZURE_OPENAI_API_KEY": K1, "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com/"}
    snap = snapshot(env, text, tmp=tmp_path)
    [deployment] = snap.router.resolve("m")
    provider = deployment.provider
    assert isinstance(provider, OpenAIProvider)
    assert provider.target.url("embeddings", "dep").startswith(
        "https://r.openai.azure.com/openai/deployments/dep/embeddings?api-version="
    )
    with pytest.raises(ConfigError, match="AZURE_OPENAI_API_KEY"):
        snapshot({"AZURE_OPENAI_ENDPOINT": "https://r"}, text, tmp=tmp_path)
    with pytest.raises(ConfigError, match="azure preset needs base_url"):
        snapshot({"AZURE_OPENAI_API_KEY": K1}, text, tmp=tmp_path)


@pytest.mark.parametrize(
    ("provider", "fragment"),
    [
        ('kind = "anthropic"\npreset = "azure"', 'is for kind = "openai" only'),
        ('kind = "openai"\napi_key = "k"\napi_version = "2024-10-21"', "azure preset only"),
        ('kind = "openai"\napi_keys = ["a,b"]', "without commas"),
        (
            'kind = "openai"\napi_key = "k"\npreset = "bedrock"',
            "Invalid enum value 'bedrock' - at `$.providers.p.preset`",
        ),
    ],
)
def test_preset_errors(tmp_path: Path, provider: str, fragment: str) -> None:
    text = f'[providers.p]\n{provider}\n[models.m]\ndeployments = [{{ provider = "p" }}]\n'
    with pytest.raises(ConfigError) as caught:
        snapshot({"ANTHROPIC_API_KEY": "x"}, text, tmp=tmp_path)
    assert fragment in str(caught.value)


def test_ollama_and_vllm_need_no_key(tmp_path: Path) -> None:
    text = """
[providers.o]
kind = "openai"
preset = "ollama"
[providers.v]
kind = "openai"
preset = "vllm"
[models.m]
deployments = [{ provider = "o" }, { provider = "v" }]
"""
    snap = snapshot({}, text, tmp=tmp_path)
    assert [d.name for d in snap.router.resolve("m")] == ["o/m", "v/m"]


@pytest.mark.parametrize(
    ("provider", "variable", "name"),
    [
        ("ANTHROPIC", "ANTHROPIC_API_KEY", "anthropic"),
        ("GEMINI", "GEMINI_API_KEY", "gemini"),
    ],
)
def test_every_provider_kind_takes_several_keys(
    tmp_path: Path, provider: str, variable: str, name: str
) -> None:
    snap = snapshot({"PROVIDER": provider, variable: f"{K1},{K2}"}, tmp=tmp_path)
    deployments = snap.router.resolve("some-model")
    assert sorted(d.name for d in deployments) == sorted(
        f"{name}/some-model#{fingerprint(k)}" for k in (K1, K2)
    )
    assert {d.provider.kind for d in deployments} == {name}
