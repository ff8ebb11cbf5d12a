"""Model routing: a requested model (alias) → its ordered deployments.

Declared models come from the config. In env-only mode every model name passes through to the
one provider, with its price looked up in the default table.
"""

from __future__ import annotations

from collections.abc import Mapping

from circuitd.core.pricing import PriceTable
from circuitd.errors import ModelNotFound
from circuitd.providers.base import Deployment, Provider

_PASSTHROUGH_CACHE = 4096  # distinct model names remembered in env-only mode


class Router:
    def __init__(
        self,
        models: Mapping[str, tuple[Deployment, ...]],
        *,
        passthrough: Provider | None,
        prices: PriceTable,
    ) -> None:
        self.models = dict(models)
        self.passthrough = passthrough
        self._prices = prices
        self._passthrough: dict[str, tuple[Deployment, ...]] = {}

    def resolve(self, alias: str) -> tuple[Deployment, ...]:
        deployments = self.models.get(alias) or self._passthrough.get(alias)
        if deployments:
            return deployments
        if self.passthrough is None or not alias:
            raise ModelNotFound(f"The model `{alias}` does not exist.", param="model")
        deployment = Deployment(
            name=f"{self.passthrough.name}/{alias}",
            provider=self.passthrough,
            upstream_model=alias,
            price=self._prices.lookup(alias),
        )
        if len(self._passthrough) >= _PASSTHROUGH_CACHE:
            self._passthrough.clear()  # bounded: client-chosen names must not grow memory
        self._passthrough[alias] = (deployment,)
        return (deployment,)
