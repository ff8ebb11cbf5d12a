"""Retry policy: what to retry, how long to wait, and whether the wait fits (sans-I/O).

The caller owns the clock and the randomness: it passes `now` (monotonic seconds), the call's
deadline on the same clock, and `rand = random.random()`, so every decision here is a pure
function that tests can pin down.

- `should_retry`: connect errors, timeouts and the policy's statuses (429, 500, 502, 503, 504
  by default), while attempts are left. Never a 4xx caused by the request (400, 404, 413...):
  the same request would fail the same way. Whether anything has been sent to the client yet
  (streams) is the router's business, not this module's.
- `backoff_delay`: "full jitter" (`rand * min(max_backoff, base * 2 ** (attempt - 1))`, AWS
  architecture blog, 2015), which spreads a burst of retries evenly instead of in waves.
  A Retry-After from the upstream is a floor: retrying sooner only earns another 429. It is
  capped at `max_retry_after_s`, so a stray `Retry-After: 86400` cannot park a call; the
  deadline check then decides whether the wait is worth it at all.
- `next_attempt_at`: when the retry would start, or None if that is not before the deadline.
- `parse_retry_after` / `parse_retry_after_ms`: the header's two forms (delta-seconds and
  HTTP-date, RFC 9110 §10.2.3) and OpenAI's `retry-after-ms`. Prefer `retry-after-ms` when
  both parse: it is the more precise of the two.
"""

from __future__ import annotations

import math
import re
from datetime import UTC
from email.utils import parsedate_to_datetime

import msgspec

__all__ = [
    "RetryPolicy",
    "backoff_delay",
    "next_attempt_at",
    "parse_retry_after",
    "parse_retry_after_ms",
    "should_retry",
]

# Delta-seconds. RFC 9110 allows digits only; fractions are seen in the wild and harmless, and a
# leading '-' is read as "now". Bounded length: nothing sensible needs more than 20 characters.
_DELTA = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,9})?")
_MAX_EXPONENT = 64  # 2 ** 64 times any sane base is far above any cap, and still a finite float


class RetryPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_attempts: int = 3  # per deployment, the first attempt included; 1 = never retry
    base_s: float = 0.2  # the first retry waits up to this, the second up to twice this...
    max_backoff_s: float = 5.0  # cap on the jittered backoff (not on Retry-After)
    max_retry_after_s: float = 30.0  # cap on an upstream's Retry-After
    retry_statuses: tuple[int, ...] = (429, 500, 502, 503, 504, 529)  # 529: Anthropic overloaded

    def __post_init__(self) -> None:
        # msgspec turns a ValueError raised here into a ValidationError naming the field.
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        for name in ("base_s", "max_backoff_s", "max_retry_after_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        for status in self.retry_statuses:
            if not 100 <= status <= 599:
                raise ValueError(f"retry_statuses: {status!r} is not an HTTP status")


def should_retry(
    policy: RetryPolicy, attempt: int, *, status: int | None, timeout: bool, connect_error: bool
) -> bool:
    """Whether to try the same deployment again after attempt number `attempt` (1-based)
    ended with `status` (None: no response), a timeout or a connect error."""
    if attempt >= policy.max_attempts:
        return False
    if timeout or connect_error:
        return True
    return status is not None and status in policy.retry_statuses


def backoff_delay(
    policy: RetryPolicy, attempt: int, rand: float, retry_after: float | None = None
) -> float:
    """Seconds to wait after attempt number `attempt` (1-based) failed, with `rand` in [0, 1)."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt!r}")
    if not 0.0 <= rand < 1.0:
        raise ValueError(f"rand must be in [0, 1), got {rand!r}")
    ceiling = min(policy.max_backoff_s, math.ldexp(policy.base_s, min(attempt - 1, _MAX_EXPONENT)))
    delay = rand * ceiling
    if retry_after is not None and retry_after > 0:  # `> 0` also drops a NaN
        delay = max(delay, min(retry_after, policy.max_retry_after_s))
    return delay


def next_attempt_at(now: float, delay: float, deadline: float | None) -> float | None:
    """When the retry would start; None if that is at or after `deadline` (no time left to
    do anything). `deadline` None means the call has none."""
    at = now + delay
    if deadline is not None and at >= deadline:
        return None
    return at


def parse_retry_after(value: str | bytes | None, now_epoch: float) -> float | None:
    """A `Retry-After` header as seconds from now: delta-seconds or an HTTP-date (compared
    with `now_epoch`, wall-clock seconds since the epoch). A time in the past gives 0.0;
    absent or unparseable gives None."""
    text = _text(value)
    if text is None:
        return None
    if _DELTA.fullmatch(text):
        return max(0.0, float(text))
    try:
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:  # "-0000" zone: RFC 5322's "UTC, origin unknown"
            when = when.replace(tzinfo=UTC)
        epoch = when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):  # email.utils raises all sorts
        return None
    return max(0.0, epoch - now_epoch)


def parse_retry_after_ms(value: str | bytes | None) -> float | None:
    """OpenAI's `retry-after-ms` header (milliseconds, possibly fractional) as seconds."""
    text = _text(value)
    if text is None or not _DELTA.fullmatch(text):
        return None
    return max(0.0, float(text) / 1000.0)


def _text(value: str | bytes | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    text = value.strip()
    return text or None
