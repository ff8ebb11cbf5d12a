"""URL and auth-header composition of the OpenAI-compatible presets (no I/O)."""

from __future__ import annotations

import pytest

from circuitd.providers.openai_presets import AZURE_API_VERSION, Preset, PresetTarget

AZURE = "https://res.openai.azure.com"
V1 = AZURE + "/openai/v1"


@pytest.mark.parametrize(
    ("preset", "base_url", "api_version", "operation", "model", "url"),
    [
        ("openai", None, None, "chat/completions", "gpt-4o", "https://api.openai.com/v1/chat/completions"),
        ("openai", None, None, "embeddings", "x", "https://api.openai.com/v1/embeddings"),
        ("openai", "http://h:1/v1/", None, "chat/completions", "m", "http://h:1/v1/chat/completions"),
        ("ollama", None, None, "chat/completions", "llama3", "http://localhost:11434/v1/chat/completions"),
        ("ollama", None, None, "embeddings", "nomic", "http://localhost:11434/v1/embeddings"),
        ("vllm", None, None, "chat/completions", "m", "http://localhost:8000/v1/chat/completions"),
        ("vllm", "http://gpu:9000/v1", None, "embeddings", "m", "http://gpu:9000/v1/embeddings"),
        (
            "azure", AZURE, None, "chat/completions", "my-gpt4o",
            f"{AZURE}/openai/deployments/my-gpt4o/chat/completions?api-version={AZURE_API_VERSION}",
        ),
        (
            "azure", AZURE + "/", "2025-04-01-preview", "embeddings", "emb",
            f"{AZURE}/openai/deployments/emb/embeddings?api-version=2025-04-01-preview",
        ),
        (
            "azure", AZURE, None, "chat/completions", "a b/c",
            f"{AZURE}/openai/deployments/a%20b%2Fc/chat/completions?api-version={AZURE_API_VERSION}",
        ),
        ("azure", V1 + "/", None, "chat/completions", "dep", f"{V1}/chat/completions"),
        ("azure", V1, "preview", "embeddings", "dep", f"{V1}/embeddings?api-version=preview"),
    ],
)  # fmt: skip
def test_urls(
    preset: Preset,
    base_url: str | None,
    api_version: str | None,
    operation: str,
    model: str,
    url: str,
) -> None:
    target = PresetTarget.of(preset, base_url, api_version)
    assert target.url(operation, model) == url  # type: ignore[arg-type]


def test_only_azure_deployments_api_names_the_model_in_the_url() -> None:
    assert PresetTarget.of("azure", AZURE, None).per_model
    assert not PresetTarget.of("azure", V1, None).per_model
    assert not PresetTarget.of("openai", None, None).per_model


def test_api_version_is_azure_only() -> None:
    assert PresetTarget.of("openai", None, "2024-10-21").api_version is None


def test_azure_needs_an_endpoint() -> None:
    with pytest.raises(ValueError, match="azure preset needs a base_url"):
        PresetTarget.of("azure", None, None)


@pytest.mark.parametrize(
    ("preset", "key", "headers"),
    [
        ("openai", "sk-1", {"authorization": "Bearer sk-1"}),
        ("vllm", "tok", {"authorization": "Bearer tok"}),
        ("ollama", None, {}),
        ("vllm", None, {}),
        ("azure", "az-1", {"api-key": "az-1"}),
    ],
)
def test_auth_headers(preset: Preset, key: str | None, headers: dict[str, str]) -> None:
    base = AZURE if preset == "azure" else None
    assert PresetTarget.of(preset, base, None).auth_headers(key) == headers
