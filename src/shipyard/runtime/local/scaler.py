"""The autoscaler's memory per API: in-flight samples from the gateway and the policy's history.

The policy itself is `autoscaler.decide`, pure; this keeps its inputs between ticks and drops what
fell out of the window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from shipyard.runtime.local.autoscaler import Decision, History, Policy, Recommendation, Sample, decide
from shipyard.spec.models import RealtimeAPI


@dataclass
class Scaler:
    started_at: float
    samples: deque[Sample] = field(default_factory=deque)
    history: History | None = None
    decided_at: float = 0.0

    @classmethod
    def resume(cls, now: float, past: Iterable[tuple[float, int]]) -> Scaler:
        """A scaler that remembers the recommendations an earlier daemon stored."""
        recommendations = tuple(Recommendation(at, count) for at, count in past)
        started = recommendations[0].at if recommendations else now
        return cls(started, history=History(started, recommendations))

    def sample(self, at: float, in_flight: float, window: float) -> None:
        self.samples.append(Sample(at, in_flight))
        while len(self.samples) > 1 and self.samples[1].at <= at - window:
            self.samples.popleft()  # the first one kept still covers the window's start

    def woken(self, now: float) -> Recommendation:
        """A request woke the API from zero: remember one replica as recommended now, so that downscale
        stabilization keeps it for its whole period."""
        recommendation = Recommendation(now, 1)
        history = self.history or History(self.started_at)
        self.history = History(history.started_at, (*history.recommendations, recommendation))
        return recommendation

    def decide(self, api: RealtimeAPI, current: int, now: float) -> Decision:
        history = self.history or History(self.started_at)
        decision = decide(Policy.of(api), current, tuple(self.samples), history, now)
        self.history = decision.history
        self.decided_at = now
        return decision
