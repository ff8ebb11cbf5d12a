"""Budgets across several workers: a worker's `LeasedBudget` with its SQLite `LeaseStore`.

Admission asks `reserve`; when the worker's lease is short, the exchange runs as one
transaction in a worker thread (one at a time per worker: one connection), never on the trio
thread. A call that finds an exchange in flight on its slot waits for it, then tries again.
`run` is the background task: every `sync_interval_s` it reports settled spend, returns idle
lease, renews live lease and reads the other workers' spend (for usage and metrics); when
`close` is called it returns everything and ends.

A failing store refuses the calls that need a lease (fail closed: a strict budget is never
passed); what is already leased keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

import trio

from circuitd.core.budget import Alert, BudgetLimits, Refusal, Reservation, Slot
from circuitd.core.lease import LeasedBudget, LeaseNeeded, LeaseReport
from circuitd.obs.metrics import Metrics
from circuitd.store.leases import LeaseStore
from circuitd.store.writer import SyncRunner, in_worker_thread

log = logging.getLogger("circuitd.budget")

_EXPIRY_MARGIN_S = 5.0  # stop drawing on a lease this long before the store lets it lapse
_CLOSING_ATTEMPTS = 3  # then what is left is reclaimed at the next start (or expires)


class SharedBudget:
    def __init__(
        self,
        ledger: LeasedBudget,
        store: LeaseStore,
        *,
        wall_clock: Callable[[], float],
        on_alert: Callable[[Alert], None],
        on_sync: Callable[[], None] = lambda: None,
        metrics: Metrics | None = None,
        sync_interval_s: float = 1.0,
        run_sync: SyncRunner = in_worker_thread,
    ) -> None:
        self.ledger = ledger
        self._store = store
        self._clock = wall_clock
        self._on_alert = on_alert
        self._on_sync = on_sync  # after each periodic sync: the budget gauges
        self._interval = sync_interval_s
        self._run_sync = run_sync
        self._lock = trio.Lock()  # one transaction at a time on the one connection
        self._in_flight: dict[Slot, trio.Event] = {}
        self._closing = trio.Event()
        self._metrics = metrics
        self.exchanges = 0  # transactions committed (statistics)
        self.failures = 0  # transactions failed

    async def reserve(
        self, accounts: Sequence[tuple[str, BudgetLimits]], amount: int, now: float
    ) -> Reservation | Refusal:
        """Reserves `amount` on every slot of `accounts`, leasing first where short."""
        # Waiting for another call's exchange is progress (it granted, or the next exchange
        # finds the store short), and each call runs at most one exchange of its own: after
        # it, what was granted decides (`reserve` never leases, so a second shortfall refuses).
        while True:
            decision = self.ledger.reserve_or_lease(accounts, amount, now)
            if not isinstance(decision, LeaseNeeded):
                return decision
            if decision.reports:
                await self._exchange(decision.reports)
            for slot in decision.pending:
                event = self._in_flight.get(slot)
                if event is not None:
                    await event.wait()
            if decision.reports:
                return self.ledger.reserve(accounts, amount, now)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Joins the shared ledger (freeing dead workers' leases), syncs periodically until
        `close`, then returns every lease and leaves."""
        now = self._clock()
        async with self._lock:
            freed, _ = await self._run_sync(partial(self._store.join, now))
        if freed:
            log.warning("freed budget leases of workers that are gone", extra={"leases": freed})
        task_status.started()
        while True:
            with trio.move_on_after(self._interval):
                await self._closing.wait()
            if self._closing.is_set():  # (also when it was set during the last round)
                break
            await self.sync()
            await self.observe()
            self._on_sync()
        for _ in range(_CLOSING_ATTEMPTS):  # a failed exchange is abandoned: due again
            if not await self.sync(closing=True):
                break
        try:
            async with self._lock:
                await self._run_sync(self._store.leave)
        except Exception:  # the next start reclaims it
            log.warning("leaving the shared budget ledger failed", exc_info=True)

    async def sync(self, *, closing: bool = False) -> bool:
        """One round of due exchanges (all unused lease back when `closing`); whether there
        were any."""
        reports = self.ledger.sync(self._clock(), closing=closing)
        if reports:
            await self._exchange(reports)
        return bool(reports)

    async def observe(self) -> None:
        """Reads the store's spend of this worker's current slots (other workers' spend, for
        usage and metrics; admission never needs it)."""
        slots = [usage.slot for usage in self.ledger.snapshot(self._clock())]
        if not slots:
            return
        try:
            async with self._lock:  # no exchange meanwhile: see `LeasedBudget.observe`
                spent = await self._run_sync(partial(self._store.spent, slots))
        except Exception:
            log.warning("reading the shared budget ledger failed", exc_info=True)
            return
        for slot, value in spent.items():
            self.ledger.observe(slot, value)

    def close(self) -> None:
        """Ends `run` after one last sync that returns every unused lease."""
        self._closing.set()

    async def _exchange(self, reports: Sequence[LeaseReport]) -> None:
        # the ledger keeps at most one exchange per slot in flight
        events = {r.slot: trio.Event() for r in reports}
        self._in_flight.update(events)
        # Shielded: a call cancelled meanwhile must still apply (or abandon) what ran.
        with trio.CancelScope(shield=True):
            try:
                async with self._lock:
                    now = self._clock()
                    results = await self._run_sync(partial(self._store.exchange, reports, now))
            except Exception:
                self.failures += 1
                if self._metrics is not None:
                    self._metrics.lease_exchanges.labels("failed").inc()
                log.exception("budget lease exchange failed; calls needing a lease are refused")
                for report in reports:
                    self.ledger.abandon(report)
            else:
                self.exchanges += 1
                if self._metrics is not None:
                    self._metrics.lease_exchanges.labels("ok").inc()
                expires = now + self.ledger.lease_policy.ttl_s - _EXPIRY_MARGIN_S
                for report, (result, alerts) in zip(reports, results, strict=True):
                    self.ledger.apply(report, result, expires)
                    for alert in alerts:
                        self._on_alert(alert)
            finally:
                for slot, event in events.items():
                    del self._in_flight[slot]
                    event.set()
