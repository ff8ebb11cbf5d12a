"""Builds a worker's `Admission` with what its budgets need, and owns their background tasks.

- Spend survives restarts: the ledger is seeded with today's and this month's spend (the
  larger of the roll-ups and the shared ledger, `store.leases.current_spend`).
- One worker keeps the whole ledger in memory. Several workers (`server.workers > 1`) each
  hold a `LeasedBudget` that leases from the shared SQLite ledger (`gateway.leasing`); its
  sync task reclaims dead workers' leases at start and returns every lease at the end.
- Alerts go to the webhook's queue when `[alerts] webhook_url` is set.
- Budget gauges are refreshed at each scrape, and (several workers) at each lease sync so
  that every worker's share is current whichever worker serves `/metrics`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import httpx
import trio

from circuitd.config import Config
from circuitd.core.backoff import RetryPolicy
from circuitd.core.budget import Alert, BudgetLedger, BudgetPolicy
from circuitd.core.lease import LeasedBudget, LeasePolicy
from circuitd.core.tokens import Tokenizer
from circuitd.gateway.admission import Admission
from circuitd.gateway.alerts import AlertWebhook
from circuitd.gateway.leasing import SharedBudget
from circuitd.obs.metrics import Metrics
from circuitd.store.leases import Holder, LeaseStore, current_spend
from circuitd.store.sqlite import Database


def seed_spend(admission: Admission, db_path: str, now: float) -> None:
    """Loads every key's spend of the current UTC day and month (runs in a worker thread)."""
    with Database.open(db_path) as db:
        for key_id, day_spend, month_spend in current_spend(db, now):
            admission.seed(key_id, day_spend, month_spend, now)


def alert_webhook(
    config: Config, client: httpx.AsyncClient, metrics: Metrics
) -> AlertWebhook | None:
    alerts = config.alerts
    if alerts.webhook_url is None:
        return None
    return AlertWebhook(
        client,
        alerts.webhook_url,
        metrics=metrics,
        headers=alerts.webhook_headers,
        queue_size=alerts.queue_size,
        timeout_s=alerts.timeout_s,
        retry=RetryPolicy(
            max_attempts=alerts.max_attempts,
            base_s=alerts.backoff_base_s,
            max_backoff_s=alerts.max_backoff_s,
        ),
        shutdown_grace_s=alerts.timeout_s,
    )


@asynccontextmanager
async def open_admission(
    config: Config,
    *,
    client: httpx.AsyncClient,
    metrics: Metrics,
    tokenizer: Tokenizer,
    wall_clock: Callable[[], float],
    lease_policy: LeasePolicy | None = None,
) -> AsyncIterator[Admission]:
    policy = BudgetPolicy(alert_percents=config.limits.alert_percents)
    several = config.server.workers > 1
    ledger = LeasedBudget(policy, lease_policy) if several else BudgetLedger(policy)
    webhook = alert_webhook(config, client, metrics)
    on_alert: Callable[[Alert], object] | None = None if webhook is None else webhook.submit_nowait
    admission = Admission(
        tokenizer=tokenizer,
        metrics=metrics,
        default_max_output_tokens=config.limits.default_max_output_tokens,
        ledger=ledger,
        on_alert=on_alert,
        per_key_labels=config.metrics.per_key_labels,
    )
    path = config.store.path
    await trio.to_thread.run_sync(seed_spend, admission, path, wall_clock())
    metrics.on_scrape.append(lambda: admission.refresh_metrics(wall_clock()))
    store: LeaseStore | None = None
    shared: SharedBudget | None = None
    try:
        async with trio.open_nursery() as nursery:
            if webhook is not None:
                nursery.start_soon(webhook.run)
            if isinstance(ledger, LeasedBudget):
                store = await trio.to_thread.run_sync(
                    partial(
                        LeaseStore.open,
                        path,
                        Holder.this_process(),
                        ledger.lease_policy,
                        policy.alert_percents,
                    )
                )
                shared = SharedBudget(
                    ledger,
                    store,
                    wall_clock=wall_clock,
                    on_alert=admission.alert,
                    on_sync=lambda: admission.refresh_metrics(wall_clock()),
                    metrics=metrics,
                )
                await nursery.start(shared.run)
                admission.shared = shared
            try:
                yield admission
            finally:
                if shared is not None:
                    shared.close()  # its task returns every unused lease, then ends
                if webhook is not None:
                    webhook.close()  # delivers what is queued, within its grace
    finally:
        if store is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(store.close)
