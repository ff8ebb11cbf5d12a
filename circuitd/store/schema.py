"""Versioned schema: `MIGRATIONS[i]` takes the database from `user_version` i to i + 1.

Migrations are append-only: never edit a shipped one, add the next. Each runs in one
transaction together with its `PRAGMA user_version` bump, so a crash leaves either the old or
the new version, never half of one.
"""

from __future__ import annotations

from typing import Final

# v1: one row per settled call, per-attempt detail (filled later), and the daily roll-up that
# usage and budget queries read so they never scan raw rows.
_V1: Final = """
CREATE TABLE requests (
    -- an append-only rowid: cheap inserts, and the writer uses it to find a batch's rows
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    client_request_id TEXT,  -- the client's x-request-id (not unique: clients may reuse them)
    timestamp TEXT NOT NULL,
    key_id TEXT,
    model TEXT NOT NULL,
    provider TEXT,
    deployment TEXT,
    upstream_model TEXT,
    stream INTEGER NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('ok', 'error', 'partial', 'disconnected', 'refused')),
    status_code INTEGER NOT NULL,
    error_code TEXT,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    tokens_input INTEGER NOT NULL,
    tokens_output INTEGER NOT NULL,
    tokens_cached INTEGER NOT NULL,
    usage_source TEXT NOT NULL CHECK (usage_source IN ('provider', 'estimated', 'none')),
    cost_micro_usd INTEGER NOT NULL,
    cost_usd REAL NOT NULL,  -- cost_micro_usd / 1e6, for people querying by hand
    attempts INTEGER NOT NULL
);
CREATE INDEX requests_timestamp ON requests (timestamp);
CREATE INDEX requests_key_timestamp ON requests (key_id, timestamp);

CREATE TABLE provider_attempts (
    request_id TEXT NOT NULL
        REFERENCES requests (request_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    attempt INTEGER NOT NULL,
    provider TEXT,
    deployment TEXT,
    status_code INTEGER,
    error TEXT,
    latency_ms REAL,
    started_at TEXT,
    PRIMARY KEY (request_id, attempt)
) WITHOUT ROWID;

-- NULL key/provider are stored as '' so they take part in the primary key.
CREATE TABLE usage_daily (
    day TEXT NOT NULL,  -- 'YYYY-MM-DD', UTC, from requests.timestamp
    key_id TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL,
    provider TEXT NOT NULL DEFAULT '',
    requests INTEGER NOT NULL DEFAULT 0,
    tokens_input INTEGER NOT NULL DEFAULT 0,
    tokens_output INTEGER NOT NULL DEFAULT 0,
    tokens_cached INTEGER NOT NULL DEFAULT 0,
    cost_micro_usd INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key_id, model, provider)
) WITHOUT ROWID;
CREATE INDEX usage_daily_key_day ON usage_daily (key_id, day);
"""

# v2: budgets shared by several worker processes (core.lease, store/leases.py). Per budget slot
# (subject, period, period id) the spend reported by the workers, and each worker's live
# lease, and the workers sharing them. A holder is one worker process for one run: boot_id and
# pid tell, at the next start, whether it is still alive; a lease not renewed is free for
# others `grace_s` after expires_at.
_V2: Final = """
CREATE TABLE budget_slots (
    subject TEXT NOT NULL,  -- a key id
    period TEXT NOT NULL CHECK (period IN ('day', 'month')),
    period_id TEXT NOT NULL,  -- 'YYYY-MM-DD' or 'YYYY-MM', UTC
    spent_micro_usd INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, period, period_id)
) WITHOUT ROWID;

CREATE TABLE budget_leases (
    subject TEXT NOT NULL,
    period TEXT NOT NULL,
    period_id TEXT NOT NULL,
    holder TEXT NOT NULL,  -- unique per worker process and run
    boot_id TEXT NOT NULL,  -- the host's boot id when the holder started ('' if unknown)
    pid INTEGER NOT NULL,
    held_micro_usd INTEGER NOT NULL CHECK (held_micro_usd > 0),
    expires_at REAL NOT NULL,  -- epoch seconds
    PRIMARY KEY (subject, period, period_id, holder)
) WITHOUT ROWID;
CREATE INDEX budget_leases_holder ON budget_leases (holder);

-- the worker processes sharing the budgets now (a clean stop removes its row)
CREATE TABLE budget_holders (
    holder TEXT PRIMARY KEY,
    boot_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL  -- epoch seconds
) WITHOUT ROWID;
"""

MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2)
SCHEMA_VERSION: Final = len(MIGRATIONS)
