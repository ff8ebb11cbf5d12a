"""Rate limits: requests and tokens per minute over an exact sliding window (sans-I/O).

One `RateLimiter` per key (and per upstream deployment), `RateLimitPolicy(rpm, tpm)`, None
meaning unlimited; time comes in as `now` (monotonic seconds) and never moves backwards (an
earlier `now` is taken as the latest seen).

Guarantee, exactly: a call admitted at `t` is counted at every `now` in [t, t + span) and not
at t + span, so in every half-open interval [a, a + span) at most `rpm` calls are admitted, and
the token estimates admitted in it sum to at most `tpm` (plus any upward `adjust`: a call that
used more tokens than estimated is counted at its true size, and later calls wait for it). A
burst at the end of one minute and another at the start of the next never add up past the
limit, and calls are refused only when admitting them would break this (the limiter is exact
both ways; tests check it against a naive model).

Why not `core.window.SlidingWindow`: a bucketed counter forgets a call `span - width` to `span`
after it, depending on where it fell in its bucket, so it can only promise the limit over
intervals `span - width` long: over a true 60 s interval a burst at the end of one bucket and
the start of the next 60 s later admits more than the limit. Exactness here costs a log of the
calls in the window, (expiry, tokens), in admission order: appending and expiring are O(1)
amortised (a list with a moving head, compacted when half dead), the request count is the
log's length and the token total a running sum. Memory is bounded by the limit: at most `rpm`
entries, or `tpm` without an rpm (calls estimated at 0 tokens are then not logged). Only a
refusal on tokens walks the log, over the entries that must leave before the call fits.

`check(now, tokens)` admits or refuses one call (tokens: prompt estimate + max output) and
gives the header values: `retry_after_s`, when refused, is the wait after which the same call
is admitted if nothing else is (`now + retry_after_s` is exactly the first instant it fits, in
floats; the Retry-After header rounds it up to whole seconds); `None` when it never fits (more
tokens than `tpm`, or `rpm == 0`). `reset_*_s` is the time until the oldest counted call
leaves the window, i.e. until some capacity frees up (0 when nothing is counted).
`adjust(ticket, actual)` replaces an admitted call's estimate by its actual tokens (>= 0, so
the total never goes negative), in place: the call stays counted from its admission time; a
call that outlived the window has left it, and its adjustment changes nothing.
"""

from __future__ import annotations

import enum
import math

import msgspec

__all__ = ["Decision", "Limit", "RateLimitPolicy", "RateLimiter", "format_reset"]

_COMPACT_AT = 64  # compact the log once this many dead entries make up half of it


class Limit(enum.StrEnum):
    REQUESTS = "requests"
    TOKENS = "tokens"


class RateLimitPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rpm: int | None = None  # calls per window; None: unlimited
    tpm: int | None = None  # estimated tokens per window; None: unlimited
    window_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value!r}")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"window_s must be a finite number > 0, got {self.window_s!r}")


def format_reset(seconds: float) -> str:
    """A duration as OpenAI writes its reset headers ('20ms', '1s', '8.5s', '6m0s'),
    rounded up to the millisecond so that a client never comes back too early."""
    ms = max(0, math.ceil(round(seconds * 1000, 6)))
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms // 1000}.{ms % 1000:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    return f"{minutes}m{secs}" if minutes else secs


class Decision(msgspec.Struct, frozen=True):
    admitted: bool
    ticket: int | None  # admitted and logged: hand to `adjust` after settlement
    refused_by: Limit | None  # the limit whose wait is longer (requests on a tie)
    retry_after_s: float | None  # refused: wait this long; None: admitted, or never fits
    limit_requests: int | None
    remaining_requests: int | None  # after this call, if admitted
    reset_requests_s: float | None
    limit_tokens: int | None
    remaining_tokens: int | None
    reset_tokens_s: float | None

    @property
    def retry_after(self) -> str | None:
        """The Retry-After header: whole seconds, rounded up (sub-µs float noise aside), >= 1."""
        if self.retry_after_s is None:
            return None
        return str(max(1, math.ceil(round(self.retry_after_s, 6))))

    def headers(self) -> list[tuple[str, str]]:
        """x-ratelimit-* for every response (only for the limits that are set), and
        Retry-After on a refusal that a wait can cure."""
        headers = []
        for unit, limit, remaining, reset in (
            ("requests", self.limit_requests, self.remaining_requests, self.reset_requests_s),
            ("tokens", self.limit_tokens, self.remaining_tokens, self.reset_tokens_s),
        ):
            if limit is not None:
                headers.append((f"x-ratelimit-limit-{unit}", str(limit)))
                headers.append((f"x-ratelimit-remaining-{unit}", str(remaining)))
                headers.append((f"x-ratelimit-reset-{unit}", format_reset(reset or 0.0)))
        if (retry_after := self.retry_after) is not None:
            headers.append(("retry-after", retry_after))
        return headers


class RateLimiter:
    __slots__ = ("_base", "_expiry", "_head", "_now", "_policy", "_tokens", "_total")

    def __init__(self, policy: RateLimitPolicy) -> None:
        self._policy = policy
        self._expiry: list[float] = []  # when each logged call leaves the window, ascending
        self._tokens: list[int] = []  # its tokens (estimate, then actual)
        self._head = 0  # the first live entry; those before it have left
        self._base = 0  # the absolute number (ticket) of `_expiry[0]`
        self._total = 0  # tokens of the live entries
        self._now = -math.inf

    @property
    def policy(self) -> RateLimitPolicy:
        return self._policy

    def totals(self, now: float) -> tuple[int, int]:
        """(calls, tokens) counted in the window at `now`."""
        self._expire(now)
        return len(self._expiry) - self._head, self._total

    def check(self, now: float, tokens: int) -> Decision:
        """Admit (and count) one call estimated at `tokens`, or refuse it."""
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens!r}")
        now = self._expire(now)
        rpm, tpm = self._policy.rpm, self._policy.tpm
        expiry, head, total = self._expiry, self._head, self._total
        calls = len(expiry) - head
        request_wait = token_wait = 0.0
        leave_r = leave_t = now  # when the entries that must leave have left
        if rpm is not None and calls >= rpm:
            leave_r = expiry[head + calls - rpm] if rpm else math.inf
        if tpm is not None and total + tokens > tpm:
            leave_t = self._tokens_leave(total + tokens - tpm) if tokens <= tpm else math.inf
        if leave_r > now or leave_t > now:
            request_wait, token_wait = leave_r - now, leave_t - now
            by = Limit.REQUESTS if request_wait >= token_wait else Limit.TOKENS
            leave = max(leave_r, leave_t)
            return self._decision(now, None, by, None if leave == math.inf else _wait(now, leave))
        ticket = None
        if rpm is not None or (tpm is not None and tokens):
            ticket = self._base + len(expiry)
            expiry.append(now + self._policy.window_s)
            self._tokens.append(tokens)
            self._total += tokens
        return self._decision(now, ticket, None, None)

    def adjust(self, ticket: int | None, actual: int) -> None:
        """Count the admitted call `ticket` at its `actual` tokens instead of its estimate."""
        if actual < 0:
            raise ValueError(f"tokens must be >= 0, got {actual!r}")
        if ticket is None:
            return
        i = ticket - self._base
        if i >= len(self._tokens):
            raise ValueError(f"ticket {ticket} was not issued by this limiter")
        if i >= self._head:  # still counted
            self._total += actual - self._tokens[i]
            self._tokens[i] = actual

    def _tokens_leave(self, excess: int) -> float:
        # The expiry of the entry whose leaving frees `excess` tokens (the oldest go first).
        freed = 0
        i = self._head
        while freed < excess:
            freed += self._tokens[i]
            i += 1
        return self._expiry[i - 1]

    def _decision(
        self, now: float, ticket: int | None, by: Limit | None, retry_after: float | None
    ) -> Decision:
        rpm, tpm = self._policy.rpm, self._policy.tpm
        calls = len(self._expiry) - self._head
        reset = self._expiry[self._head] - now if calls else 0.0
        return Decision(
            admitted=by is None,
            ticket=ticket,
            refused_by=by,
            retry_after_s=retry_after,
            limit_requests=rpm,
            remaining_requests=None if rpm is None else max(0, rpm - calls),
            reset_requests_s=None if rpm is None else reset,
            limit_tokens=tpm,
            remaining_tokens=None if tpm is None else max(0, tpm - self._total),
            reset_tokens_s=None if tpm is None else (reset if self._total else 0.0),
        )

    def _expire(self, now: float) -> float:
        if now > self._now:
            self._now = now
        now = self._now
        expiry, tokens = self._expiry, self._tokens
        head, end = self._head, len(expiry)
        while head < end and expiry[head] <= now:
            self._total -= tokens[head]
            head += 1
        if head >= _COMPACT_AT and head * 2 >= end:
            del expiry[:head], tokens[:head]
            self._base += head
            head = 0
        self._head = head
        return now


def _wait(now: float, until: float) -> float:
    """A `w` with `now + w >= until` in floats (`until - now` may round below it)."""
    wait = until - now
    while now + wait < until:
        wait = math.nextafter(wait, math.inf)
    return wait
