"""Rows for store tests."""

from __future__ import annotations

from typing import Any

from circuitd.store.rows import RequestRow


def make_row(i: int, **overrides: Any) -> RequestRow:
    fields: dict[str, Any] = {
        "request_id": f"req-{i:06d}",
        "timestamp": "2026-11-23T06:49:52.123Z",
        "key_id": "key-a",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "deployment": "openai-main",
        "upstream_model": "gpt-4o-mini-2024-07-18",
        "stream": i % 2 == 0,
        "status": "ok",
        "status_code": 200,
        "error_code": None,
        "latency_ms": 12.5 + i,
        "ttft_ms": 3.25 if i % 2 == 0 else None,
        "tokens_input": 100 + i,
        "tokens_output": 20 + i,
        "tokens_cached": i % 3,
        "usage_source": "provider",
        "cost_micro_usd": 1_000 + i,
        "attempts": 1,
    }
    fields.update(overrides)
    return RequestRow(**fields)
