"""The runner's results as one PNG: throughput and latency percentiles per system.

    .venv/bin/python bench/chart.py bench/out/run-*/results.json [chart.png]

Panels: locust req/s per scenario; locust p50/p99 per scenario; wrk req/s and p50/p99
(when wrk ran); the fixed-rate p50/p99 and time to first token. Bars are grouped by
scenario, one colour per system; latency axes are logarithmic.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

Rows = Sequence[dict[str, Any]]


def _grouped(ax: Axes, rows: Rows, value: str, title: str, *, log: bool = False) -> None:
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    width = 0.8 / max(len(systems), 1)
    for i, system in enumerate(systems):
        by_scenario = {r["scenario"]: r[value] for r in rows if r["system"] == system}
        xs = [k + i * width for k in range(len(scenarios))]
        ax.bar(xs, [by_scenario.get(s, 0) or 0 for s in scenarios], width, label=system)
    ax.set_xticks([k + width * (len(systems) - 1) / 2 for k in range(len(scenarios))])
    ax.set_xticklabels(scenarios, rotation=20, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)


def _percentiles(ax: Axes, rows: Rows, title: str, extra: Sequence[str] = ()) -> None:
    """p50 as a solid bar, p99 as a light bar behind it, per (scenario, system)."""
    labels = [f"{r['scenario']}\n{r['system']}" for r in rows]
    xs = range(len(rows))
    ax.bar(xs, [r["p99_ms"] for r in rows], 0.7, color="#f4a582", label="p99")
    ax.bar(xs, [r["p50_ms"] for r in rows], 0.7, color="#2166ac", label="p50")
    for name in extra:
        ax.plot(xs, [r.get(name, float("nan")) for r in rows], "k^", label=name)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=6)
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)


def draw(rows: Rows, path: Path) -> None:
    locust = [r for r in rows if r["tool"] == "locust"]
    wrk = [r for r in rows if r["tool"] == "wrk"]
    fixed = [r for r in rows if r["tool"] == "fixed"]
    panels = 2 + (2 if wrk else 0) + (1 if fixed else 0)
    fig, axes = plt.subplots(panels, 1, figsize=(11, 4.2 * panels))
    it = iter(axes)
    _grouped(next(it), locust, "rps", "locust: requests/s (closed loop)", log=True)
    _percentiles(next(it), locust, "locust: latency p50 / p99 (ms)")
    if wrk:
        _grouped(next(it), wrk, "rps", "wrk: requests/s (ceiling)", log=True)
        _percentiles(next(it), wrk, "wrk: latency p50 / p99 (ms)")
    if fixed:
        title = "fixed rate, open loop: latency p50 / p99, time to first token p99 (ms)"
        _percentiles(next(it), fixed, title, extra=("ttft_p99_ms",))
    handles, labels = axes[0].get_legend_handles_labels()
    # Above the panels, in a strip of its own: inside the figure it covered the first one.
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (4.2 * panels)))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    results = Path(sys.argv[1])
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else results.with_name("chart.png")
    draw(json.loads(results.read_text())["rows"], target)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
