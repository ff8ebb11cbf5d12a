"""Admission: rate limits and budgets, decided before any upstream call.

The decisions are `core.ratelimit` and `core.budget`; this module is the thin shell that owns
their state for one worker, turns a request into the numbers they need, and maps refusals to
429s. A call admitted here holds a `Ticket`; settlement hands it back exactly once with the
call's actual cost and tokens (`settle`), so a reservation is never left behind.

Worst case reserved: the prompt estimate at the input price plus the output cap at the output
price, taking the dearest of the call's candidate deployments (a fallback may cost more). The
output cap is the request's `max_completion_tokens`/`max_tokens`, else the deployment's
`max_output_tokens`, else `[limits] default_max_output_tokens`.

Several workers: each worker's ledger leases budget from the shared SQLite ledger
(`core.lease`, `gateway.leasing`), so strict budgets hold across them; rate limits with
several workers are per worker (documented). Alerts are logged, counted and handed to
`on_alert` (the webhook's queue) from here, whichever ledger raised them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from circuitd.core.budget import (
    Alert,
    BudgetLedger,
    BudgetLimits,
    BudgetPolicy,
    Period,
    Refusal,
    Reservation,
    SlotUsage,
    period_id,
)
from circuitd.core.pricing import cost_micro_usd
from circuitd.core.ratelimit import Decision, RateLimiter, RateLimitPolicy
from circuitd.core.tokens import Tokenizer, estimate_prompt_tokens
from circuitd.errors import BudgetExceeded, RateLimited
from circuitd.gateway.auth import Principal
from circuitd.gateway.leasing import SharedBudget
from circuitd.obs.metrics import Metrics
from circuitd.providers.base import Deployment
from circuitd.wire.openai import ChatRequestView

log = logging.getLogger("circuitd.admission")


def usd_to_micro(usd: float | None) -> int | None:
    return None if usd is None else round(usd * 1_000_000)


def limits_of(principal: Principal) -> BudgetLimits:
    return BudgetLimits(
        daily_micro_usd=usd_to_micro(principal.daily_usd_limit),
        monthly_micro_usd=usd_to_micro(principal.monthly_usd_limit),
    )


@dataclass(slots=True)
class Ticket:
    """What admission holds for one call until it settles."""

    key_id: str
    reservation: Reservation | None
    rate: Decision | None
    limiter: RateLimiter | None
    settled: bool = False

    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        return () if self.rate is None else _headers(self.rate)


def _headers(decision: Decision) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((k.encode(), v.encode()) for k, v in decision.headers())


class Admission:
    def __init__(
        self,
        *,
        tokenizer: Tokenizer,
        metrics: Metrics,
        default_max_output_tokens: int,
        policy: BudgetPolicy | None = None,
        ledger: BudgetLedger | None = None,
        on_alert: Callable[[Alert], object] | None = None,
        per_key_labels: bool = False,
    ) -> None:
        self.ledger = ledger if ledger is not None else BudgetLedger(policy)
        self.shared: SharedBudget | None = None  # several workers: leases for `ledger`
        self._tokenizer = tokenizer
        self._metrics = metrics
        self._default_max_output = default_max_output_tokens
        self._limiters: dict[tuple[str, RateLimitPolicy], RateLimiter] = {}
        self._on_alert = on_alert
        self._per_key = per_key_labels

    def configure(self, default_max_output_tokens: int) -> None:
        """A reload may change the defaults; ledgers and limiters keep their state."""
        self._default_max_output = default_max_output_tokens

    def seed(self, key_id: str, today_micro: int, month_micro: int, now: float) -> None:
        """Spend already in the ledger at start (from the daily roll-ups)."""
        self.ledger.load(key_id, Period.DAY, period_id(Period.DAY, now), today_micro)
        self.ledger.load(key_id, Period.MONTH, period_id(Period.MONTH, now), month_micro)

    async def admit(
        self,
        principal: Principal,
        view: ChatRequestView,
        candidates: Sequence[Deployment],
        *,
        now: float,
        now_wall: float,
        tokens: tuple[int, int] | None = None,
    ) -> Ticket:
        """Counts the call against the key's rate limits and reserves its worst-case cost;
        raises `RateLimited` or `BudgetExceeded` (429) when it does not fit. `tokens`: the
        (prompt, output) the caller counted itself (embeddings: the input, no output)."""
        limits = limits_of(principal)
        if tokens is not None:
            prompt, output = tokens
        elif (
            principal.tpm is None
            and limits.daily_micro_usd is None
            and (limits.monthly_micro_usd is None)
        ):
            prompt = output = 0  # nothing to hold the call against: no need to count
        else:
            prompt = estimate_prompt_tokens(view.messages, self._tokenizer)
            output = self._output_cap(view, candidates)
        limiter = self._limiter(principal)
        decision = None
        if limiter is not None:
            decision = limiter.check(now, prompt + output)
            if not decision.admitted:
                self._metrics.admission_refusals.labels("rate_limit").inc()
                raise RateLimited(
                    f"Rate limit reached for {decision.refused_by} on key "
                    f"`{principal.key_id}`. Retry after {decision.retry_after}s.",
                    headers=_headers(decision),
                )
        worst = max(
            (
                cost_micro_usd(d.price, input_tokens=prompt, output_tokens=output)
                for d in candidates
                if d.price is not None
            ),
            default=0,
        )
        accounts = [(principal.key_id, limits)]
        try:
            outcome = (
                self.ledger.reserve(accounts, worst, now_wall)
                if self.shared is None
                else await self.shared.reserve(accounts, worst, now_wall)
            )
        except BaseException:  # cancelled while leasing: the call never ran
            if limiter is not None and decision is not None:
                limiter.adjust(decision.ticket, 0)
            raise
        if isinstance(outcome, Refusal):
            if limiter is not None and decision is not None:
                limiter.adjust(decision.ticket, 0)  # refused calls use no tokens
            self._metrics.admission_refusals.labels("budget").inc()
            raise BudgetExceeded(
                _refusal_message(principal.key_id, outcome),
                headers=(
                    *(_headers(decision) if decision else ()),
                    (b"retry-after", str(outcome.retry_after_s).encode()),
                ),
            )
        return Ticket(principal.key_id, outcome, decision, limiter)

    def settle(
        self, ticket: Ticket, *, cost_micro: int, tokens: int, billable: bool, now_wall: float
    ) -> None:
        """Replaces the reservation by the actual cost (or releases it when nothing was
        billable) and the rate limiter's estimate by the actual tokens. Exactly once."""
        if ticket.settled:
            return
        ticket.settled = True
        if ticket.reservation is not None:
            if billable:
                self.ledger.settle(ticket.reservation, cost_micro, now_wall)
            else:
                self.ledger.release(ticket.reservation)
        if ticket.limiter is not None and ticket.rate is not None:
            ticket.limiter.adjust(ticket.rate.ticket, tokens)
        for alert in self.ledger.pop_alerts():
            self.alert(alert)

    def alert(self, alert: Alert) -> None:
        """A threshold crossed (once per key, period and percent): log, count, notify."""
        self._metrics.budget_alerts.labels(str(alert.percent)).inc()
        log.warning(
            "budget %d%% used",
            alert.percent,
            extra={
                "key_id": alert.slot.subject,
                "period": str(alert.slot.period),
                "period_id": alert.slot.period_id,
                "limit_usd": alert.limit / 1e6,
                "spent_usd": alert.spent / 1e6,
            },
        )
        if self._on_alert is not None:
            self._on_alert(alert)

    def refresh_metrics(self, now_wall: float) -> None:
        """Sets the budget gauges from the ledger (per key only when opted in)."""
        totals: dict[tuple[str, str], list[int | None]] = {}
        for usage in self.ledger.snapshot(now_wall):
            slot = usage.slot
            key = (slot.subject if self._per_key else "all", str(slot.period))
            spent, reserved, remaining = totals.setdefault(key, [0, 0, None])
            totals[key] = [
                (spent or 0) + usage.spent,
                (reserved or 0) + usage.reserved,
                remaining if usage.remaining is None else (remaining or 0) + usage.remaining,
            ]
        metrics = self._metrics
        for labels, (spent, reserved, remaining) in totals.items():
            metrics.budget_spent.labels(*labels).set((spent or 0) / 1e6)
            metrics.budget_reserved.labels(*labels).set((reserved or 0) / 1e6)
            if remaining is not None:  # keys without a limit have nothing remaining to show
                metrics.budget_remaining.labels(*labels).set(remaining / 1e6)

    def usage(self, principal: Principal, now_wall: float) -> tuple[SlotUsage, SlotUsage]:
        return self.ledger.usage(principal.key_id, now_wall, limits_of(principal))

    def _output_cap(self, view: ChatRequestView, candidates: Iterable[Deployment]) -> int:
        asked = view.max_completion_tokens or view.max_tokens
        if asked is not None and asked > 0:
            return asked
        caps = [d.max_output_tokens for d in candidates if d.max_output_tokens]
        return max(caps) if caps else self._default_max_output

    def _limiter(self, principal: Principal) -> RateLimiter | None:
        if principal.rpm is None and principal.tpm is None:
            return None
        policy = RateLimitPolicy(rpm=principal.rpm, tpm=principal.tpm)
        key = (principal.key_id, policy)  # a reload that changes the limits starts afresh
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = RateLimiter(policy)
        return limiter


def _refusal_message(key_id: str, refusal: Refusal) -> str:
    period = "daily" if refusal.slot.period is Period.DAY else "monthly"
    limit = refusal.limit / 1e6
    if refusal.exceeds_limit:
        return (
            f"This call's worst-case cost (${refusal.amount / 1e6:.6f}) exceeds the {period} "
            f"budget of key `{key_id}` (${limit:.2f}); lower max_tokens."
        )
    if refusal.lease_short:  # several workers: the rest is reserved or leased elsewhere
        return (
            f"The {period} budget of key `{key_id}` (${limit:.2f}) is fully spent, reserved by "
            f"calls in flight or held by other workers; retry in {refusal.retry_after_s}s."
        )
    used = (refusal.spent + refusal.reserved) / 1e6
    hours = math.ceil(refusal.retry_after_s / 3600)
    return (
        f"The {period} budget of key `{key_id}` is exhausted (${used:.6f} of ${limit:.2f} "
        f"spent or reserved); it resets in about {hours} h."
    )
