"""Model routing: a requested model (alias) → its ordered deployments.

Declared models come from the config. In env-only mode every model name passes through to the
one provider, with its price looked up in the default table. A provider with several keys
serves each deployment once per key, spread round-robin (`core.keys`).
"""

from __future__ import annotations

import functools
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import trio

from circuitd.core.backoff import RetryPolicy, backoff_delay, next_attempt_at, should_retry
from circuitd.core.keys import RoundRobin, keyed_name
from circuitd.core.outcome import Outcome, classify
from circuitd.core.pricing import Price, PriceTable
from circuitd.errors import ModelNotFound, ServiceUnavailable
from circuitd.gateway.breakers import Breakers
from circuitd.gateway.relay import AttemptFailed
from circuitd.gateway.settle import CallRecord, utc_timestamp
from circuitd.obs.metrics import Metrics
from circuitd.providers.base import Deployment, Provider
from circuitd.store.rows import AttemptRow

_PASSTHROUGH_CACHE = 4096  # distinct model names remembered in env-only mode


@dataclass(frozen=True, slots=True)
class Prices:
    """The price of a model: the table (built-in + config), else the configured fallback."""

    table: PriceTable
    unknown_model: Price | None = None

    def of(self, model: str) -> Price | None:
        return self.table.lookup(model) or self.unknown_model


@dataclass(frozen=True, slots=True)
class KeyedProvider:
    """A provider with one of its keys; `key` is that key's fingerprint, None when the
    provider has one key (or none)."""

    provider: Provider
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Passthrough:
    """Where undeclared model names go: `primary`, then each fallback asked for
    `fallback_model` (or the same name); each with all its keys."""

    primary: tuple[KeyedProvider, ...]
    fallbacks: tuple[tuple[KeyedProvider, ...], ...] = ()
    fallback_model: str | None = None

    @property
    def name(self) -> str:
        return self.primary[0].provider.name


# A model's deployments: a fixed order, or (several keys) one that turns with every call.
Route = tuple[Deployment, ...] | RoundRobin[Deployment]


class Router:
    def __init__(
        self,
        models: Mapping[str, Sequence[Sequence[Deployment]]],
        *,
        passthrough: Passthrough | None,
        prices: Prices,
    ) -> None:
        """`models`: alias → its configured deployments, each as one deployment per key."""
        self.models = {alias: _flat(groups) for alias, groups in models.items()}
        self.passthrough = passthrough
        self._prices = prices
        self._routes = {alias: _route(groups) for alias, groups in models.items()}
        self._passthrough: dict[str, Route] = {}

    def resolve(self, alias: str) -> tuple[Deployment, ...]:
        """The deployments to try, in order (for several keys, this call's turn)."""
        route = self._routes.get(alias) or self._passthrough.get(alias)
        if route is None:
            route = self._pass_through(alias)
        return route.next() if isinstance(route, RoundRobin) else route

    def _pass_through(self, alias: str) -> Route:
        if self.passthrough is None or not alias:
            raise ModelNotFound(f"The model `{alias}` does not exist.", param="model")
        passthrough = self.passthrough
        fallback_model = passthrough.fallback_model or alias
        groups = [
            [self._deployment(k, alias) for k in passthrough.primary],
            *([self._deployment(k, fallback_model) for k in ks] for ks in passthrough.fallbacks),
        ]
        if len(self._passthrough) >= _PASSTHROUGH_CACHE:
            self._passthrough.clear()  # bounded: client-chosen names must not grow memory
        route = self._passthrough[alias] = _route(groups)
        return route

    def _deployment(self, keyed: KeyedProvider, model: str) -> Deployment:
        provider = keyed.provider
        return Deployment(
            name=keyed_name(f"{provider.name}/{model}", keyed.key),
            provider=provider,
            upstream_model=model,
            price=self._prices.of(model),
        )


def _flat(groups: Sequence[Sequence[Deployment]]) -> tuple[Deployment, ...]:
    return tuple(d for group in groups for d in group)


def _route(groups: Sequence[Sequence[Deployment]]) -> Route:
    ring = RoundRobin(groups)
    return ring if ring.spreads else _flat(groups)


# -- attempts: breaker, retries with backoff, ordered fallback ------------------------------

Attempt = Callable[[Deployment], Awaitable[None]]


def _describe(failed: AttemptFailed) -> str:
    if failed.status is not None:
        return f"upstream answered {failed.status}"
    if failed.connect_error:
        return "connect error"
    if failed.timeout:
        return "timeout"
    return "cut" if failed.cut else "failed"


async def route(
    record: CallRecord,
    candidates: Sequence[Deployment],
    attempt: Attempt,
    *,
    breakers: Breakers,
    retry: RetryPolicy,
    deadline: float,
    metrics: Metrics,
) -> None:
    """Tries `candidates` in order until one answers.

    Each deployment gets up to `retry.max_attempts` attempts while its breaker admits them;
    retries back off with full jitter (at least the upstream's Retry-After) and never start
    after the call's deadline. A 4xx caused by the request ends the call at once (relayed),
    and so does a stream that already sent bytes (it has settled its record). Raises the last
    attempt's error, or 503 when no breaker admitted any attempt.
    """
    last: AttemptFailed | None = None
    for deployment in candidates:
        breaker = breakers.get(deployment.name)
        label = metrics.deployment_label(deployment.name)
        counted = functools.partial(
            metrics.child, metrics.attempts, deployment.provider.name, label
        )
        for number in itertools.count(1):
            now = trio.current_time()
            permit = breaker.acquire(now)
            breakers.log_transitions(deployment.name, breaker)
            if permit is None:
                break  # open, or half-open with its probes taken: try the next deployment
            record.deployment = deployment
            record.attempts += 1
            started_wall = time.time()
            failed: AttemptFailed | None = None
            try:
                await attempt(deployment)
            except AttemptFailed as exc:
                failed = exc
            except BaseException:  # cancelled (client gone, shutdown): no verdict on upstream
                breaker.record(permit, Outcome.CANCELLED, trio.current_time())
                counted("cancelled").inc()
                raise
            finally:
                end = trio.current_time()
                record.attempt_log.append(
                    AttemptRow(
                        attempt=record.attempts,
                        provider=deployment.provider.name,
                        deployment=deployment.name,
                        status_code=200 if failed is None else failed.status,
                        error=None if failed is None else _describe(failed),
                        latency_ms=round((end - now) * 1000, 3),
                        started_at=utc_timestamp(started_wall),
                    )
                )
            if failed is None:
                counted("success").inc()
                breaker.record(permit, Outcome.SUCCESS, end)
                breakers.log_transitions(deployment.name, breaker)
                return
            outcome = classify(
                failed.status,
                timeout=failed.timeout,
                connect_error=failed.connect_error,
                cut=failed.cut,
                retry_after=failed.retry_after,
            )
            counted(outcome).inc()
            breaker.record(permit, outcome, end, failed.retry_after)
            breakers.log_transitions(deployment.name, breaker)
            last = failed
            if failed.started:
                return  # bytes already relayed: the stream ended with an error event
            if outcome is Outcome.IGNORED:
                raise failed.error  # the request's own fault: relayed, never retried
            retryable = should_retry(
                retry,
                number,
                status=failed.status,
                timeout=failed.timeout,
                connect_error=failed.connect_error,
            )
            if not retryable:
                break
            delay = backoff_delay(retry, number, random.random(), failed.retry_after)
            at = next_attempt_at(end, delay, deadline)
            if at is None:
                raise failed.error  # no time left for another attempt anywhere
            await trio.sleep_until(at)
    if last is None:
        raise ServiceUnavailable("Upstream provider temporarily unavailable")
    raise last.error
