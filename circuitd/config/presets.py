"""Checks of a provider's OpenAI-preset settings that the types alone cannot express."""

from __future__ import annotations

from circuitd.config.schema import ProviderConfig


def preset_problems(provider: ProviderConfig) -> list[str]:
    problems: list[str] = []
    if any(not key.strip() or "," in key for key in provider.api_keys):
        problems.append("api_keys entries must be non-empty keys without commas")
    if provider.kind != "openai":
        if provider.preset != "openai":
            problems.append(f'preset `{provider.preset}` is for kind = "openai" only')
        if provider.api_version is not None:
            problems.append("api_version is for the azure preset only")
        return problems
    if provider.preset == "azure" and not provider.base_url:
        problems.append(
            "the azure preset needs base_url, the resource endpoint "
            "(https://NAME.openai.azure.com, or .../openai/v1 for the v1 API), "
            "or AZURE_OPENAI_ENDPOINT"
        )
    if provider.preset != "azure" and provider.api_version is not None:
        problems.append("api_version is for the azure preset only")
    return problems
