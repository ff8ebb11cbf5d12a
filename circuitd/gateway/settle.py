"""Settlement: every call's record becomes exactly one ledger row and one log line.

`CallRecord` is filled in as the call goes (who, what, which deployment, what came back); the
handler settles it once, in a shielded `finally`, whatever happened. Settlement decides the
usage (provider's if it gave any, else estimated from the request and the relayed text),
prices it, and queues the row for the write-behind writer.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field

import trio

from circuitd.core.pricing import cost_micro_usd, micro_to_usd
from circuitd.core.tokens import Tokenizer, estimate_completion_tokens, estimate_prompt_tokens
from circuitd.errors import GatewayError, UpstreamRejected
from circuitd.gateway.admission import Admission, Ticket
from circuitd.obs.metrics import OTHER, Metrics
from circuitd.providers.base import Deployment
from circuitd.store.rows import AttemptRow, RequestRow, Status, UsageSource
from circuitd.store.writer import WriteBehind
from circuitd.wire.openai import ChatRequestView, Usage

log = logging.getLogger("circuitd.calls")


def utc_timestamp(epoch: float) -> str:
    """ISO 8601 to the millisecond, UTC: `2026-11-30T07:02:33.123Z`."""
    return f"{_utc_second(int(epoch))}.{int(epoch * 1000) % 1000:03d}Z"


@functools.lru_cache(maxsize=8)
def _utc_second(second: int) -> str:
    # Two timestamps per call (the row, its attempt): formatting each second once is cheaper.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


@dataclass(slots=True)
class CallRecord:
    request_id: str
    started: float  # trio/perf clock seconds, for latencies
    started_wall: float  # epoch seconds, for the row's timestamp
    client_request_id: str | None = None
    stream: bool = False
    key_id: str | None = None
    request: ChatRequestView | None = None
    deployment: Deployment | None = None
    attempts: int = 0
    # Until the relay records success, a call counts as failed (a bug or a cancellation
    # must never settle as "ok").
    status: Status = "error"
    status_code: int = 500
    error_code: str | None = "incomplete"
    usage: Usage | None = None  # as the provider reported it
    relayed: list[str] = field(default_factory=list)  # streamed content, for estimation
    attempt_log: list[AttemptRow] = field(default_factory=list)
    ticket: Ticket | None = None  # admission's hold (rate limit, budget reservation)
    ttft: float | None = None  # seconds from start to the first content relayed
    upstream_started: bool = False  # the upstream answered (some output may be billable)
    resolved: bool = False  # the model named a route (metrics label it; others are `other`)
    prompt_tokens: int | None = None  # counted before the call (embeddings), not estimated

    @property
    def model(self) -> str:
        return self.request.model if self.request is not None else ""

    def fail(self, error: GatewayError) -> None:
        """Records a refusal (client-side, before any upstream call) or an upstream failure."""
        refused = error.status < 500 and not isinstance(error, UpstreamRejected)
        self.status = "refused" if refused else "error"
        self.status_code = error.status
        self.error_code = error.code


@dataclass(frozen=True, slots=True)
class Charge:
    tokens_input: int
    tokens_output: int
    tokens_cached: int
    source: UsageSource
    cost_micro_usd: int


def charge(record: CallRecord, tokenizer: Tokenizer) -> Charge:
    """What the call consumed: provider usage when given, else an estimate — the prompt and
    what was relayed — whenever the provider may have charged: its answer began, or the client
    left while a request was with it (providers bill work they had started). Failed attempts
    that never answered (connect errors, 5xx) cost nothing."""
    usage = record.usage
    left_during_call = record.status == "disconnected" and record.attempts > 0
    if usage is not None:
        tokens_in, tokens_out = usage.prompt_tokens, usage.completion_tokens
        cached = usage.cached_tokens
        source: UsageSource = "provider"
    elif (record.upstream_started or left_during_call) and record.request is not None:
        counted = record.prompt_tokens
        tokens_in = (
            counted
            if counted is not None
            else estimate_prompt_tokens(record.request.messages, tokenizer)
        )
        tokens_out = estimate_completion_tokens("".join(record.relayed), tokenizer)
        cached = 0
        source = "estimated"
    else:
        return Charge(0, 0, 0, "none", 0)
    price = record.deployment.price if record.deployment is not None else None
    cost = (
        cost_micro_usd(
            price, input_tokens=tokens_in, output_tokens=tokens_out, cached_input_tokens=cached
        )
        if price is not None
        else 0
    )
    return Charge(tokens_in, tokens_out, cached, source, cost)


class Settler:
    def __init__(
        self, writer: WriteBehind, tokenizer: Tokenizer, metrics: Metrics, admission: Admission
    ) -> None:
        self._writer = writer
        self.tokenizer = tokenizer
        self._metrics = metrics
        self._admission = admission
        self._dropped_seen = 0  # the writer's drop count already exported
        self._unpriced_warned: set[str] = set()  # deployments already warned about

    async def settle(self, record: CallRecord, now: float) -> RequestRow:
        """Bills the call, settles its reservation, queues its ledger row and exports its
        metrics: all of it, even in a cancelled task (a full write queue is waited for,
        up to the writer's block timeout, shielded)."""
        bill = charge(record, self.tokenizer)
        if record.ticket is not None:  # the reservation becomes the actual cost, or goes
            self._admission.settle(
                record.ticket,
                cost_micro=bill.cost_micro_usd,
                tokens=bill.tokens_input + bill.tokens_output,
                billable=bill.source != "none",
                now_wall=record.started_wall,  # the period the call was reserved in
            )
        deployment = record.deployment
        row = RequestRow(
            request_id=record.request_id,
            client_request_id=record.client_request_id,
            timestamp=utc_timestamp(record.started_wall),
            key_id=record.key_id,
            model=record.model,
            provider=deployment.provider.name if deployment else None,
            deployment=deployment.name if deployment else None,
            upstream_model=deployment.upstream_model if deployment else None,
            stream=record.stream,
            status=record.status,
            status_code=record.status_code,
            error_code=record.error_code,
            latency_ms=round((now - record.started) * 1000, 3),
            ttft_ms=round(record.ttft * 1000, 3) if record.ttft is not None else None,
            tokens_input=bill.tokens_input,
            tokens_output=bill.tokens_output,
            tokens_cached=bill.tokens_cached,
            usage_source=bill.source,
            cost_micro_usd=bill.cost_micro_usd,
            attempts=record.attempts,
            attempt_log=tuple(record.attempt_log),
        )
        # With room, the row is queued at once, without a schedule point: the call's task
        # ends right after. A wait for room (bounded) must not be cut by the call's
        # cancellation.
        if self._writer.full:
            with trio.CancelScope(shield=True):
                queued = await self._writer.submit(row)
        else:
            queued = self._writer.submit_nowait(row)
        self._export(row, record)
        if log.isEnabledFor(logging.INFO):
            self._log(row, queued)
        return row

    @staticmethod
    def _log(row: RequestRow, queued: bool) -> None:
        log.info(
            "call settled",
            extra={
                "key_id": row.key_id,
                "model": row.model,
                "provider": row.provider,
                "deployment": row.deployment,
                "stream": row.stream,
                "status": row.status,
                "status_code": row.status_code,
                "error_code": row.error_code,
                "latency_ms": row.latency_ms,
                "ttft_ms": row.ttft_ms,
                "tokens_input": row.tokens_input,
                "tokens_output": row.tokens_output,
                "usage_source": row.usage_source,
                "cost_usd": micro_to_usd(row.cost_micro_usd),
                "attempts": row.attempts,
                "persisted": queued,
            },
        )

    def _export(self, row: RequestRow, record: CallRecord) -> None:
        m = self._metrics
        provider = row.provider or ""
        model = m.model_label(row.model) if record.resolved else OTHER
        m.child(m.calls, provider, model, row.status).inc()
        if row.usage_source != "none":
            m.child(m.tokens, provider, model, "input").inc(row.tokens_input)
            m.child(m.tokens, provider, model, "output").inc(row.tokens_output)
            m.child(m.cost, provider, model).inc(micro_to_usd(row.cost_micro_usd))
            deployment = record.deployment
            if deployment is not None and deployment.price is None:
                m.unpriced.labels(provider, model).inc()
                if (
                    deployment.name not in self._unpriced_warned
                    and len(self._unpriced_warned) < 1000
                ):
                    self._unpriced_warned.add(deployment.name)
                    log.warning(
                        "no price for this model: its calls are billed 0 "
                        "(add it under [pricing.models] or set [pricing] unknown_model)",
                        extra={"deployment": deployment.name},
                    )
        if row.ttft_ms is not None:
            m.child(m.ttft, provider, model).observe(row.ttft_ms / 1000)
        upstream_ms = sum(a.latency_ms for a in row.attempt_log)
        m.overhead.observe(max(0.0, row.latency_ms - upstream_ms) / 1000)
        writer = self._writer
        m.write_queue_depth.set(writer.queued)
        if writer.dropped > self._dropped_seen:
            m.rows_dropped.inc(writer.dropped - self._dropped_seen)
            self._dropped_seen = writer.dropped
