"""Config for budgets across workers, alerts and budget metrics."""

from __future__ import annotations

from pathlib import Path

from circuitd.config import load_config
from tests.config.test_load import errors_of


def test_budgets_with_several_workers_are_accepted() -> None:
    env = {"PROVIDER": "MOCK", "CIRCUIT_WORKERS": "4", "CIRCUIT_DAILY_USD_LIMIT": "5"}
    config = load_config(None, env)
    assert (config.server.workers, config.limits.daily_usd) == (4, 5.0)
    assert config.alerts.webhook_url is None and not config.metrics.per_key_labels


def test_alert_settings_are_checked(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        '[alerts]\nwebhook_url = "ftp://x"\nqueue_size = 0\nmax_backoff_s = -1\n',
    )
    assert any("$.alerts.webhook_url" in e for e in errors)
    assert any("queue_size" in e for e in errors)
    assert any("max_backoff_s" in e for e in errors)
    assert errors_of(tmp_path, "[metrics]\nper_key = true\n") != []  # unknown field
