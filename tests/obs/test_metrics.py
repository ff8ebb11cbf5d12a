"""`circuitd.obs.metrics` without a server: label children, the label cap, and a worker's
metrics in multiprocess mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess, values

from circuitd.obs.metrics import LabelCap, Metrics, read_pid_once


def test_a_child_is_looked_up_once_per_label_values_and_counts_as_labels_would() -> None:
    metrics = Metrics()
    first = metrics.child(metrics.calls, "openai", "gpt-4o", "ok")
    assert metrics.child(metrics.calls, "openai", "gpt-4o", "ok") is first
    assert first is metrics.calls.labels("openai", "gpt-4o", "ok")  # prometheus's own child
    other = metrics.child(metrics.calls, "openai", "gpt-4o", "error")
    assert other is not first
    # The same values on another metric are another child.
    assert metrics.child(metrics.cost, "openai", "gpt-4o") is not first
    first.inc()
    first.inc()
    other.inc()
    samples = {
        (s.name, s.labels["status"]): s.value
        for family in metrics.calls.collect()
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert samples == {("circuitd_calls_total", "ok"): 2, ("circuitd_calls_total", "error"): 1}


def test_the_label_cap_passes_the_first_values_then_other() -> None:
    cap = LabelCap(limit=2)
    assert [cap(v) for v in ("a", "b", "c", "a", "d", "b")] == [
        "a",
        "b",
        "other",
        "a",
        "other",
        "b",
    ]


def test_a_worker_reads_its_pid_once_and_its_samples_reach_the_shared_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # put back after the test
    calls: list[int] = []

    def getpid() -> int:
        calls.append(1)
        return 4242

    monkeypatch.setattr(os, "getpid", getpid)
    read_pid_once()
    metrics = Metrics()
    counter = metrics.child(metrics.calls, "openai", "gpt-4o", "ok")
    for _ in range(3):
        counter.inc()
    metrics.child(metrics.request_duration, "/v1/chat/completions").observe(0.002)
    assert len(calls) == 1  # read once, not on each inc and observe
    assert (tmp_path / "counter_4242.db").exists()  # the files are named by that pid
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    text = generate_latest(registry).decode()
    assert 'circuitd_calls_total{model="gpt-4o",provider="openai",status="ok"} 3.0' in text
    assert 'circuitd_request_duration_seconds_count{route="/v1/chat/completions"} 1.0' in text
