"""The rows circuitd persists: one `RequestRow` per settled call (keyed by request id)."""

from __future__ import annotations

from typing import Literal

import msgspec

# How a call ended. `partial`: a stream cut after content was relayed; `disconnected`: the
# client went away; `refused`: turned away before any upstream call (auth, limits, bad input).
Status = Literal["ok", "error", "partial", "disconnected", "refused"]
UsageSource = Literal["provider", "estimated", "none"]


class AttemptRow(msgspec.Struct, frozen=True, kw_only=True):
    """One upstream attempt of a call (retries and fallbacks make several)."""

    attempt: int  # 1-based, in the order they were made
    provider: str
    deployment: str
    status_code: int | None  # the upstream's status; None when no answer came
    error: str | None  # what went wrong, short; None for success
    latency_ms: float
    started_at: str  # ISO-8601 UTC, as RequestRow.timestamp


class RequestRow(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str  # the gateway's own, unique
    client_request_id: str | None = None  # the client's x-request-id, if it sent a sane one
    timestamp: str  # ISO-8601 UTC with milliseconds, e.g. "2026-11-23T06:49:52.123Z"
    key_id: str | None
    model: str  # as the client asked for it
    provider: str | None
    deployment: str | None
    upstream_model: str | None
    stream: bool
    status: Status
    status_code: int
    error_code: str | None
    latency_ms: float
    ttft_ms: float | None
    tokens_input: int
    tokens_output: int
    tokens_cached: int
    usage_source: UsageSource
    cost_micro_usd: int  # integer micro-USD; the store also writes cost_usd = this / 1e6
    attempts: int
    attempt_log: tuple[AttemptRow, ...] = ()  # → provider_attempts
