"""The `Gateway`: everything a request needs, built in one place and passed down.

`open_gateway` owns the lifetimes: the shared upstream HTTP client, the providers, and the
write-behind writer task (drained before the context exits).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import httpx
import msgspec
import trio

from circuitd.config import Config, DeploymentConfig, ProviderConfig
from circuitd.core.keys import fingerprint, keyed_name, provider_keys
from circuitd.core.pricing import Price, PriceTable
from circuitd.core.tokens import default_tokenizer
from circuitd.gateway.admission import Admission
from circuitd.gateway.auth import Authenticator
from circuitd.gateway.breakers import Breakers
from circuitd.gateway.budgets import open_admission
from circuitd.gateway.router import KeyedProvider, Passthrough, Prices, Router
from circuitd.gateway.settle import Settler
from circuitd.obs.metrics import Metrics
from circuitd.providers.anthropic import AnthropicProvider
from circuitd.providers.base import Deployment, Provider
from circuitd.providers.gemini import GeminiProvider
from circuitd.providers.mock import MockProvider
from circuitd.providers.openai import OpenAIProvider
from circuitd.store.writer import WriteBehind
from circuitd.upstream import Http1Transport
from circuitd.wire.openai import ModelEntry, ModelList

log = logging.getLogger("circuitd")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a config builds: replaced whole on reload, read once per request."""

    config: Config
    auth: Authenticator
    router: Router
    providers: Mapping[str, Provider]
    models_body: bytes  # GET /v1/models, encoded once per snapshot


@dataclass(slots=True)
class Gateway:
    snapshot: Snapshot
    settler: Settler
    writer: WriteBehind
    breakers: Breakers  # keyed by deployment name: state carries over a reload
    admission: Admission  # ledgers and rate limiters carry over a reload too
    metrics: Metrics
    client: httpx.AsyncClient
    prices: PriceTable
    started_wall: float = field(default_factory=time.time)
    draining: bool = False
    wall_clock: Callable[[], float] = time.time  # epoch seconds: budget periods, row times

    def reload(self, config: Config, env: Mapping[str, str]) -> list[str]:
        """Swaps in a snapshot built from `config`. In-flight calls keep the one they started
        with. Returns the changed settings that only a restart applies."""
        old = self.snapshot.config
        self.snapshot = build_snapshot(config, env, self.client, self.prices)
        self.admission.configure(config.limits.default_max_output_tokens)
        return [
            name
            for name in ("server", "store", "upstream", "breaker", "alerts", "metrics")
            if getattr(old, name) != getattr(config, name)
        ]


def default_prices() -> PriceTable:
    return PriceTable.from_toml(resources.files("circuitd").joinpath("prices.toml").read_bytes())


class _NoCookies(httpx.Cookies):
    """Cookies that stay empty, whatever the upstream answers."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None  # and no ~20 µs of parsing per response either

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        raise TypeError("the upstream client keeps no cookies")


class UpstreamClient(httpx.AsyncClient):
    """The shared upstream client. It serves every caller, so it keeps no cookies: an
    upstream's Set-Cookie must never ride along on another tenant's request.

    On circuitd's own transport a streamed `send` goes straight to it when the client adds
    nothing to the request: no auth (nor credentials in the URL), no event hooks, no
    redirects to follow. httpx's layers for those (an auth flow, a redirect loop, a response
    wrapper timing the body) were ~4% of a JSON call with nothing to do."""

    _no_cookies = _NoCookies()

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any):
        super().__init__(transport=transport, **kwargs)
        self._direct = transport if isinstance(transport, Http1Transport) else None

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        direct = self._direct
        if (
            direct is None
            or not stream
            or auth is not httpx.USE_CLIENT_DEFAULT
            or follow_redirects is not httpx.USE_CLIENT_DEFAULT
            or self.auth is not None
            or self.follow_redirects
            or request.url.userinfo
            or any(self.event_hooks.values())
            or self.is_closed
        ):
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        response = await direct.handle_async_request(request)
        response.request = request
        return response

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise TypeError("the upstream client keeps no cookies")


def upstream_client(config: Config) -> UpstreamClient:
    up = config.upstream
    limits = httpx.Limits(
        max_connections=up.max_connections,
        max_keepalive_connections=up.max_keepalive_connections,
        keepalive_expiry=up.keepalive_expiry_s,
    )
    return UpstreamClient(
        limits=limits,
        transport=None if up.transport == "httpx" else Http1Transport(limits=limits),
        timeout=httpx.Timeout(
            connect=up.connect_timeout_s,
            read=up.read_timeout_s,
            write=up.read_timeout_s,
            pool=up.connect_timeout_s,
        ),
        follow_redirects=False,
        trust_env=False,  # proxies etc. are configured explicitly, never picked up by accident
    )


def build_provider(
    name: str,
    spec: ProviderConfig,
    config: Config,
    env: Mapping[str, str],
    client: httpx.AsyncClient,
    api_key: str | None = None,
) -> Provider:
    if spec.kind == "mock":
        return MockProvider(name, config.mock)
    if spec.kind == "anthropic":
        return AnthropicProvider(
            name, client, base_url=spec.base_url, api_key=api_key, headers=spec.headers
        )
    if spec.kind == "gemini":
        return GeminiProvider(
            name, client, base_url=spec.base_url, api_key=api_key, headers=spec.headers
        )
    return OpenAIProvider(
        name,
        client,
        base_url=spec.base_url,
        api_key=api_key,
        headers=spec.headers,
        preset=spec.preset,
        api_version=spec.api_version,
    )


def build_keyed(
    name: str,
    spec: ProviderConfig,
    config: Config,
    env: Mapping[str, str],
    client: httpx.AsyncClient,
) -> tuple[KeyedProvider, ...]:
    """The provider once per key (`core.keys`): each key gets its own deployments."""
    from_env = env.get(spec.api_key_env) if spec.api_key_env else None
    keys = provider_keys([spec.api_key or "", *spec.api_keys], from_env)
    if len(keys) <= 1 or spec.kind == "mock":
        only = keys[0] if keys else None
        return (KeyedProvider(build_provider(name, spec, config, env, client, only)),)
    return tuple(
        KeyedProvider(build_provider(name, spec, config, env, client, key), fingerprint(key))
        for key in keys
    )


def _deployments(
    alias: str,
    spec: DeploymentConfig,
    providers: Mapping[str, tuple[KeyedProvider, ...]],
    prices: Prices,
) -> tuple[Deployment, ...]:
    """One deployment of the config, once per key of its provider."""
    upstream_model = spec.model or alias
    price: Price | None
    if spec.input_usd_per_mtok is not None and spec.output_usd_per_mtok is not None:
        price = Price(
            input_usd_per_mtok=spec.input_usd_per_mtok,
            output_usd_per_mtok=spec.output_usd_per_mtok,
            cached_input_usd_per_mtok=spec.cached_input_usd_per_mtok,
        )
    else:
        price = prices.of(upstream_model)
    name = spec.name or f"{spec.provider}/{upstream_model}"
    return tuple(
        Deployment(
            name=keyed_name(name, keyed.key),
            provider=keyed.provider,
            upstream_model=upstream_model,
            price=price,
            context_window=spec.context_window,
            max_output_tokens=spec.max_output_tokens,
            connect_timeout_s=spec.connect_timeout_s,
            read_timeout_s=spec.read_timeout_s,
            attempt_timeout_s=spec.attempt_timeout_s,
        )
        for keyed in providers[spec.provider]
    )


def build_router(
    config: Config, providers: Mapping[str, tuple[KeyedProvider, ...]], prices: Prices
) -> Router:
    models = {
        alias: [_deployments(alias, d, providers, prices) for d in model.deployments]
        for alias, model in config.models.items()
    }
    route = config.passthrough
    passthrough = (
        Passthrough(
            primary=providers[route.provider],
            fallbacks=tuple(providers[name] for name in route.fallbacks),
            fallback_model=route.fallback_model,
        )
        if route is not None
        else None
    )
    return Router(models, passthrough=passthrough, prices=prices)


def models_listing(router: Router, prices: PriceTable) -> bytes:
    """`GET /v1/models`: declared aliases, or in env-only mode every priced model."""
    entries: list[ModelEntry] = []
    for alias, deployments in router.models.items():
        first = deployments[0]
        price = first.price
        entries.append(
            ModelEntry(
                id=alias,
                owned_by=first.provider.name,
                providers=sorted({d.provider.name for d in deployments}),
                deployments=[d.name for d in deployments],
                context_window=first.context_window,
                input_usd_per_mtok=price.input_usd_per_mtok if price else None,
                cached_input_usd_per_mtok=price.cached_input_usd_per_mtok if price else None,
                output_usd_per_mtok=price.output_usd_per_mtok if price else None,
            )
        )
    if router.passthrough is not None:
        name = router.passthrough.name
        for model, price in prices.items():
            entries.append(
                ModelEntry(
                    id=model,
                    owned_by=name,
                    providers=[name],
                    deployments=[f"{name}/{model}"],
                    context_window=None,
                    input_usd_per_mtok=price.input_usd_per_mtok,
                    cached_input_usd_per_mtok=price.cached_input_usd_per_mtok,
                    output_usd_per_mtok=price.output_usd_per_mtok,
                )
            )
    return msgspec.json.encode(ModelList(data=entries))


def build_snapshot(
    config: Config, env: Mapping[str, str], client: httpx.AsyncClient, defaults: PriceTable
) -> Snapshot:
    keyed = {
        name: build_keyed(name, spec, config, env, client)
        for name, spec in config.providers.items()
    }
    providers = {name: keys[0].provider for name, keys in keyed.items()}
    table = defaults.updated(config.pricing.models)
    router = build_router(config, keyed, Prices(table, config.pricing.unknown_model))
    return Snapshot(
        config=config,
        auth=Authenticator.from_config(config.keys, env, config.limits),
        router=router,
        providers=providers,
        models_body=models_listing(router, table),
    )


@asynccontextmanager
async def open_gateway(
    config: Config, env: Mapping[str, str], *, wall_clock: Callable[[], float] = time.time
) -> AsyncIterator[Gateway]:
    prices = default_prices()
    async with upstream_client(config) as client:
        store = config.store
        writer = WriteBehind(
            queue_size=store.queue_size,
            batch_rows=store.batch_rows,
            flush_interval=store.flush_interval_ms / 1000,
            block_timeout=store.block_timeout_ms / 1000,
        )
        metrics = Metrics()
        tokenizer = default_tokenizer()
        async with (
            trio.open_nursery() as nursery,
            # budgets: seeded spend, leases (several workers), alert webhook, gauges
            open_admission(
                config, client=client, metrics=metrics, tokenizer=tokenizer, wall_clock=wall_clock
            ) as admission,
        ):
            await nursery.start(writer.run, store.path)
            gateway = Gateway(
                snapshot=build_snapshot(config, env, client, prices),
                settler=Settler(writer, tokenizer, metrics, admission),
                writer=writer,
                breakers=Breakers(config.breaker, metrics),
                admission=admission,
                metrics=metrics,
                client=client,
                prices=prices,
                wall_clock=wall_clock,
            )
            try:
                yield gateway
            finally:
                writer.close()  # the writer drains what is queued, then `run` returns
