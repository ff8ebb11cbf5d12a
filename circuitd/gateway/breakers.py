"""The breakers of all deployments: one `core.breaker.Breaker` each, created on first use.

Owns the I/O around the sans-I/O breakers: the clock (trio's), and logging every transition
exactly once as it is popped.
"""

from __future__ import annotations

import logging

import trio

from circuitd.core.breaker import Breaker, BreakerPolicy, BreakerSnapshot, State
from circuitd.obs.metrics import Metrics

log = logging.getLogger("circuitd.breaker")

_MAX_BREAKERS = 4096  # env-only mode makes a deployment per model name a client asks for


class Breakers:
    def __init__(self, policy: BreakerPolicy, metrics: Metrics) -> None:
        self.policy = policy
        self._metrics = metrics
        self._by_deployment: dict[str, Breaker] = {}

    def get(self, deployment: str) -> Breaker:
        breaker = self._by_deployment.get(deployment)
        if breaker is None:
            if len(self._by_deployment) >= _MAX_BREAKERS:
                self._forget_closed()
            breaker = self._by_deployment[deployment] = Breaker(self.policy)
            self._metrics.breaker(deployment, breaker.state)
        return breaker

    def log_transitions(self, deployment: str, breaker: Breaker) -> None:
        for transition in breaker.pop_transitions():
            self._metrics.breaker(deployment, transition.to_state)
            log.warning(
                "breaker %s → %s",
                transition.from_state,
                transition.to_state,
                extra={
                    "deployment": deployment,
                    "reason": transition.reason,
                    "open_for_s": transition.open_for_s,
                    "trips": transition.trips,
                },
            )

    def snapshots(self) -> dict[str, BreakerSnapshot]:
        now = trio.current_time()
        return {name: b.snapshot(now) for name, b in sorted(self._by_deployment.items())}

    def _forget_closed(self) -> None:
        """Bounds memory: closed breakers carry no state worth keeping across the cap."""
        for name in [n for n, b in self._by_deployment.items() if b.state is State.CLOSED]:
            del self._by_deployment[name]
