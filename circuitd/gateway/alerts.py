"""Budget alerts to a webhook: POSTed JSON, retried with backoff, never on the request path.

`submit_nowait` only queues (a bounded channel); a full queue drops the alert (counted and
logged — the log line and the `circuitd_budget_alerts` counter have it anyway). `run`, a task
in the gateway's nursery, delivers one alert at a time through the shared HTTP client:
a connect error, a timeout, 408, 429 or a 5xx is retried with full-jitter backoff up to
`max_attempts`; any other answer ends the alert's delivery. After `close`, `run` keeps
delivering what is queued for at most `shutdown_grace_s`, then gives up on the rest.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping

import httpx
import msgspec
import trio

from circuitd.core.backoff import RetryPolicy, backoff_delay
from circuitd.core.budget import Alert
from circuitd.obs.metrics import Metrics

log = logging.getLogger("circuitd.alerts")

_RETRY_STATUSES = frozenset({408, 429})


class AlertBody(msgspec.Struct, frozen=True):
    """What the webhook receives."""

    key_id: str
    period: str  # "day" | "month"
    period_id: str  # "YYYY-MM-DD" | "YYYY-MM" (UTC)
    percent: int
    limit_usd: float
    spent_usd: float
    at: float  # epoch seconds
    type: str = "budget_alert"


_encode = msgspec.json.Encoder().encode


def alert_body(alert: Alert) -> bytes:
    slot = alert.slot
    return _encode(
        AlertBody(
            key_id=slot.subject,
            period=str(slot.period),
            period_id=slot.period_id,
            percent=alert.percent,
            limit_usd=alert.limit / 1e6,
            spent_usd=alert.spent / 1e6,
            at=alert.at,
        )
    )


class AlertWebhook:
    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        metrics: Metrics,
        headers: Mapping[str, str] | None = None,
        queue_size: int = 100,
        timeout_s: float = 5.0,
        retry: RetryPolicy | None = None,
        shutdown_grace_s: float = 5.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._url = url
        self._headers = {"content-type": "application/json", **(headers or {})}
        self._metrics = metrics
        self._timeout = timeout_s
        self._retry = retry if retry is not None else RetryPolicy(max_attempts=5, base_s=1.0)
        self._grace = shutdown_grace_s
        self._rand = rand
        self._send, self._receive = trio.open_memory_channel[Alert](queue_size)
        self._scope = trio.CancelScope()  # `run`'s; `close` gives it a deadline

    def submit_nowait(self, alert: Alert) -> bool:
        """Queues `alert` for delivery; never blocks. False (counted) when it cannot."""
        try:
            self._send.send_nowait(alert)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._metrics.alert_deliveries.labels("dropped").inc()
            log.warning("alert webhook queue full or closed: alert dropped")
            return False
        return True

    def close(self) -> None:
        """Ends intake; `run` delivers what is queued within `shutdown_grace_s`, then ends."""
        self._send.close()
        self._scope.deadline = min(self._scope.deadline, trio.current_time() + self._grace)

    async def run(self) -> None:
        """Delivers queued alerts until closed (see `close`)."""
        with self._scope:
            async for alert in self._receive:
                await self._deliver(alert)
        if self._scope.cancelled_caught:
            left = self._receive.statistics().current_buffer_used
            log.warning("alert webhook: shutdown grace over; %d alert(s) undelivered", left)

    async def _deliver(self, alert: Alert) -> None:
        body = alert_body(alert)
        for attempt in range(1, self._retry.max_attempts + 1):
            outcome = await self._post(body)
            if outcome == "delivered":
                self._metrics.alert_deliveries.labels("delivered").inc()
                return
            if outcome != "retry" or attempt == self._retry.max_attempts:
                break
            self._metrics.alert_deliveries.labels("retried").inc()
            await trio.sleep(backoff_delay(self._retry, attempt, self._rand()))
        self._metrics.alert_deliveries.labels("failed").inc()
        log.error("alert webhook: delivery failed", extra={"key_id": alert.slot.subject})

    async def _post(self, body: bytes) -> str:
        """'delivered', 'retry' or 'rejected'."""
        try:
            response = await self._client.post(
                self._url, content=body, headers=self._headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            log.warning("alert webhook unreachable: %s", type(exc).__name__)
            return "retry"
        if response.is_success:
            return "delivered"
        status = response.status_code
        log.warning("alert webhook answered %d", status)
        return "retry" if status >= 500 or status in _RETRY_STATUSES else "rejected"
