"""What a call's ending says about the deployment that served it (sans-I/O): the breaker's
input (`core.breaker`), decided from the status and how the call ended."""

from __future__ import annotations

import enum

__all__ = ["Outcome", "classify"]


class Outcome(enum.StrEnum):
    SUCCESS = "success"  # 1xx-3xx: the upstream did its job
    FAILURE = "failure"  # 5xx, 408, timeouts, connect errors, mid-stream cuts, 401/403
    RATE_LIMITED = "rate_limited"  # 429/503 with Retry-After: cool-down; without one: FAILURE
    IGNORED = "ignored"  # client-caused 4xx: says nothing about the upstream
    CANCELLED = "cancelled"  # no result (client went away, deadline): counts nothing


def classify(
    status: int | None,
    *,
    timeout: bool = False,
    connect_error: bool = False,
    cut: bool = False,
    retry_after: float | None = None,
) -> Outcome:
    """What a call's ending says about the deployment.

    - A timeout (408 included), connect error or mid-stream cut is a FAILURE whatever the
      status; so is no status at all (some other transport error) and a status outside
      100-599 (a broken upstream).
    - 429, and 503, with a Retry-After (`retry_after` not None) are RATE_LIMITED: a cool-down
      of that length. A 429 without one is a FAILURE: enough of them trip the breaker the
      ordinary way, so traffic moves elsewhere while the quota recovers.
    - 401 and 403 are FAILURES: the client authenticated with the gateway, so an upstream
      that refuses the deployment's own key is a broken deployment, not a client's mistake.
    - Other 4xx are IGNORED (the request's fault); 5xx are FAILURES; the rest SUCCESS.
    """
    if timeout or connect_error or cut or status is None or not 100 <= status <= 599:
        return Outcome.FAILURE
    if status in (429, 503) and retry_after is not None:
        return Outcome.RATE_LIMITED
    if status >= 500 or status in (401, 403, 408, 429):
        return Outcome.FAILURE
    if status >= 400:
        return Outcome.IGNORED
    return Outcome.SUCCESS
