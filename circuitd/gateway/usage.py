"""`GET /v1/usage` and `circuitd usage`: spend and tokens per key, from the daily roll-ups.

Reads `usage_daily` only (never raw rows). Calls still in the write-behind queue (at most one
flush interval, 50 ms by default) are not in it yet.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal
from urllib.parse import parse_qs

import msgspec

from circuitd.core.budget import Period, SlotUsage
from circuitd.core.pricing import micro_to_usd
from circuitd.errors import InvalidRequest
from circuitd.store.sqlite import Database, GroupBy, UsageTotal

GROUPS: tuple[GroupBy, ...] = ("model", "provider", "day")
MAX_DAYS = 366


class UsageQuery(msgspec.Struct, frozen=True):
    start: dt.date
    end: dt.date
    group_by: GroupBy | None = None


class UsageGroup(msgspec.Struct, frozen=True):
    group: str | None
    request_count: int
    tokens_input: int
    tokens_output: int
    tokens_cached: int
    total_cost_usd: float


class BudgetStatus(msgspec.Struct, frozen=True):
    """One budget period of the key, live from the worker's ledger (reservations included)."""

    period: str  # "day" or "month"
    period_id: str  # "2026-11-23" or "2026-11"
    limit_usd: float | None
    spent_usd: float
    reserved_usd: float  # worst cases of the calls in flight
    remaining_usd: float | None
    resets_at: str  # ISO-8601 UTC


class UsageReport(msgspec.Struct, frozen=True):
    key_id: str | None  # None: every key (operator's view)
    period_start: str
    period_end: str
    request_count: int
    tokens_input: int
    tokens_output: int
    tokens_cached: int
    total_cost_usd: float
    budget_usd: float | None  # the key's daily limit
    budget_spent_usd: float  # today's spend, against that limit
    budget_used_pct: float | None
    group_by: str | None
    data: list[UsageGroup]
    budgets: list[BudgetStatus] | None = None  # the caller's view only (not the CLI's)
    object: Literal["usage"] = "usage"


def parse_usage_query(query_string: bytes, today: dt.date) -> UsageQuery:
    """`?start=YYYY-MM-DD&end=YYYY-MM-DD&group_by=model|provider|day`; the period defaults to
    this month (UTC) up to today, both ends inclusive."""
    try:
        params = parse_qs(query_string.decode("ascii"), strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidRequest("The query string must be ASCII.") from None
    unknown = set(params) - {"start", "end", "group_by"}
    if unknown:
        raise InvalidRequest(f"Unknown query parameter `{sorted(unknown)[0]}`.")

    def day(name: str, default: dt.date) -> dt.date:
        values = params.get(name)
        if not values:
            return default
        try:
            return dt.date.fromisoformat(values[-1])
        except ValueError:
            raise InvalidRequest(f"`{name}` must be a date, YYYY-MM-DD.", param=name) from None

    start = day("start", today.replace(day=1))
    end = day("end", today)
    if end < start:
        raise InvalidRequest("`end` is before `start`.", param="end")
    if (end - start).days >= MAX_DAYS:
        raise InvalidRequest(f"The period may span at most {MAX_DAYS} days.", param="start")
    group_by = params.get("group_by", [None])[-1]
    if group_by is not None and group_by not in GROUPS:
        raise InvalidRequest("`group_by` must be model, provider or day.", param="group_by")
    return UsageQuery(start, end, group_by)


def _group(total: UsageTotal) -> UsageGroup:
    return UsageGroup(
        group=total.group,
        request_count=total.requests,
        tokens_input=total.tokens_input,
        tokens_output=total.tokens_output,
        tokens_cached=total.tokens_cached,
        total_cost_usd=micro_to_usd(total.cost_micro_usd),
    )


def usage_report(
    db: Database,
    key_id: str | None,
    query: UsageQuery,
    *,
    today: dt.date,
    daily_limit_usd: float | None,
) -> UsageReport:
    """Blocking (SQLite): run it in a worker thread from the event loop."""
    start, end = query.start.isoformat(), query.end.isoformat()
    [total] = db.usage_summary(key_id, start, end)
    groups = db.usage_summary(key_id, start, end, query.group_by) if query.group_by else []
    spent_today = micro_to_usd(db.spend_micro_usd(key_id, today.isoformat(), today.isoformat()))
    used_pct = (
        round(100 * spent_today / daily_limit_usd, 6)
        if daily_limit_usd  # a 0 limit has no percentage
        else None
    )
    whole = _group(total)
    return UsageReport(
        key_id=key_id,
        period_start=start,
        period_end=end,
        request_count=whole.request_count,
        tokens_input=whole.tokens_input,
        tokens_output=whole.tokens_output,
        tokens_cached=whole.tokens_cached,
        total_cost_usd=whole.total_cost_usd,
        budget_usd=daily_limit_usd,
        budget_spent_usd=spent_today,
        budget_used_pct=used_pct,
        group_by=query.group_by,
        data=[_group(g) for g in groups],
    )


def read_report(
    db_path: str,
    key_id: str | None,
    query: UsageQuery,
    *,
    today: dt.date,
    daily_limit_usd: float | None,
) -> UsageReport:
    with Database.open(db_path) as db:
        return usage_report(db, key_id, query, today=today, daily_limit_usd=daily_limit_usd)


def budget_status(usage: SlotUsage) -> BudgetStatus:
    slot = usage.slot
    return BudgetStatus(
        period="day" if slot.period is Period.DAY else "month",
        period_id=slot.period_id,
        limit_usd=None if usage.limit is None else micro_to_usd(usage.limit),
        spent_usd=micro_to_usd(usage.spent),
        reserved_usd=micro_to_usd(usage.reserved),
        remaining_usd=None if usage.remaining is None else micro_to_usd(usage.remaining),
        resets_at=dt.datetime.fromtimestamp(usage.resets_at, dt.UTC)
        .isoformat()
        .replace("+00:00", "Z"),
    )


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()
