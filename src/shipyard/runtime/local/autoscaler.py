"""Request-based autoscaling, with Cortex's semantics; a pure policy where time is data.

Each decision takes the API's in-flight requests over the last `window`, divides their average by
`target_in_flight`, ignores changes within the tolerances, limits the step by the scale factors and
the replica bounds, and records that recommendation. Stabilization then holds the answer: it never
goes below the highest recommendation of the last `downscale_stabilization`, nor above the lowest of
the last `upscale_stabilization`. Until the history covers a stabilization period (a fresh autoscaler
knows nothing of the past) it does not move in that direction at all, except from zero replicas. Nor
does it scale down on a window only partly observed (a daemon that just started has seconds of samples,
not the window's worth): the reason says what span the average covers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from shipyard.spec.models import Autoscaling, RealtimeAPI


@dataclass(frozen=True)
class Sample:
    """Requests in flight for one API (in its replicas and waiting in the gateway) from `at` on.

    A series of samples is a step function: each value holds until the next sample, so a source
    may record only changes.
    """

    at: float
    in_flight: float


@dataclass(frozen=True)
class Recommendation:
    at: float
    replicas: int


@dataclass(frozen=True)
class History:
    """What the autoscaler remembers between decisions: when it started and its recent recommendations."""

    started_at: float
    recommendations: tuple[Recommendation, ...] = ()


@dataclass(frozen=True)
class Policy:
    autoscaling: Autoscaling
    target_in_flight: float

    @classmethod
    def of(cls, api: RealtimeAPI) -> Policy:
        """The API's policy; `target_in_flight` defaults to the API's `max_concurrency`."""
        target = api.autoscaling.target_in_flight or float(api.concurrency.max_concurrency)
        return cls(autoscaling=api.autoscaling, target_in_flight=target)


@dataclass(frozen=True)
class Decision:
    replicas: int
    """The desired replica count from now on."""
    reason: str
    """Why, in a sentence fit for the API's events."""
    history: History
    """The history to pass to the next decision."""
    average_in_flight: float | None
    """In-flight requests averaged over the window; None when there were no samples."""


def average_in_flight(samples: Sequence[Sample], start: float, end: float) -> float | None:
    """Time-weighted mean of the step function over [start, end]; None when no sample covers it."""
    ordered = sorted(samples, key=lambda sample: sample.at)
    total = covered = 0.0
    for index, sample in enumerate(ordered):
        following = ordered[index + 1].at if index + 1 < len(ordered) else end
        span = min(following, end) - max(sample.at, start)
        if span > 0:
            total += sample.in_flight * span
            covered += span
    if covered > 0:
        return total / covered
    inside = [sample.in_flight for sample in ordered if start <= sample.at <= end]
    return sum(inside) / len(inside) if inside else None


def observed_span(samples: Sequence[Sample], now: float, window: float) -> float:
    """Seconds of the window that the samples cover (they hold from the first one on)."""
    if not samples:
        return 0.0
    first = min(sample.at for sample in samples)
    return max(0.0, now - max(first, now - window))


def decide(policy: Policy, current: int, samples: Sequence[Sample], history: History, now: float) -> Decision:
    """The replica count for an API that runs `current` replicas, given its in-flight samples."""
    spec = policy.autoscaling
    average = average_in_flight(samples, now - spec.window, now)
    if average is None:
        reason = f"stay at {current}: no in-flight samples in the last {spec.window:g}s"
        return Decision(current, reason, history, None)
    covered = observed_span(samples, now, spec.window)
    span = f"{spec.window:g}s" if covered >= spec.window else f"{covered:.1f}s of the {spec.window:g}s window"
    notes = [f"average in-flight {average:.2f} over {span} / target {policy.target_in_flight:g}"]
    recommended = _recommend(spec, current, average / policy.target_in_flight, notes)
    history = _remember(history, Recommendation(now, recommended), spec, now)
    replicas = _stabilize(spec, current, recommended, history, now, notes)
    if replicas < current and covered < spec.window:
        notes.append(f"held at {current}: only {covered:.1f}s of the {spec.window:g}s window observed")
        replicas = current
    verb = f"scale {current} → {replicas}" if replicas != current else f"stay at {current}"
    return Decision(replicas, f"{verb}: {'; '.join(notes)}", history, average)


def _recommend(spec: Autoscaling, current: int, ratio: float, notes: list[str]) -> int:
    """Cortex's recommendation: the ratio rounded up, within tolerances, step limits and bounds."""
    recommended = math.ceil(ratio)
    notes.append(f"= {ratio:.2f} → {recommended}")
    if current * (1 - spec.downscale_tolerance) < ratio < current:
        recommended = current
        notes.append(f"within downscale_tolerance {spec.downscale_tolerance:g} → {current}")
    elif current < ratio < current * (1 + spec.upscale_tolerance):
        recommended = current
        notes.append(f"within upscale_tolerance {spec.upscale_tolerance:g} → {current}")
    # the factors always allow one replica more or less, or small APIs could never move
    floor = min(current - 1, math.ceil(current * spec.max_downscale_factor))
    ceiling = max(current + 1, math.ceil(current * spec.max_upscale_factor))
    if recommended < floor:
        recommended = floor
        notes.append(f"max_downscale_factor {spec.max_downscale_factor:g} → {floor}")
    elif recommended > ceiling:
        recommended = ceiling
        notes.append(f"max_upscale_factor {spec.max_upscale_factor:g} → {ceiling}")
    return _bounded(spec, recommended, notes)


def _bounded(spec: Autoscaling, replicas: int, notes: list[str]) -> int:
    if replicas < spec.min_replicas:
        notes.append(f"min_replicas → {spec.min_replicas}")
        return spec.min_replicas
    if replicas > spec.max_replicas:
        notes.append(f"max_replicas → {spec.max_replicas}")
        return spec.max_replicas
    return replicas


def _remember(history: History, recommendation: Recommendation, spec: Autoscaling, now: float) -> History:
    horizon = now - max(spec.downscale_stabilization, spec.upscale_stabilization)
    kept = tuple(past for past in history.recommendations if past.at >= horizon)
    return History(history.started_at, (*kept, recommendation))


def _stabilize(
    spec: Autoscaling, current: int, recommended: int, history: History, now: float, notes: list[str]
) -> int:
    if current == 0 and recommended > 0:
        return recommended  # requests are waiting for a first replica: never hold them
    replicas = recommended
    if recommended < current:
        replicas = _hold(current, recommended, history, now, spec.downscale_stabilization, "downscale", notes)
    elif recommended > current:
        replicas = _hold(current, recommended, history, now, spec.upscale_stabilization, "upscale", notes)
    # a later change of min/max must win over a history recorded under the old bounds
    return _bounded(spec, replicas, notes)


def _hold(
    current: int,
    recommended: int,
    history: History,
    now: float,
    period: float,
    direction: str,
    notes: list[str],
) -> int:
    """Slow a move from `current` towards `recommended`; stabilization never reverses its direction."""
    if now - history.started_at < period:
        notes.append(f"held at {current}: watched for less than {direction}_stabilization {period:g}s")
        return current
    recent = [past.replicas for past in history.recommendations if past.at >= now - period]
    if direction == "downscale":
        held, extreme = max(recommended, min(max(recent), current)), "highest"
    else:
        held, extreme = min(recommended, max(min(recent), current)), "lowest"
    if held != recommended:
        notes.append(f"held at {held} by {direction}_stabilization ({extreme} recommendation of the last {period:g}s)")
    return held
