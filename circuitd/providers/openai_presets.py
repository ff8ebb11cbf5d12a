"""Where the OpenAI-compatible family is reached and how it is authenticated (no I/O).

One adapter, several presets; each fixes a default base URL, the request URL of an operation
(`chat/completions`, `embeddings`) for a model, and the auth header:

- openai: `https://api.openai.com/v1` by default; `{base}/{op}`; `Authorization: Bearer`.
- azure: `base_url` is the resource endpoint (required); `api-key` header;
  `{base}/openai/deployments/{model}/{op}?api-version=...`, or, for a base URL ending in
  `/openai/v1`, `{base}/{op}` with the deployment name as `model` in the body.
- ollama: `http://localhost:11434/v1`; vllm: `http://localhost:8000/v1`; `{base}/{op}`;
  no auth header unless a key is configured (then Bearer, as `vllm serve --api-key` wants).

Azure: the deployment name is the deployment's upstream `model`. The classic data-plane API
needs a dated `api-version` (default: the latest GA one below); the v1 API
(`https://RESOURCE.openai.azure.com/openai/v1`, GA since August 2025) needs none and takes the
deployment name as `model` in the body, like OpenAI (an explicit `api_version` is still sent).
Any other OpenAI-compatible server is the `openai` preset with its `base_url` and `headers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode

from circuitd.providers.base import Operation

__all__ = [
    "AZURE_API_VERSION",
    "PRESETS",
    "Operation",
    "Preset",
    "PresetTarget",
    "default_base_url",
]

Preset = Literal["openai", "azure", "ollama", "vllm"]
PRESETS: tuple[Preset, ...] = ("openai", "azure", "ollama", "vllm")
AZURE_API_VERSION = "2024-10-21"  # the latest GA data-plane inference version
_AZURE_V1_SUFFIX = "/openai/v1"

_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "ollama": "http://localhost:11434/v1",
    "vllm": "http://localhost:8000/v1",
}


def default_base_url(preset: Preset) -> str | None:
    """None for Azure: every resource has its own endpoint."""
    return _BASE_URLS.get(preset)


@dataclass(frozen=True, slots=True)
class PresetTarget:
    """One provider's URLs and auth header, composed once when the config is built."""

    preset: Preset
    base_url: str  # without a trailing slash
    api_version: str | None = None  # Azure only

    @classmethod
    def of(cls, preset: Preset, base_url: str | None, api_version: str | None) -> PresetTarget:
        """Raises ValueError when the preset needs a base URL and none is given."""
        base = base_url or default_base_url(preset)
        if not base:
            raise ValueError(f"the {preset} preset needs a base_url")
        base = base.rstrip("/")
        if preset == "azure" and api_version is None and not base.endswith(_AZURE_V1_SUFFIX):
            api_version = AZURE_API_VERSION
        return cls(preset, base, api_version if preset == "azure" else None)

    @property
    def per_model(self) -> bool:
        """Whether the URL names the model (Azure's deployments API)."""
        return self.preset == "azure" and not self.base_url.endswith(_AZURE_V1_SUFFIX)

    def url(self, operation: Operation, model: str) -> str:
        if self.per_model:
            url = f"{self.base_url}/openai/deployments/{quote(model, safe='')}/{operation}"
        else:
            url = f"{self.base_url}/{operation}"
        if self.api_version is not None:
            url += "?" + urlencode({"api-version": self.api_version})
        return url

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        if not api_key:
            return {}
        if self.preset == "azure":
            return {"api-key": api_key}
        return {"authorization": f"Bearer {api_key}"}
