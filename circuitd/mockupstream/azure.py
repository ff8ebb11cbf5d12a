"""Azure OpenAI's URL shapes in the mock: which operation a path asks for, and its checks.

- `/openai/deployments/{deployment}/chat/completions?api-version=...` (and `/embeddings`):
  the classic data-plane API; without `api-version` Azure answers 404 "Resource not found".
- `/openai/v1/chat/completions` (and `/embeddings`): the v1 API, no `api-version` needed.

Both take the key in an `api-key` header (or a Bearer token). The mock answers them as it
answers `/v1/...` (with the body's `model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

__all__ = ["AzureRoute", "azure_route"]

_DEPLOYMENTS = "/openai/deployments/"
_V1 = "/openai/v1/"
_OPERATIONS = ("chat/completions", "embeddings")


@dataclass(frozen=True, slots=True)
class AzureRoute:
    operation: str  # "chat/completions" or "embeddings"
    deployment: str | None  # None: the v1 API (the model is the body's)
    api_version: str | None

    @property
    def missing_version(self) -> bool:
        return self.deployment is not None and not self.api_version


def azure_route(path: str, query: str) -> AzureRoute | None:
    """The Azure route `path` names, or None for any other path."""
    version = parse_qs(query).get("api-version", [None])[-1]
    if path.startswith(_V1) and path[len(_V1) :] in _OPERATIONS:
        return AzureRoute(path[len(_V1) :], None, version)
    if path.startswith(_DEPLOYMENTS):
        deployment, _, operation = path[len(_DEPLOYMENTS) :].partition("/")
        if deployment and operation in _OPERATIONS:
            return AzureRoute(operation, deployment, version)
    return None
