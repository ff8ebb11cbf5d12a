from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuitd.core.backoff import (
    RetryPolicy,
    backoff_delay,
    next_attempt_at,
    parse_retry_after,
    parse_retry_after_ms,
    should_retry,
)

POLICY = RetryPolicy()


@pytest.mark.parametrize(
    ("attempt", "status", "timeout", "connect_error", "retry"),
    [
        (1, 429, False, False, True),
        (1, 500, False, False, True),
        (1, 502, False, False, True),
        (1, 503, False, False, True),
        (1, 504, False, False, True),
        (1, None, True, False, True),
        (1, None, False, True, True),
        (1, 400, False, False, False),  # the request's fault: it would fail again
        (1, 401, False, False, False),
        (1, 404, False, False, False),
        (1, 408, False, False, False),
        (1, 413, False, False, False),
        (1, 422, False, False, False),
        (1, 501, False, False, False),  # not implemented: retrying will not implement it
        (1, 200, False, False, False),
        (1, None, False, False, False),
        (2, 503, False, False, True),
        (3, 503, False, False, False),  # max_attempts=3 includes the first
        (3, None, True, False, False),
    ],
)
def test_should_retry(
    attempt: int, status: int | None, timeout: bool, connect_error: bool, retry: bool
) -> None:
    got = should_retry(POLICY, attempt, status=status, timeout=timeout, connect_error=connect_error)
    assert got is retry


def test_one_attempt_never_retries() -> None:
    policy = RetryPolicy(max_attempts=1)
    assert not should_retry(policy, 1, status=None, timeout=True, connect_error=False)


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 0.2), (2, 0.4), (3, 0.8), (5, 3.2), (6, 5.0), (7, 5.0), (10_000, 5.0)],
)
def test_full_jitter_bounds(attempt: int, ceiling: float) -> None:
    assert backoff_delay(POLICY, attempt, 0.0) == 0.0
    assert backoff_delay(POLICY, attempt, 0.5) == pytest.approx(ceiling / 2)
    top = backoff_delay(POLICY, attempt, math.nextafter(1.0, 0.0))
    assert top < ceiling
    assert top == pytest.approx(ceiling)


@given(st.integers(1, 200), st.floats(0.0, 1.0, exclude_max=True))
def test_jitter_always_within_bounds(attempt: int, rand: float) -> None:
    delay = backoff_delay(POLICY, attempt, rand)
    assert 0.0 <= delay <= min(POLICY.max_backoff_s, POLICY.base_s * 2 ** (attempt - 1))


@pytest.mark.parametrize(
    ("rand", "retry_after", "delay"),
    [
        (0.0, 2.0, 2.0),  # the floor wins over a short jitter
        (0.999, 0.1, 0.999 * 0.2),  # the jitter wins over a shorter Retry-After
        (0.5, 0.0, 0.1),  # Retry-After: 0 is no floor
        (0.5, None, 0.1),
        (0.0, 10.0, 10.0),  # above max_backoff_s: still honoured...
        (0.0, 3600.0, 30.0),  # ...up to max_retry_after_s
        (0.0, float("inf"), 30.0),
        (0.5, float("nan"), 0.1),
    ],
)
def test_retry_after_is_a_capped_floor(
    rand: float, retry_after: float | None, delay: float
) -> None:
    assert backoff_delay(POLICY, 1, rand, retry_after) == pytest.approx(delay)


@pytest.mark.parametrize(("attempt", "rand"), [(0, 0.5), (1, 1.0), (1, -0.1), (1, math.nan)])
def test_backoff_rejects_bad_input(attempt: int, rand: float) -> None:
    with pytest.raises(ValueError):
        backoff_delay(POLICY, attempt, rand)


@pytest.mark.parametrize(
    ("now", "delay", "deadline", "at"),
    [
        (100.0, 1.5, 110.0, 101.5),
        (100.0, 1.5, 101.501, 101.5),
        (100.0, 1.5, 101.5, None),  # would start with no time left
        (100.0, 1.5, 101.0, None),
        (100.0, 0.0, 100.0, None),  # the deadline has already come
        (100.0, 1.5, None, 101.5),
    ],
)
def test_next_attempt_at(
    now: float, delay: float, deadline: float | None, at: float | None
) -> None:
    assert next_attempt_at(now, delay, deadline) == at


NOW = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (b"120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),  # fractions are not RFC 9110 but are sent
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 09:28:30 +0200", 30.0),
        ("Wed, 21 Oct 2015 07:28:30 -0000", 30.0),  # naive datetime: UTC, not local time
        (b"Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
        (None, None),
        ("", None),
        ("  ", None),
        ("soon", None),
        ("1e3", None),
        ("inf", None),
        ("nan", None),
        ("0x10", None),
        ("Wed, 21 Oct 2015", None),
        ("Wed, 21 Oct 2015 07:28:00 +9999", None),
        ("1" * 40, None),
        (b"\xff\xfe", None),
    ],
)
def test_parse_retry_after(value: str | bytes | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1500", 1.5), (b"20", 0.02), ("0.5", 0.0005), ("-1", 0.0), ("x", None), (None, None)],
)
def test_parse_retry_after_ms(value: str | bytes | None, seconds: float | None) -> None:
    assert parse_retry_after_ms(value) == seconds


@given(st.one_of(st.text(max_size=60), st.binary(max_size=60)))
def test_parse_retry_after_never_raises(value: str | bytes) -> None:
    got = parse_retry_after(value, NOW)
    assert got is None or (math.isfinite(got) and got >= 0)


@pytest.mark.parametrize(
    "fields",
    [
        {"max_attempts": 0},
        {"base_s": -1.0},
        {"max_backoff_s": float("inf")},
        {"max_retry_after_s": float("nan")},
        {"retry_statuses": [429, 42]},
    ],
)
def test_policy_validation(fields: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(fields, RetryPolicy)


def test_policy_defaults() -> None:
    assert msgspec.convert({}, RetryPolicy) == RetryPolicy(
        max_attempts=3,
        base_s=0.2,
        max_backoff_s=5.0,
        max_retry_after_s=30.0,
        retry_statuses=(429, 500, 502, 503, 504, 529),
    )
