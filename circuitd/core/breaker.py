"""Circuit breaker, one per deployment: a sans-I/O state machine (h11 style; `now` passed in).

Rules (every state change is a row of `_TRANSITIONS`; nothing else assigns the state):

- CLOSED: `acquire` always gives a permit. Each SUCCESS or FAILURE is counted into a sliding
  window (`window_s` in `buckets`, see `core.window` for its exact edges). After each counted
  result, if the window holds >= `minimum_calls` calls and failures / calls >= `failure_rate`,
  the breaker trips: OPEN for `open_s`, less up to `open_jitter` of it at random (the
  breakers of several workers, tripped together by one storm, would otherwise probe
  together, in step with it, after every wait). It trips too after `consecutive_failures`
  FAILUREs in a row with no SUCCESS between them, whatever the window holds: after a busy
  healthy period the window is full of successes, and a hard outage must not wait for as
  many failures to pile up (Envoy's `consecutive_5xx` does the same).
- OPEN: `acquire` refuses (None) while `now < open_until`. The first `acquire` at or after
  `open_until` moves to HALF_OPEN (lazily: without an acquire the state stays OPEN, and
  `snapshot` shows it as OPEN with 0 s remaining).
- HALF_OPEN: `acquire` admits at most `half_open_probes` probes at a time and refuses the
  rest, so a recovering upstream sees a trickle, never a stampede. The probes' results are
  judged like the window's, over at most `half_open_calls` of them: with N = half_open_calls,
  k = the fewest failures with k / N >= `failure_rate`. The k-th failed probe re-opens, with
  the wait grown by `open_backoff` per consecutive trip up to `max_open_s`, then jittered
  the same way; the (N - k + 1)-th successful probe closes it, with a fresh window and the
  trips reset. Each verdict is taken as soon as the rest of the N results could not change
  it (so a dead upstream costs k failed probes, not N), and no probe is admitted beyond the
  N whose results could still count. One failure of an upstream failing a quarter of its
  calls no longer re-opens it (resilience4j's `permittedNumberOfCallsInHalfOpenState` does
  the same).
- Cool-down, in any state: a 429 or 503 with Retry-After (RATE_LIMITED) opens for exactly
  that long (capped at `max_open_s`), whatever the failure rate. The upstream said when to
  come back, so a cool-down is not a trip: it does not grow the next wait. While OPEN it can
  lengthen the open period, never shorten it. After it, HALF_OPEN probes as after a trip.

Generations: each transition starts a new generation, and a permit's result counts only in
the generation that issued it. So a call admitted while CLOSED that fails after the breaker
has opened, or after it went half-open, is not mistaken for a probe, and in OPEN late results
count nothing (the window is reset on closing anyway). The one exception is a cool-down: the
upstream's Retry-After is news about *now*, whenever the call started.

Each permit is recorded exactly once (a second `record` raises `BreakerError`); IGNORED and
CANCELLED count nothing but free a probe slot. Transitions queue up in the breaker: the owner
calls `pop_transitions()` after `acquire`/`record` and logs each one, so each is logged once.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from typing import Final

import msgspec

from circuitd.core.outcome import Outcome
from circuitd.core.window import SlidingWindow

__all__ = [
    "Breaker",
    "BreakerError",
    "BreakerPolicy",
    "BreakerSnapshot",
    "Permit",
    "Reason",
    "State",
    "Transition",
]


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def metric(self) -> int:
        """The gauge value exported for this state: closed 0, open 1, half-open 2."""
        return _METRIC[self]


_METRIC: Final = {State.CLOSED: 0, State.OPEN: 1, State.HALF_OPEN: 2}


class Reason(enum.StrEnum):
    FAILURE_RATE = "failure_rate"
    CONSECUTIVE_FAILURES = "consecutive_failures"
    COOL_DOWN = "cool_down"
    WAIT_ELAPSED = "wait_elapsed"
    PROBES_FAILED = "probes_failed"
    PROBES_SUCCEEDED = "probes_succeeded"


_TRANSITIONS: Final[dict[tuple[State, Reason], State]] = {
    (State.CLOSED, Reason.FAILURE_RATE): State.OPEN,
    (State.CLOSED, Reason.CONSECUTIVE_FAILURES): State.OPEN,
    (State.CLOSED, Reason.COOL_DOWN): State.OPEN,
    (State.OPEN, Reason.WAIT_ELAPSED): State.HALF_OPEN,
    (State.HALF_OPEN, Reason.PROBES_FAILED): State.OPEN,
    (State.HALF_OPEN, Reason.COOL_DOWN): State.OPEN,
    (State.HALF_OPEN, Reason.PROBES_SUCCEEDED): State.CLOSED,
}


class BreakerError(RuntimeError):
    """A permit misused: recorded twice, or given to a breaker that did not issue it."""


class BreakerPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    window_s: float = 30.0  # the sliding window's span
    buckets: int = 10  # its resolution: results leave the window 3 s at a time by default
    minimum_calls: int = 10  # no verdict on fewer calls than this in the window
    failure_rate: float = 0.5  # trip when failures / calls >= this (0 < rate <= 1)
    # Trip after this many failures in a row (0: never). High enough that a busy deployment
    # with a fraction of failing calls never strings that many together by chance (at 25%
    # failures, 20 in a row is ~1e-12 per call); at high traffic 20 failures take
    # milliseconds, and at low traffic the failure rate above trips first.
    consecutive_failures: int = 20
    open_s: float = 5.0  # the wait after a first trip (at most: see open_jitter)
    open_backoff: float = 2.0  # multiplies the wait on each consecutive trip
    max_open_s: float = 120.0  # caps the wait, and a Retry-After cool-down
    open_jitter: float = 0.2  # each trip's wait is up to this fraction shorter, at random
    half_open_probes: int = 2  # probes in flight at once while half-open
    # The half-open verdict is the failure rate over at most this many probe results. At 10
    # and failure_rate 0.5: 5 failures re-open, 6 successes close; an upstream failing 25% of
    # its calls re-opens it with probability 0.078 (re-opening on the first failure: 0.44),
    # and a still-dead one costs 5 failed probes per open period.
    half_open_calls: int = 10

    def __post_init__(self) -> None:
        # msgspec turns a ValueError raised here into a ValidationError naming the field.
        for name in ("window_s", "open_s", "max_open_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        for name in ("buckets", "minimum_calls", "half_open_probes", "half_open_calls"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.consecutive_failures < 0:
            raise ValueError(
                f"consecutive_failures must be >= 0, got {self.consecutive_failures!r}"
            )
        if not 0 < self.failure_rate <= 1:
            raise ValueError(f"failure_rate must be in (0, 1], got {self.failure_rate!r}")
        if not (math.isfinite(self.open_backoff) and self.open_backoff >= 1):
            raise ValueError(
                f"open_backoff must be a finite number >= 1, got {self.open_backoff!r}"
            )
        if not 0 <= self.open_jitter < 1:
            raise ValueError(f"open_jitter must be in [0, 1), got {self.open_jitter!r}")
        if self.max_open_s < self.open_s:
            raise ValueError(f"max_open_s ({self.max_open_s}) must be >= open_s ({self.open_s})")

    @property
    def half_open_verdict(self) -> tuple[int, int, int]:
        """(N, the failed probes that re-open, the successful probes that close): see HALF_OPEN
        in the module docstring."""
        calls = self.half_open_calls
        # The fewest failures k with k / calls >= failure_rate, by the window verdict's own
        # float comparison (7/25 >= 0.28 holds, yet 0.28 * 25 is 7.000000000000001).
        reopen = min(max(math.ceil(self.failure_rate * calls), 1), calls)
        while reopen > 1 and (reopen - 1) / calls >= self.failure_rate:
            reopen -= 1
        while reopen / calls < self.failure_rate:
            reopen += 1
        return calls, reopen, calls - reopen + 1

    def open_wait(self, trips: int, rand: float = 0.0) -> float:
        """How long the `trips`-th consecutive trip keeps the breaker open, given `rand` in
        [0, 1) (0: the full wait)."""
        try:
            wait = min(self.open_s * self.open_backoff ** max(trips - 1, 0), self.max_open_s)
        except OverflowError:
            wait = self.max_open_s
        return wait * (1 - self.open_jitter * rand)


class Transition(msgspec.Struct, frozen=True):
    from_state: State
    to_state: State
    reason: Reason
    at: float  # the `now` it happened at
    open_for_s: float  # how long it opened for; 0.0 unless `to_state` is OPEN
    trips: int  # consecutive trips so far (0 once closed)


class BreakerSnapshot(msgspec.Struct, frozen=True):
    state: State
    state_value: int  # `State.metric`
    calls: int  # in the window (counted only while closed)
    failures: int
    failure_rate: float  # failures / calls, 0.0 without calls
    failure_streak: int  # failures in a row (counted only while closed)
    open_remaining_s: float  # until a probe is allowed; 0.0 unless open
    trips: int
    probes_in_flight: int
    probe_successes: int  # successful probes so far in this half-open period
    probe_failures: int  # failed ones


class Permit:
    """Leave to call the upstream, to be handed back to `Breaker.record` exactly once."""

    __slots__ = ("_owner", "_recorded", "generation", "probe")

    def __init__(self, owner: Breaker, generation: int, probe: bool) -> None:
        self._owner = owner
        self._recorded = False
        self.generation = generation
        self.probe = probe

    @property
    def recorded(self) -> bool:
        return self._recorded

    def __repr__(self) -> str:
        return f"Permit(generation={self.generation}, probe={self.probe})"


class Breaker:
    __slots__ = (
        "_failures",
        "_generation",
        "_open_until",
        "_policy",
        "_probes",
        "_rand",
        "_state",
        "_streak",
        "_successes",
        "_transitions",
        "_trips",
        "_verdict",
        "_window",
    )

    def __init__(
        self, policy: BreakerPolicy | None = None, rand: Callable[[], float] = random.random
    ) -> None:
        self._policy = policy = policy if policy is not None else BreakerPolicy()
        self._rand = rand  # [0, 1): the open waits' jitter
        self._window = SlidingWindow(policy.window_s, policy.buckets, counters=2)
        self._verdict = policy.half_open_verdict  # (N, failures to re-open, successes to close)
        self._state = State.CLOSED
        self._generation = 0
        self._open_until = 0.0
        self._trips = 0  # consecutive trips since the breaker last closed
        self._probes = 0  # probes of this generation in flight
        self._successes = 0  # successful probes of this generation
        self._failures = 0  # failed probes of this generation
        self._streak = 0  # failures in a row while closed (this generation)
        self._transitions: list[Transition] = []

    @property
    def policy(self) -> BreakerPolicy:
        return self._policy

    @property
    def state(self) -> State:
        return self._state

    @property
    def generation(self) -> int:
        """Bumped by every transition; a permit's result counts only in its own generation."""
        return self._generation

    def acquire(self, now: float) -> Permit | None:
        """A permit to call the upstream, or None: refused (open, or no probe slot free)."""
        if self._state is State.CLOSED:
            return Permit(self, self._generation, probe=False)
        if self._state is State.OPEN:
            if now < self._open_until:
                return None
            self._enter(Reason.WAIT_ELAPSED, now)
        calls, _, _ = self._verdict
        if (
            self._probes >= self._policy.half_open_probes
            or self._successes + self._failures + self._probes >= calls
        ):
            return None  # a slot is busy, or the probes out can decide the verdict already
        self._probes += 1
        return Permit(self, self._generation, probe=True)

    def record(
        self, permit: Permit, outcome: Outcome, now: float, retry_after: float | None = None
    ) -> None:
        """The result of the call `permit` admitted. `retry_after` (seconds) is read only
        with RATE_LIMITED; RATE_LIMITED without it counts as FAILURE."""
        if permit._owner is not self:
            raise BreakerError(f"{permit!r} was issued by another breaker")
        if permit._recorded:
            raise BreakerError(f"{permit!r} was already recorded")
        permit._recorded = True
        if outcome is Outcome.RATE_LIMITED:
            if retry_after is not None:
                self._cool_down(now, retry_after)
                return
            outcome = Outcome.FAILURE
        if permit.generation != self._generation:
            return  # issued before the last transition: see "Generations" above
        if permit.probe:  # this generation's probe: the breaker is half-open
            self._probes -= 1
            _, reopen, close = self._verdict
            if outcome is Outcome.SUCCESS:
                self._successes += 1
                if self._successes >= close:
                    self._enter(Reason.PROBES_SUCCEEDED, now)
            elif outcome is Outcome.FAILURE:
                self._failures += 1
                if self._failures >= reopen:
                    self._trip(Reason.PROBES_FAILED, now)
            return
        # This generation's ordinary permit: the breaker is closed.
        if outcome is Outcome.SUCCESS or outcome is Outcome.FAILURE:
            failed = outcome is Outcome.FAILURE
            self._window.add(now, 1, int(failed))
            self._streak = self._streak + 1 if failed else 0
            calls, failures = self._window.totals(now)
            policy = self._policy
            if calls >= policy.minimum_calls and failures / calls >= policy.failure_rate:
                self._trip(Reason.FAILURE_RATE, now)
            elif 0 < policy.consecutive_failures <= self._streak:
                self._trip(Reason.CONSECUTIVE_FAILURES, now)

    def pop_transitions(self) -> list[Transition]:
        """The transitions since the last call, oldest first; each is returned once."""
        transitions, self._transitions = self._transitions, []
        return transitions

    def snapshot(self, now: float) -> BreakerSnapshot:
        """The state for /health and metrics. Changes nothing the breaker decides on."""
        state = self._state
        calls, failures = self._window.totals(now) if state is State.CLOSED else (0, 0)
        remaining = max(0.0, self._open_until - now) if state is State.OPEN else 0.0
        return BreakerSnapshot(
            state=state,
            state_value=state.metric,
            calls=calls,
            failures=failures,
            failure_rate=failures / calls if calls else 0.0,
            failure_streak=self._streak,
            open_remaining_s=remaining,
            trips=self._trips,
            probes_in_flight=self._probes,
            probe_successes=self._successes,
            probe_failures=self._failures,
        )

    def _trip(self, reason: Reason, now: float) -> None:
        self._trips += 1
        self._enter(reason, now, self._policy.open_wait(self._trips, self._rand()))

    def _cool_down(self, now: float, retry_after: float) -> None:
        # `not > 0` also turns a NaN into 0: open until the next acquire, then probe.
        wait = min(retry_after, self._policy.max_open_s) if retry_after > 0 else 0.0
        if self._state is State.OPEN:
            self._open_until = max(self._open_until, now + wait)  # same state: no transition
        else:
            self._enter(Reason.COOL_DOWN, now, wait)

    def _enter(self, reason: Reason, now: float, open_for: float = 0.0) -> None:
        old = self._state
        new = _TRANSITIONS[old, reason]  # a KeyError here is a bug in this module
        self._state = new
        self._generation += 1
        self._probes = 0
        self._successes = 0
        self._failures = 0
        self._streak = 0
        if new is State.OPEN:
            self._open_until = now + open_for
        elif new is State.CLOSED:
            self._trips = 0
            self._window.clear()
        self._transitions.append(Transition(old, new, reason, now, open_for, self._trips))
