from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from circuitd.core.ratelimit import Decision, Limit, RateLimiter, RateLimitPolicy, format_reset

T0 = 1000.0


def limiter(rpm: int | None = None, tpm: int | None = None) -> RateLimiter:
    return RateLimiter(RateLimitPolicy(rpm=rpm, tpm=tpm))


# -- edges on a fake clock ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "admitted"),
    [
        (T0, False),  # the limit is reached
        (T0 + 59.999, False),  # 1 ms before the first call leaves
        (T0 + 60.0, True),  # exactly at the boundary it has left
        (T0 + 60.001, True),
    ],
)
def test_a_call_is_counted_for_exactly_the_window(at: float, admitted: bool) -> None:
    rl = limiter(rpm=2)
    assert rl.check(T0, 0).admitted
    assert rl.check(T0 + 30, 0).admitted
    assert rl.check(at, 0).admitted is admitted


def test_a_burst_at_the_end_of_a_minute_and_the_start_of_the_next() -> None:
    rl = limiter(rpm=10)
    for _ in range(10):
        assert rl.check(T0 + 59.9, 0).admitted  # the end of one "minute"
    for t in (T0 + 60.0, T0 + 61.0, T0 + 119.899):  # a fixed window would admit 10 more here
        assert not rl.check(t, 0).admitted
    for _ in range(10):
        assert rl.check(T0 + 119.9, 0).admitted
    assert not rl.check(T0 + 119.9, 0).admitted


@pytest.mark.parametrize(
    ("estimates", "tokens", "admitted"),
    [
        ([600, 400], 0, True),  # exactly at the limit, a 0-token call fits
        ([600, 400], 1, False),
        ([600, 399], 1, True),  # exactly fits
        ([], 1000, True),
        ([], 1001, False),  # never fits
    ],
)
def test_token_edges(estimates: list[int], tokens: int, admitted: bool) -> None:
    rl = limiter(tpm=1000)
    for estimate in estimates:
        assert rl.check(T0, estimate).admitted
    assert rl.check(T0, tokens).admitted is admitted


def test_a_call_over_the_tpm_never_fits() -> None:
    d = limiter(rpm=5, tpm=1000).check(T0, 1001)
    assert (d.admitted, d.refused_by, d.retry_after_s, d.retry_after) == (
        False,
        Limit.TOKENS,
        None,
        None,
    )
    assert ("retry-after", "1") not in d.headers()
    assert limiter(rpm=0).check(T0, 0).retry_after_s is None


def test_time_never_moves_backwards() -> None:
    rl = limiter(rpm=1)
    assert rl.check(T0 + 100, 0).admitted
    assert not rl.check(T0, 0).admitted  # read as T0 + 100
    d = rl.check(T0, 0)
    assert d.reset_requests_s == 60.0
    assert rl.check(T0 + 160, 0).admitted


# -- retry_after and headers -------------------------------------------------------------------


def test_retry_after_waits_for_the_oldest_call_it_needs_gone() -> None:
    rl = limiter(rpm=3, tpm=1000)
    rl.check(T0, 100)
    rl.check(T0 + 10, 700)
    rl.check(T0 + 20, 100)
    by_requests = rl.check(T0 + 30, 1)
    assert (by_requests.refused_by, by_requests.retry_after_s) == (Limit.REQUESTS, 30.0)
    by_tokens = limiter(tpm=1000)
    by_tokens.check(T0, 100)
    by_tokens.check(T0 + 10, 700)
    by_tokens.check(T0 + 20, 100)
    d = by_tokens.check(T0 + 30, 500)  # 900 + 500: the first two must go (T0 + 70)
    assert (d.refused_by, d.retry_after_s, d.retry_after) == (Limit.TOKENS, 40.0, "40")
    assert not by_tokens.check(T0 + 69.999, 500).admitted
    assert by_tokens.check(T0 + 70.0, 500).admitted


def test_headers_on_admission_and_refusal() -> None:
    rl = limiter(rpm=2, tpm=1000)
    first = rl.check(T0, 300)
    assert first.headers() == [
        ("x-ratelimit-limit-requests", "2"),
        ("x-ratelimit-remaining-requests", "1"),
        ("x-ratelimit-reset-requests", "1m0s"),
        ("x-ratelimit-limit-tokens", "1000"),
        ("x-ratelimit-remaining-tokens", "700"),
        ("x-ratelimit-reset-tokens", "1m0s"),
    ]
    assert first.ticket is not None
    rl.check(T0 + 59.5, 300)
    refused = rl.check(T0 + 59.75, 100)
    assert refused.headers() == [
        ("x-ratelimit-limit-requests", "2"),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "250ms"),
        ("x-ratelimit-limit-tokens", "1000"),
        ("x-ratelimit-remaining-tokens", "400"),
        ("x-ratelimit-reset-tokens", "250ms"),
        ("retry-after", "1"),
    ]
    assert refused.ticket is None


def test_no_limits_no_headers_no_memory() -> None:
    rl = limiter()
    for i in range(1000):
        d = rl.check(T0 + i / 100, 10**6)
        assert d.admitted and d.ticket is None
    assert d.headers() == []
    assert rl._expiry == []


def test_an_empty_window_resets_in_0s() -> None:
    d = limiter(rpm=5, tpm=5).check(T0, 0)
    assert (d.reset_tokens_s, d.remaining_tokens) == (0.0, 5)  # a 0-token call counts no tokens
    assert ("x-ratelimit-reset-tokens", "0s") in d.headers()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.0001, "1ms"),  # rounded up: never come back too early
        (0.3, "300ms"),  # not 301 (0.3 * 1000 is 300.00000000000006)
        (0.999, "999ms"),
        (1.0, "1s"),
        (8.5, "8.5s"),
        (59.9991, "1m0s"),
        (59.999, "59.999s"),
        (60.0, "1m0s"),
        (90.25, "1m30.25s"),
        (3600.0, "1h0m0s"),
        (-1.0, "0s"),
    ],
)
def test_format_reset(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


# -- adjust ------------------------------------------------------------------------------------


def test_adjust_replaces_the_estimate_in_place() -> None:
    rl = limiter(tpm=1000)
    d = rl.check(T0, 900)
    assert not rl.check(T0 + 1, 200).admitted
    rl.adjust(d.ticket, 150)  # the call used far fewer tokens than estimated
    assert rl.totals(T0 + 1) == (1, 150)
    assert rl.check(T0 + 1, 850).admitted
    rl.adjust(d.ticket, 400)  # or more: counted at its true size, from its admission
    assert rl.totals(T0 + 1) == (2, 1250)
    late = rl.check(T0 + 2, 0)
    assert (late.admitted, late.remaining_tokens) == (False, 0)
    assert late.retry_after_s == 58.0  # when the adjusted call leaves
    assert rl.totals(T0 + 60) == (1, 850)
    rl.adjust(d.ticket, 10**6)  # it has left the window: nothing to correct
    assert rl.totals(T0 + 60) == (1, 850)
    rl.adjust(None, 5)  # an unlogged call
    with pytest.raises(ValueError, match=">= 0"):
        rl.adjust(d.ticket, -1)
    with pytest.raises(ValueError, match="not issued"):
        rl.adjust(10**9, 1)


def test_tickets_survive_compaction_and_memory_is_bounded() -> None:
    rl = limiter(rpm=96, tpm=10**6)
    tickets = []
    for i in range(10_000):
        d = rl.check(T0 + i * 0.625, 10)  # exactly 96 per minute (0.625 is exact in binary)
        assert d.admitted
        assert d.remaining_requests == 0 if i >= 95 else 95 - i
        tickets.append(d.ticket)
        assert len(rl._expiry) <= 2 * 96 + 64
    assert tickets == list(range(10_000))
    rl.adjust(tickets[-1], 1)
    rl.adjust(tickets[0], 999)  # long gone
    assert rl.totals(T0 + 9999 * 0.625) == (96, 95 * 10 + 1)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        limiter(rpm=1).check(T0, -1)
    for bad in ({"rpm": -1}, {"tpm": -1}, {"window_s": 0}, {"window_s": math.inf}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, RateLimitPolicy)


# -- properties --------------------------------------------------------------------------------

GAPS = st.sampled_from([0.0, 0.0, 0.001, 0.25, 1.0, 7.5, 59.999, 60.0, 60.001]) | st.floats(
    0, 90, allow_nan=False
)


@settings(max_examples=300, deadline=None)
@given(
    rpm=st.none() | st.integers(0, 6),
    tpm=st.none() | st.integers(0, 3000),
    calls=st.lists(st.tuples(GAPS, st.integers(0, 1200)), max_size=60),
)
def test_exact_against_a_naive_log(
    rpm: int | None, tpm: int | None, calls: list[tuple[float, int]]
) -> None:
    rl = RateLimiter(RateLimitPolicy(rpm=rpm, tpm=tpm, window_s=60.0))
    now = T0
    admitted: list[tuple[float, int]] = []
    for gap, tokens in calls:
        now += gap
        live = [(t, n) for t, n in admitted if now < t + 60.0]
        fits = (rpm is None or len(live) < rpm) and (
            tpm is None or sum(n for _, n in live) + tokens <= tpm
        )
        d = rl.check(now, tokens)
        event(f"refused by {d.refused_by}")
        assert d.admitted is fits
        if fits:
            admitted.append((now, tokens))
            live.append((now, tokens))
        if rpm is not None:
            assert d.remaining_requests == max(0, rpm - len(live))
            oldest = live[0][0] + 60.0 - now if live else 0.0
            assert d.reset_requests_s == oldest
        if tpm is not None:
            assert d.remaining_tokens == max(0, tpm - sum(n for _, n in live))
    # The guarantee: in every interval [t, t + 60) at most rpm calls and tpm tokens.
    for t, _ in admitted:
        inside = [n for u, n in admitted if t <= u < t + 60.0]
        assert rpm is None or len(inside) <= rpm
        assert tpm is None or sum(inside) <= tpm


@settings(max_examples=300, deadline=None)
@given(
    rpm=st.integers(1, 8),
    tpm=st.integers(700, 3000),
    calls=st.lists(st.tuples(GAPS, st.integers(0, 1200)), min_size=1, max_size=30),
    probe=st.integers(0, 800),
)
def test_retry_after_is_exact(
    rpm: int, tpm: int, calls: list[tuple[float, int]], probe: int
) -> None:
    rl = RateLimiter(RateLimitPolicy(rpm=rpm, tpm=tpm))
    now = T0
    for gap, tokens in calls:
        now += gap
        rl.check(now, tokens)
    d = rl.check(now, probe)
    event(
        "admitted" if d.admitted else f"refused by {d.refused_by}, never: {d.retry_after_s is None}"
    )
    if d.admitted or d.retry_after_s is None:
        assert d.admitted or probe > tpm
        return
    assert d.retry_after_s > 0
    assert d.retry_after is not None
    assert int(d.retry_after) >= d.retry_after_s - 1e-6  # the header never says come back early
    then = now + d.retry_after_s
    # Just before, it is still refused; at now + retry_after it is admitted.
    assert not _copy_check(rl, math.nextafter(then, -math.inf), probe).admitted
    assert rl.check(then, probe).admitted


def _copy_check(rl: RateLimiter, now: float, tokens: int) -> Decision:
    twin = RateLimiter(rl.policy)
    twin._expiry, twin._tokens = list(rl._expiry), list(rl._tokens)
    twin._head, twin._base, twin._total, twin._now = rl._head, rl._base, rl._total, rl._now
    return twin.check(now, tokens)
