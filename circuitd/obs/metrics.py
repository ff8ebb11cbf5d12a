"""Prometheus metrics: one `Metrics` object per process, built with the gateway.

Labels are bounded: provider, model and deployment as configured, the route normalised
(unknown paths → `other`), the status class. A client chooses the model name it sends, so a
call whose model did not resolve is labelled `other`, and in env-only mode (every name passes
through to the provider) model and deployment labels are capped: the first `LABEL_CAP` distinct
values per process keep their name, later ones are `other`. Per-key labels only
on budget gauges, and only when `[metrics] per_key_labels` is on.

With several workers prometheus-client runs in multiprocess mode: the supervisor points
`PROMETHEUS_MULTIPROC_DIR` at a fresh directory before starting the workers (the library picks
its storage when first imported), every worker writes its samples there, and whichever worker
serves `/metrics` aggregates them all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase

from circuitd.core.breaker import State

CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()
ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/models",
        "/v1/usage",
        "/health",
        "/metrics",
    }
)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


LABEL_CAP = 256
OTHER = "other"

M = TypeVar("M", bound=MetricWrapperBase)


class LabelCap:
    """The first `limit` distinct values pass through; any later one is `other`."""

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int = LABEL_CAP) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def read_pid_once() -> None:
    """Multiprocess mode, in a worker process before its first metric: prometheus-client
    calls `os.getpid()` — a system call — on every inc, set and observe, to notice a fork
    after which it must start files of its own (3.5% of a worker's time under load). A
    worker is spawned and never forks, so its pid is read once, here: the library's
    `process_identifier` hook (distinct across the processes running at once, as the
    workers' pids are). Process-wide, like the library's choice of storage it replaces."""
    if multiprocess_dir() is not None:
        pid = os.getpid()
        values.ValueClass = values.MultiProcessValue(lambda: pid)  # type: ignore[no-untyped-call]


def route_label(path: str) -> str:
    return path if path in ROUTES else "other"


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class Metrics:
    def __init__(self) -> None:
        self.model_label = LabelCap()
        self.deployment_label = LabelCap()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "circuitd_requests",
            "HTTP requests answered, by route and status class.",
            ["route", "status_class"],
            registry=r,
        )
        self.request_duration = Histogram(
            "circuitd_request_duration_seconds",
            "Time from request to the end of the response, streams included.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.calls = Counter(
            "circuitd_calls",
            "Settled chat calls by provider, model, and how they ended.",
            ["provider", "model", "status"],
            registry=r,
        )
        self.overhead = Histogram(
            "circuitd_overhead_seconds",
            "Time a chat call spent in the gateway itself (its duration minus upstream attempts).",
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "circuitd_time_to_first_token_seconds",
            "Time from request to the first content relayed, for streams.",
            ["provider", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "circuitd_tokens",
            "Tokens billed, by direction (input, output).",
            ["provider", "model", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "circuitd_cost_usd",
            "Cost billed in USD.",
            ["provider", "model"],
            registry=r,
        )
        self.unpriced = Counter(
            "circuitd_unpriced_calls",
            "Calls with usage but no known price (billed 0): add the model to the price table.",
            ["provider", "model"],
            registry=r,
        )
        self.active_streams = Gauge(
            "circuitd_active_streams",
            "Streams being relayed now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.breaker_state = Gauge(
            "circuitd_breaker_state",
            "Breaker state per deployment: 0 closed, 1 open, 2 half-open.",
            ["deployment"],
            registry=r,
            multiprocess_mode="max",
        )
        self.attempts = Counter(
            "circuitd_upstream_attempts",
            "Upstream attempts by deployment and result (success, failure, ignored, ...).",
            ["provider", "deployment", "result"],
            registry=r,
        )
        self.write_queue_depth = Gauge(
            "circuitd_write_queue_depth",
            "Settled rows waiting for the SQLite writer.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.rows_dropped = Counter(
            "circuitd_rows_dropped",
            "Ledger rows dropped (queue full past the block timeout, or the database failing).",
            registry=r,
        )

        self.admission_refusals = Counter(
            "circuitd_admission_refusals",
            "Calls refused before any upstream call, by reason (rate_limit, budget).",
            ["reason"],
            registry=r,
        )
        self.budget_alerts = Counter(
            "circuitd_budget_alerts",
            "Budget thresholds crossed (each once per key and period), by percent.",
            ["percent"],
            registry=r,
        )
        self.alert_deliveries = Counter(
            "circuitd_alert_webhook",
            "Budget alert webhook results (delivered, retried, failed, dropped).",
            ["result"],
            registry=r,
        )
        # Budgets: key="all" sums every key unless [metrics] per_key_labels is on (keys are
        # configured, so that label is bounded). Several workers: spend is each worker's view
        # of the shared ledger (the max is the freshest), reservations are each worker's own.
        budget_labels = ["key", "period"]
        self.budget_spent = Gauge(
            "circuitd_budget_spent_usd",
            "Spend this UTC period, in USD.",
            budget_labels,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.budget_reserved = Gauge(
            "circuitd_budget_reserved_usd",
            "Worst-case cost reserved by calls in flight, in USD.",
            budget_labels,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.budget_remaining = Gauge(
            "circuitd_budget_remaining_usd",
            "Budget left this period (limit - spent - reserved), keys with a limit, in USD.",
            budget_labels,
            registry=r,
            multiprocess_mode="livemin",
        )
        self.lease_exchanges = Counter(
            "circuitd_budget_lease_exchanges",
            "Several workers: transactions with the shared budget ledger, by result (ok, failed).",
            ["result"],
            registry=r,
        )
        self.on_scrape: list[Callable[[], None]] = []  # refresh gauges computed on demand
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def child(self, metric: M, *values: str) -> M:
        """`metric.labels(*values)`, looked up once per distinct values: prometheus-client
        takes a lock and checks the values on every call (seven calls a chat request). As
        bounded as the labels themselves."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def breaker(self, deployment: str, state: State) -> None:
        self.breaker_state.labels(self.deployment_label(deployment)).set(state.metric)

    def exposition(self) -> bytes:
        for refresh in self.on_scrape:
            refresh()
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
