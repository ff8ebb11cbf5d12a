from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from circuitd.mockupstream.testing import running_mock_upstream


@pytest.fixture
def upstream() -> Iterator[str]:
    """Base URL (with /v1) of a fresh `circuitd mock-upstream` on a real socket."""
    with running_mock_upstream() as base_url:
        yield base_url.rstrip("/") + "/v1"


def upstream_requests(upstream: str) -> list[dict[str, object]]:
    """The chat requests the mock upstream received, oldest first."""
    root = upstream.removesuffix("/v1")
    return httpx.get(f"{root}/_mock/requests").json()  # type: ignore[no-any-return]


def upstream_stats(upstream: str) -> dict[str, int]:
    """The mock upstream's counters (connections accepted, requests, ...)."""
    root = upstream.removesuffix("/v1")
    return httpx.get(f"{root}/_mock/stats").json()  # type: ignore[no-any-return]
