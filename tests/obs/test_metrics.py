"""`circuitd.obs.metrics` without a server: label children and the label cap."""

from __future__ import annotations

from circuitd.obs.metrics import LabelCap, Metrics


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
