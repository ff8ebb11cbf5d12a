"""The half-open verdict on a flaky upstream, through the real `core.breaker.Breaker`.

    .venv/bin/python bench/halfopen_sim.py [--runs 2000]

A breaker that has just tripped (after a storm, say) faces an upstream that now fails a
share `p` of its calls, at one call per millisecond (about the bench's load). Each half-open
period probes one call at a time until the verdict; once closed it stays closed (at p < 0.5
neither the window's rate nor 20 failures in a row trip it again in practice). Printed per
policy and p: how often the first half-open period closes, the time from the trip until the
breaker closes (mean, p90), and the failed probes a still-dead upstream (p = 1) costs in its
first minute. Compares the default policy with `half_open_calls = 2` (at failure_rate 0.5,
the old rule: the first failed probe re-opens, 2 successes close).
"""

from __future__ import annotations

import argparse
import random
import statistics

from circuitd.core.breaker import Breaker, BreakerPolicy, State
from circuitd.core.outcome import Outcome

STEP_S = 0.001  # one call per millisecond


def time_to_close(policy: BreakerPolicy, p: float, rng: random.Random) -> tuple[float, int]:
    """(seconds from the trip until the breaker closes, half-open periods it took)."""
    breaker = Breaker(policy)
    while breaker.state is State.CLOSED:  # trip it: minimum_calls failures
        permit = breaker.acquire(0.0)
        assert permit is not None
        breaker.record(permit, Outcome.FAILURE, 0.0)
    now, periods = 0.0, 0
    while breaker.snapshot(now).state is not State.CLOSED:
        now += breaker.snapshot(now).open_remaining_s  # skip the refusals while open
        periods += 1
        while (permit := breaker.acquire(now)) is not None:
            outcome = Outcome.FAILURE if rng.random() < p else Outcome.SUCCESS
            breaker.record(permit, outcome, now)
            now += STEP_S
            if breaker.state is not State.HALF_OPEN:
                break
    return now, periods


def failed_probes_in(policy: BreakerPolicy, horizon_s: float) -> int:
    """Upstream calls a dead upstream gets from a tripped breaker within `horizon_s`."""
    breaker = Breaker(policy)
    while breaker.state is State.CLOSED:
        permit = breaker.acquire(0.0)
        assert permit is not None
        breaker.record(permit, Outcome.FAILURE, 0.0)
    now, calls = 0.0, 0
    while True:
        now += breaker.snapshot(now).open_remaining_s
        if now >= horizon_s:
            return calls
        while (permit := breaker.acquire(now)) is not None:
            breaker.record(permit, Outcome.FAILURE, now)
            calls += 1
            now += STEP_S


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    policies = {
        "half_open_calls = 10 (default)": BreakerPolicy(),
        "half_open_calls = 2 (old rule)": BreakerPolicy(half_open_calls=2),
    }
    print("| policy | upstream fails | first half-open closes | trip → closed mean / p90 s |")
    print("|---|---|---|---|")
    for name, policy in policies.items():
        for p in (0.1, 0.25, 0.4):
            rng = random.Random(1)
            results = [time_to_close(policy, p, rng) for _ in range(args.runs)]
            times = sorted(t for t, _ in results)
            first = sum(1 for _, periods in results if periods == 1) / len(results)
            p90 = times[int(0.9 * len(times))]
            print(f"| {name} | {p:.0%} | {first:.1%} | {statistics.fmean(times):.1f} / {p90:.1f} |")
    for name, policy in policies.items():
        print(f"dead upstream, {name}: {failed_probes_in(policy, 60.0)} failed probes in 60 s")


if __name__ == "__main__":
    main()
