from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from circuitd.core.breaker import (
    Breaker,
    BreakerError,
    BreakerPolicy,
    Permit,
    Reason,
    State,
    Transition,
)
from circuitd.core.outcome import Outcome, classify

S, F, IG, C = Outcome.SUCCESS, Outcome.FAILURE, Outcome.IGNORED, Outcome.CANCELLED
T0 = 1000.0


def full_wait() -> float:
    """The breakers' `rand` here: every open wait in full (the jitter has its own tests)."""
    return 0.0


# The failure-rate rules alone: most tables below count failures into the window, and the
# consecutive-failures trip (tested on its own) would fire first.
RATE = BreakerPolicy(consecutive_failures=0)
STREAK = BreakerPolicy(consecutive_failures=5)
# The old half-open rule: the first failed probe re-opens, 2 successful ones close.
FIRST_FAILURE = BreakerPolicy(consecutive_failures=0, half_open_calls=2)


def call(breaker: Breaker, outcome: Outcome, now: float = T0, **kw: float) -> Permit:
    permit = breaker.acquire(now)
    assert permit is not None
    breaker.record(permit, outcome, now, **kw)
    return permit


def tripped(policy: BreakerPolicy | None = None, now: float = T0) -> Breaker:
    """A breaker that has just tripped at `now` (10 failures under the default policy)."""
    breaker = Breaker(policy or RATE, rand=full_wait)
    while breaker.state is State.CLOSED:
        call(breaker, F, now)
    breaker.pop_transitions()
    return breaker


def probe_until_decided(breaker: Breaker, outcome: Outcome, now: float) -> int:
    """Probes one at a time, each ending in `outcome`, until the breaker leaves HALF_OPEN;
    returns how many it took."""
    count = 0
    while True:
        call(breaker, outcome, now)
        count += 1
        if breaker.state is not State.HALF_OPEN:
            return count


@pytest.mark.parametrize(
    ("policy", "outcomes", "decided_at", "verdict"),
    [
        # defaults: N = 10 at 0.5 -> the 5th failure re-opens, the 6th success closes
        ({}, [F] * 4, None, None),
        ({}, [F] * 5, 4, State.OPEN),  # a dead upstream costs 5 probes, not 10
        ({}, [S] * 5, None, None),
        ({}, [S] * 6, 5, State.CLOSED),
        ({}, [F, S] * 4 + [F], 8, State.OPEN),
        ({}, [S, F] * 4 + [S, S], 9, State.CLOSED),
        ({}, [S, F] * 4 + [S, F], 9, State.OPEN),  # 5/10 >= 0.5: inclusive, like the window
        ({}, [F] * 4 + [S] * 6, 9, State.CLOSED),  # a failure a quarter of the time: closes
        ({}, [IG, C] * 20 + [F] * 5, 44, State.OPEN),  # client faults and cancels count nothing
        # 3/10 >= 0.3 in floats: 3 failures re-open, 8 successes close
        ({"failure_rate": 0.3}, [F] * 3, 2, State.OPEN),
        ({"failure_rate": 0.3}, [S] * 7 + [F] * 2, None, None),
        ({"failure_rate": 0.3}, [F, F] + [S] * 8, 9, State.CLOSED),
        # 7/25 >= 0.28 in floats, though 0.28 * 25 is 7.000000000000001
        ({"failure_rate": 0.28, "half_open_calls": 25}, [F] * 7, 6, State.OPEN),
        ({"failure_rate": 1.0}, [F] * 9 + [S], 9, State.CLOSED),  # one success decides
        ({"failure_rate": 1.0}, [F] * 10, 9, State.OPEN),
        ({"half_open_calls": 3}, [S, F, F], 2, State.OPEN),  # k = 2: 1/3 < 0.5 <= 2/3
        ({"half_open_calls": 3}, [F, S, S], 2, State.CLOSED),
        ({"half_open_calls": 1}, [F], 0, State.OPEN),
        ({"half_open_calls": 1}, [S], 0, State.CLOSED),
        # 2 at 0.5 is the first-failure rule: one failed probe re-opens, two successes close
        ({"half_open_calls": 2}, [S, F], 1, State.OPEN),
        ({"half_open_calls": 2}, [S, S], 1, State.CLOSED),
        ({"half_open_calls": 2}, [F], 0, State.OPEN),
    ],
)
def test_the_probe_that_decides(
    policy: dict[str, float],
    outcomes: list[Outcome],
    decided_at: int | None,
    verdict: State | None,
) -> None:
    breaker = tripped(msgspec.convert({"consecutive_failures": 0, **policy}, BreakerPolicy))
    now = T0 + 5.0
    for i, outcome in enumerate(outcomes):
        call(breaker, outcome, now)
        expected = verdict if decided_at is not None and i >= decided_at else State.HALF_OPEN
        assert breaker.state is expected, i
        if breaker.state is not State.HALF_OPEN:
            break
    transitions = breaker.pop_transitions()
    assert transitions[0].reason is Reason.WAIT_ELAPSED
    if verdict is State.OPEN:
        assert transitions[1:] == [
            Transition(State.HALF_OPEN, State.OPEN, Reason.PROBES_FAILED, now, 10.0, 2)
        ]
    elif verdict is State.CLOSED:
        assert transitions[1:] == [
            Transition(State.HALF_OPEN, State.CLOSED, Reason.PROBES_SUCCEEDED, now, 0.0, 0)
        ]
    else:
        assert transitions[1:] == []
        snap = breaker.snapshot(now)
        assert (snap.probe_successes, snap.probe_failures) == (
            outcomes.count(S),
            outcomes.count(F),
        )


def test_no_probe_beyond_those_that_can_still_count() -> None:
    # N = 3 (2 failures re-open, 2 successes close), 5 slots: only 3 probes go out at once,
    # and while the probes out can decide the verdict no other is admitted.
    breaker = tripped(BreakerPolicy(consecutive_failures=0, half_open_calls=3, half_open_probes=5))
    now = T0 + 5.0
    first, second, third = (breaker.acquire(now) for _ in range(3))
    assert first is not None and second is not None and third is not None
    assert breaker.acquire(now) is None
    breaker.record(first, S, now)  # 1 result + 2 out = 3: still full
    assert breaker.acquire(now) is None
    breaker.record(second, IG, now)  # counts nothing: its place is free again
    fourth = breaker.acquire(now)
    assert fourth is not None and breaker.acquire(now) is None
    breaker.record(third, F, now)
    breaker.record(fourth, S, now)  # 2 successes of 3 results: closes
    assert breaker.state is State.CLOSED


@pytest.mark.parametrize(
    ("policy", "outcomes", "trips_at"),
    [
        ({}, [F] * 9, None),  # minimum_calls - 1 failures: no verdict yet
        ({}, [F] * 10, 9),  # the minimum-th failure trips
        ({}, [S] * 5 + [F] * 5, 9),  # 5/10 = 0.5: the rate is inclusive
        ({}, [S] * 6 + [F] * 4, None),  # 0.4
        ({}, [S] * 6 + [F] * 5, None),  # 5/11 just under 0.5
        ({}, [S] * 6 + [F] * 6, 11),  # 6/12
        ({}, [F] * 9 + [S], 9),  # a success can complete the minimum: 9/10 >= 0.5
        ({}, [F] * 9 + [IG] * 100 + [C] * 100, None),  # client faults and cancels count nothing
        ({}, [F] * 9 + [IG, F], 10),
        ({"failure_rate": 0.3}, [S] * 7 + [F] * 3, 9),  # 3/10 == 0.3 in floats too
        ({"failure_rate": 0.3}, [S] * 8 + [F] * 3, None),  # 3/11
        ({"failure_rate": 1.0}, [S] + [F] * 50, None),
        ({"minimum_calls": 1}, [F], 0),
    ],
)
def test_the_call_that_trips(
    policy: dict[str, float], outcomes: list[Outcome], trips_at: int | None
) -> None:
    breaker = Breaker(
        msgspec.convert({"consecutive_failures": 0, **policy}, BreakerPolicy), rand=full_wait
    )
    for i, outcome in enumerate(outcomes):
        call(breaker, outcome)
        expected = State.OPEN if trips_at is not None and i >= trips_at else State.CLOSED
        assert breaker.state is expected, i
        if breaker.state is State.OPEN:
            break
    if trips_at is not None:
        [transition] = breaker.pop_transitions()
        assert transition == Transition(State.CLOSED, State.OPEN, Reason.FAILURE_RATE, T0, 5.0, 1)


@pytest.mark.parametrize(
    ("outcomes", "trips_at"),
    [
        ([F] * 4, None),
        ([F] * 5, 4),  # the fifth failure in a row trips, below minimum_calls
        ([S] * 1000 + [F] * 5, 1004),  # a window full of successes does not delay it
        ([F] * 4 + [S] + [F] * 4, None),  # a success breaks the streak
        ([F] * 4 + [IG, C] * 10 + [F], 24),  # client faults and cancels neither count nor break it
        ([F] * 2 + [Outcome.RATE_LIMITED] * 3, 4),  # a 429 without Retry-After is a failure
    ],
)
def test_consecutive_failures_trip(outcomes: list[Outcome], trips_at: int | None) -> None:
    breaker = Breaker(STREAK, rand=full_wait)  # 5 in a row, or the rate over 30 s
    for i, outcome in enumerate(outcomes):
        call(breaker, outcome)
        expected = State.OPEN if trips_at is not None and i >= trips_at else State.CLOSED
        assert breaker.state is expected, i
        if breaker.state is State.OPEN:
            break
    transitions = breaker.pop_transitions()
    if trips_at is None:
        assert transitions == []
        assert breaker.snapshot(T0).failure_streak < 5
    else:
        assert transitions == [
            Transition(State.CLOSED, State.OPEN, Reason.CONSECUTIVE_FAILURES, T0, 5.0, 1)
        ]


def test_the_streak_restarts_after_each_transition() -> None:
    breaker = Breaker(msgspec.structs.replace(STREAK, half_open_calls=2), rand=full_wait)
    for _ in range(5):
        call(breaker, F)
    probe = breaker.acquire(T0 + 5.0)
    assert probe is not None
    breaker.record(probe, F, T0 + 5.0)  # probe failed: open 10 s
    for now in (T0 + 15.0, T0 + 15.0):
        call(breaker, S, now)  # two probes close it
    assert breaker.state is State.CLOSED
    assert breaker.snapshot(T0 + 15.0).failure_streak == 0
    for _ in range(4):
        call(breaker, F, T0 + 15.0)
    assert breaker.state is State.CLOSED
    call(breaker, F, T0 + 15.0)
    assert breaker.snapshot(T0 + 15.0).open_remaining_s == 5.0  # trips counted afresh


def test_old_failures_leave_the_window() -> None:
    breaker = Breaker(RATE, rand=full_wait)  # 30 s in 3 s buckets
    for _ in range(9):
        call(breaker, F, T0)  # bucket [999, 1002): leaves at 1029
    call(breaker, F, T0 + 29.0)
    assert breaker.state is State.CLOSED  # 1029 is past the first nine
    assert breaker.snapshot(T0 + 29.0).calls == 1
    breaker = Breaker(RATE, rand=full_wait)
    for _ in range(9):
        call(breaker, F, T0)
    call(breaker, F, T0 + 28.999)
    assert breaker.state is State.OPEN


def test_open_waits_to_the_millisecond() -> None:
    breaker = tripped()
    until = T0 + 5.0
    assert breaker.acquire(until - 0.001) is None
    assert breaker.state is State.OPEN
    assert breaker.snapshot(until - 0.001).open_remaining_s == pytest.approx(0.001)
    assert breaker.pop_transitions() == []
    probe = breaker.acquire(until)
    assert probe is not None and probe.probe
    assert breaker.snapshot(until).state is State.HALF_OPEN
    assert breaker.pop_transitions() == [
        Transition(State.OPEN, State.HALF_OPEN, Reason.WAIT_ELAPSED, until, 0.0, 1)
    ]


def test_probe_limit_under_1000_concurrent_acquires() -> None:
    breaker = tripped()
    now = T0 + 5.0
    permits = [breaker.acquire(now) for _ in range(1000)]
    granted = [p for p in permits if p is not None]
    assert len(granted) == breaker.policy.half_open_probes == 2
    assert all(p.probe for p in granted)
    assert breaker.snapshot(now).probes_in_flight == 2


def test_probe_limit_holds_under_interleaving() -> None:
    # 1000 tasks arriving while probes finish in any order: never more than 2 in flight, and
    # a slot freed by an ignored or cancelled probe goes to the next task.
    rng = random.Random(5)
    breaker = tripped(
        BreakerPolicy(half_open_calls=10**6, consecutive_failures=0)
    )  # stays half-open throughout
    now = T0 + 5.0
    in_flight: list[Permit] = []
    granted = 0
    for _ in range(1000):
        permit = breaker.acquire(now)
        if permit is not None:
            granted += 1
            in_flight.append(permit)
        assert len(in_flight) <= 2
        assert breaker.snapshot(now).probes_in_flight == len(in_flight)
        if in_flight and rng.random() < 0.4:
            done = in_flight.pop(rng.randrange(len(in_flight)))
            breaker.record(done, rng.choice([S, IG, C]), now)
        now += 0.001
    assert breaker.state is State.HALF_OPEN
    assert 2 < granted < 1000


@pytest.mark.parametrize(
    ("policy", "waits"),
    [
        ({}, [5.0, 10.0, 20.0, 40.0, 80.0, 120.0, 120.0]),
        ({"open_backoff": 1.0}, [5.0, 5.0, 5.0]),
        ({"open_s": 1.0, "open_backoff": 3.0, "max_open_s": 10.0}, [1.0, 3.0, 9.0, 10.0]),
    ],
)
def test_failed_probes_reopen_with_a_grown_wait(
    policy: dict[str, float], waits: list[float]
) -> None:
    breaker = tripped(msgspec.convert(policy, BreakerPolicy))
    now = T0
    for trips, wait in enumerate(waits, start=1):
        snap = breaker.snapshot(now)
        assert (snap.trips, snap.open_remaining_s) == (trips, wait)
        now += wait
        assert breaker.acquire(now - 0.001) is None
        other = breaker.acquire(now)  # held out while 5 other probes fail
        assert other is not None
        assert probe_until_decided(breaker, F, now) == 5
        assert breaker.state is State.OPEN
        breaker.record(other, S, now)  # the other probe is from a past generation now
        assert breaker.state is State.OPEN
        [_, reopened] = breaker.pop_transitions()
        assert reopened.reason is Reason.PROBES_FAILED
        assert reopened.trips == trips + 1


def test_probe_successes_close_with_a_fresh_window() -> None:
    breaker = tripped()
    now = T0 + 5.0
    first, second = breaker.acquire(now), breaker.acquire(now)
    assert first is not None and second is not None
    breaker.record(first, F, now)
    for _ in range(4):  # one failure among the probes does not re-open
        call(breaker, S, now)
    assert breaker.state is State.HALF_OPEN
    late = breaker.acquire(now)  # the second slot
    assert late is not None and late.probe
    breaker.record(second, S, now)
    assert breaker.state is State.HALF_OPEN
    assert (breaker.snapshot(now).probe_successes, breaker.snapshot(now).probe_failures) == (5, 1)
    call(breaker, S, now)  # the 6th success
    assert breaker.snapshot(now).state is State.CLOSED
    breaker.record(late, F, now)  # late: a past generation's probe changes nothing
    snap = breaker.snapshot(now)
    assert (snap.state, snap.calls, snap.failures, snap.trips) == (State.CLOSED, 0, 0, 0)
    assert [t.reason for t in breaker.pop_transitions()] == [
        Reason.WAIT_ELAPSED,
        Reason.PROBES_SUCCEEDED,
    ]
    for _ in range(10):  # the old window's failures are gone; the trip count restarts
        call(breaker, F, now)
    assert breaker.snapshot(now).open_remaining_s == 5.0


@pytest.mark.parametrize("outcome", [IG, C])
def test_ignored_and_cancelled_probes_free_their_slot(outcome: Outcome) -> None:
    breaker = tripped()
    now = T0 + 5.0
    a, b = breaker.acquire(now), breaker.acquire(now)
    assert a is not None and b is not None and breaker.acquire(now) is None
    breaker.record(a, outcome, now)
    snap = breaker.snapshot(now)
    assert (snap.state, snap.probes_in_flight, snap.probe_successes) == (State.HALF_OPEN, 1, 0)
    assert breaker.acquire(now) is not None


def test_retry_after_opens_a_cool_down_of_exactly_that_length() -> None:
    breaker = Breaker(RATE, rand=full_wait)
    call(breaker, S)
    call(breaker, Outcome.RATE_LIMITED, retry_after=7.0)  # one call: no rate needed
    assert breaker.pop_transitions() == [
        Transition(State.CLOSED, State.OPEN, Reason.COOL_DOWN, T0, 7.0, 0)
    ]
    assert breaker.acquire(T0 + 6.999) is None
    probe = breaker.acquire(T0 + 7.0)
    assert probe is not None and probe.probe
    breaker.record(probe, F, T0 + 7.0)
    probe_until_decided(breaker, F, T0 + 7.0)  # the first real trip: open_s, not a grown wait
    snap = breaker.snapshot(T0 + 7.0)
    assert (snap.state, snap.trips, snap.open_remaining_s) == (State.OPEN, 1, 5.0)


def test_cool_down_is_capped_and_never_shortens_an_open_period() -> None:
    breaker = Breaker(RATE, rand=full_wait)
    early = breaker.acquire(T0)
    assert early is not None
    call(breaker, Outcome.RATE_LIMITED, retry_after=1e9)
    assert breaker.snapshot(T0).open_remaining_s == 120.0  # max_open_s
    breaker.record(early, Outcome.RATE_LIMITED, T0 + 1.0, retry_after=1.0)  # shorter: no effect
    assert breaker.snapshot(T0).open_remaining_s == 120.0
    breaker = Breaker(RATE, rand=full_wait)
    stale = breaker.acquire(T0)
    assert stale is not None
    for _ in range(10):
        call(breaker, F)
    breaker.record(stale, Outcome.RATE_LIMITED, T0 + 1.0, retry_after=30.0)  # lengthens
    snap = breaker.snapshot(T0 + 1.0)
    assert (snap.open_remaining_s, snap.trips) == (30.0, 1)
    assert [t.reason for t in breaker.pop_transitions()] == [Reason.FAILURE_RATE]


def test_cool_down_from_a_probe_or_a_stale_call_in_half_open() -> None:
    for stale in (False, True):
        breaker = Breaker(RATE, rand=full_wait)
        old = breaker.acquire(T0)
        assert old is not None
        for _ in range(10):
            call(breaker, F)
        probe = breaker.acquire(T0 + 5.0)
        assert probe is not None
        permit = old if stale else probe
        breaker.record(permit, Outcome.RATE_LIMITED, T0 + 5.0, retry_after=2.5)
        snap = breaker.snapshot(T0 + 5.0)
        assert (snap.state, snap.open_remaining_s, snap.trips) == (State.OPEN, 2.5, 1)
        assert breaker.pop_transitions()[-1].reason is Reason.COOL_DOWN


def test_rate_limited_without_retry_after_is_a_failure() -> None:
    breaker = Breaker(BreakerPolicy(minimum_calls=1, consecutive_failures=0), rand=full_wait)
    call(breaker, Outcome.RATE_LIMITED)
    assert breaker.pop_transitions()[0].reason is Reason.FAILURE_RATE


def test_late_results_from_a_past_generation_count_nothing() -> None:
    breaker = Breaker(RATE, rand=full_wait)
    old = [p for p in (breaker.acquire(T0) for _ in range(20)) if p is not None]
    assert len(old) == 20
    for _ in range(10):
        call(breaker, F)
    assert breaker.state is State.OPEN
    breaker.record(old.pop(), F, T0)  # in OPEN: ignored
    assert breaker.snapshot(T0).trips == 1
    probe = breaker.acquire(T0 + 5.0)
    assert probe is not None
    for permit in old[:5]:  # in HALF_OPEN: neither probe results nor failures
        breaker.record(permit, S, T0 + 5.0)
    breaker.record(old[5], F, T0 + 5.0)
    snap = breaker.snapshot(T0 + 5.0)
    assert (snap.state, snap.probe_successes, snap.probes_in_flight) == (State.HALF_OPEN, 0, 1)
    breaker.record(probe, S, T0 + 5.0)
    assert probe_until_decided(breaker, S, T0 + 5.0) == 5
    assert breaker.snapshot(T0 + 5.0).state is State.CLOSED
    for permit in old[6:]:  # in CLOSED again: not counted into the fresh window
        breaker.record(permit, F, T0 + 5.0)
    assert breaker.snapshot(T0 + 5.0).calls == 0


def test_a_permit_is_recorded_exactly_once() -> None:
    breaker = Breaker(RATE, rand=full_wait)
    permit = call(breaker, S)
    assert permit.recorded
    with pytest.raises(BreakerError, match="already recorded"):
        breaker.record(permit, S, T0)
    with pytest.raises(BreakerError, match="already recorded"):
        breaker.record(permit, C, T0)
    foreign = Breaker(RATE, rand=full_wait).acquire(T0)
    assert foreign is not None
    with pytest.raises(BreakerError, match="another breaker"):
        breaker.record(foreign, F, T0)
    assert breaker.snapshot(T0).calls == 1


def test_snapshot() -> None:
    breaker = Breaker(RATE, rand=full_wait)
    call(breaker, S)
    call(breaker, F)
    call(breaker, IG)
    snap = breaker.snapshot(T0)
    assert msgspec.json.decode(msgspec.json.encode(snap)) == {
        "state": "closed",
        "state_value": 0,
        "calls": 2,
        "failures": 1,
        "failure_rate": 0.5,
        "failure_streak": 1,
        "open_remaining_s": 0.0,
        "trips": 0,
        "probes_in_flight": 0,
        "probe_successes": 0,
        "probe_failures": 0,
    }
    assert [s.metric for s in State] == [0, 1, 2]
    breaker = tripped()
    assert breaker.snapshot(T0 + 1.0).open_remaining_s == 4.0
    assert breaker.snapshot(T0 + 9.0).open_remaining_s == 0.0
    assert breaker.snapshot(T0 + 9.0).state is State.OPEN  # lazily: until the next acquire


@pytest.mark.parametrize(
    ("status", "flags", "outcome"),
    [
        (200, {}, S),
        (201, {}, S),
        (304, {}, S),
        (200, {"cut": 1}, F),  # a stream cut after its 200
        (None, {"timeout": 1}, F),
        (None, {"connect_error": 1}, F),
        (None, {}, F),  # no response at all
        (408, {}, F),
        (500, {}, F),
        (502, {}, F),
        (503, {}, F),
        (503, {"retry_after": 3.0}, Outcome.RATE_LIMITED),
        (429, {"retry_after": 0.0}, Outcome.RATE_LIMITED),
        (429, {}, F),
        (500, {"retry_after": 3.0}, F),  # only 429/503 ask for a cool-down
        (401, {}, F),  # the deployment's own key was refused
        (403, {}, F),
        (400, {}, IG),
        (404, {}, IG),
        (413, {}, IG),
        (422, {}, IG),
        (400, {"retry_after": 3.0}, IG),
        (600, {}, F),
        (42, {}, F),
    ],
)
def test_classify(status: int | None, flags: dict[str, float], outcome: Outcome) -> None:
    retry_after = flags.pop("retry_after", None)
    kw = {k: bool(v) for k, v in flags.items()}
    assert classify(status, retry_after=retry_after, **kw) is outcome


@pytest.mark.parametrize(
    "fields",
    [
        {"window_s": 0},
        {"window_s": float("inf")},
        {"buckets": 0},
        {"minimum_calls": 0},
        {"failure_rate": 0.0},
        {"failure_rate": 1.01},
        {"open_s": -1.0},
        {"open_backoff": 0.5},
        {"max_open_s": 1.0},  # below open_s
        {"half_open_probes": 0},
        {"half_open_calls": 0},
        {"open_jitter": 1.0},  # a wait of 0
        {"open_jitter": -0.1},
        {"probe_successes": 2},  # the first-failure rule's knob: now half_open_calls
        {"surprise": 1},
    ],
)
def test_policy_validation(fields: dict[str, float]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(fields, BreakerPolicy)


def test_open_wait_does_not_overflow() -> None:
    policy = BreakerPolicy(open_backoff=1e300)
    assert policy.open_wait(1) == 5.0
    assert policy.open_wait(10**6) == 120.0
    assert policy.open_wait(10**6, 0.5) == 108.0


def test_trips_are_jittered_shorter_and_cool_downs_are_not() -> None:
    # Each trip draws once; the wait is the grown one less up to open_jitter (0.2) of it,
    # so the cap stays a cap and a first trip never waits longer than open_s.
    draws = iter([0.5, 0.25, 0.0, 0.0])
    breaker = Breaker(RATE, rand=lambda: next(draws))
    now = T0
    while breaker.state is State.CLOSED:
        call(breaker, F, now)
    waits = []
    for _ in range(3):
        wait = breaker.pop_transitions()[-1].open_for_s  # the last: into OPEN
        waits.append(wait)
        now += wait
        assert breaker.acquire(now - 0.001) is None
        probe_until_decided(breaker, F, now)  # half-open, the probes fail: open again
    assert waits == [5.0 * 0.9, 10.0 * 0.95, 20.0]

    def no_draw() -> float:
        raise AssertionError("a cool-down is the upstream's own wait: not jittered")

    breaker = Breaker(RATE, rand=no_draw)
    call(breaker, Outcome.RATE_LIMITED, T0, retry_after=7.0)
    assert breaker.pop_transitions()[0].open_for_s == 7.0


POLICY = BreakerPolicy(
    window_s=10.0,
    buckets=5,
    minimum_calls=3,
    failure_rate=0.5,
    open_s=1.0,
    open_backoff=2.0,
    max_open_s=8.0,
    half_open_probes=3,
    half_open_calls=4,  # 2 failed probes re-open, 3 successful ones close
    consecutive_failures=4,
)
HALF_OPEN_CALLS, REOPEN_AT, CLOSE_AT = POLICY.half_open_verdict


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.breaker = Breaker(POLICY, rand=full_wait)
        self.now = T0
        self.outstanding: list[Permit] = []
        self.recorded: list[Permit] = []
        self.state = State.CLOSED  # as replayed from the transitions

    @rule(dt=st.sampled_from([0.0, 0.001, 0.25, 1.0, 2.0, 4.0, 11.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule()
    def acquire(self) -> None:
        before = self.breaker.state
        permit = self.breaker.acquire(self.now)
        snap = self.breaker.snapshot(self.now)
        assert not (snap.state is State.OPEN and snap.open_remaining_s <= 0)
        if before is State.CLOSED:
            assert permit is not None and not permit.probe
        if permit is None:
            results = snap.probe_successes + snap.probe_failures + snap.probes_in_flight
            assert snap.state is State.OPEN or (
                snap.state is State.HALF_OPEN
                and (snap.probes_in_flight == POLICY.half_open_probes or results == HALF_OPEN_CALLS)
            )
        else:
            assert permit.generation == self.breaker.generation
            self.outstanding.append(permit)

    @precondition(lambda self: self.outstanding)
    @rule(
        pick=st.integers(0, 1000),
        outcome=st.sampled_from(Outcome),
        retry_after=st.none() | st.sampled_from([0.0, 0.5, 3.0, 100.0]),
    )
    def record(self, pick: int, outcome: Outcome, retry_after: float | None) -> None:
        permit = self.outstanding.pop(pick % len(self.outstanding))
        counted = (
            outcome in (Outcome.SUCCESS, Outcome.FAILURE)
            and self.breaker.state is State.CLOSED
            and permit.generation == self.breaker.generation
        )
        before = self.breaker.snapshot(self.now)
        live_probe = permit.probe and permit.generation == self.breaker.generation
        self.breaker.record(permit, outcome, self.now, retry_after)
        self.recorded.append(permit)
        if live_probe and not (outcome is Outcome.RATE_LIMITED and retry_after is not None):
            # The half-open verdict, from the counts before this result.
            failed = outcome in (Outcome.FAILURE, Outcome.RATE_LIMITED)
            if outcome is Outcome.SUCCESS and before.probe_successes + 1 == CLOSE_AT:
                expected = State.CLOSED
            elif failed and before.probe_failures + 1 == REOPEN_AT:
                expected = State.OPEN
            else:
                expected = State.HALF_OPEN
            assert self.breaker.state is expected
        if counted and self.breaker.state is State.CLOSED:
            # The verdict is taken on each counted result (not when old results expire).
            snap = self.breaker.snapshot(self.now)
            assert snap.calls < POLICY.minimum_calls or snap.failure_rate < POLICY.failure_rate
            assert snap.failure_streak < POLICY.consecutive_failures

    @precondition(lambda self: self.recorded)
    @rule(pick=st.integers(0, 1000), outcome=st.sampled_from(Outcome))
    def record_again(self, pick: int, outcome: Outcome) -> None:
        permit = self.recorded[pick % len(self.recorded)]
        before = self.breaker.snapshot(self.now)
        with pytest.raises(BreakerError):
            self.breaker.record(permit, outcome, self.now)
        assert self.breaker.snapshot(self.now) == before

    @invariant()
    def transitions_chain_and_follow_the_policy(self) -> None:
        for t in self.breaker.pop_transitions():
            event(f"{t.from_state} -> {t.to_state}: {t.reason}")
            assert t.from_state is self.state
            self.state = t.to_state
            if t.reason in (Reason.FAILURE_RATE, Reason.CONSECUTIVE_FAILURES, Reason.PROBES_FAILED):
                assert t.open_for_s == POLICY.open_wait(t.trips)
            elif t.reason is Reason.COOL_DOWN:
                assert 0.0 <= t.open_for_s <= POLICY.max_open_s
        assert self.state is self.breaker.state

    @invariant()
    def counters_are_bounded(self) -> None:
        snap = self.breaker.snapshot(self.now)
        assert 0 <= snap.probes_in_flight <= POLICY.half_open_probes
        assert 0 <= snap.probe_successes < CLOSE_AT
        assert 0 <= snap.probe_failures < REOPEN_AT
        assert snap.probe_successes + snap.probe_failures + snap.probes_in_flight <= HALF_OPEN_CALLS
        assert 0 <= snap.failures <= snap.calls
        assert snap.trips >= 0
        assert 0 <= snap.open_remaining_s <= POLICY.max_open_s
        if snap.state is not State.HALF_OPEN:
            assert snap.probes_in_flight == snap.probe_successes == snap.probe_failures == 0
        if snap.state is State.CLOSED:
            assert snap.trips == 0
        generation = self.breaker.generation
        live_probes = [p for p in self.outstanding if p.probe and p.generation == generation]
        assert snap.probes_in_flight == len(live_probes)
        assert all(not p.recorded for p in self.outstanding)
        assert all(p.recorded for p in self.recorded)


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
