"""What a job looks like from outside: `jobs get`, the SDK, and the `on_job_complete(self, job)` hook."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from shipyard.jobs.queue import Progress
from shipyard.jobs.records import Event, has_live_runner


@dataclass(frozen=True)
class JobInfo:
    """A job's state and progress. `rows_done` counts rows with an output row; `rows_failed` dead letters."""

    id: str
    api: str
    state: str
    reason: str
    output: str
    format: str
    inputs: list[str]
    batches: int
    batches_done: int
    batches_failed: int
    rows_total: int | None
    rows_done: int
    rows_failed: int
    created_at: float
    started_at: float | None
    ended_at: float | None
    error: str | None
    events: list[Event] = field(default_factory=list)
    run_started_at: float | None = None
    """When the current run began: the first start, or the last `jobs retry`."""
    prior_seconds: float = 0.0
    """Seconds the job ran before its current run (runs that ended before a retry)."""
    runner_active: bool = True
    """Whether a live runner holds the job; an unfinished job that no runner holds makes no progress."""
    errors: list[dict[str, Any]] = field(default_factory=list)
    """The most frequent distinct errors: `{"error", "count", "of": "rows dead-lettered" | "batch attempts failed"}`."""
    batches_total: int | None = None
    """How many batches the whole input makes; None until it is all split (`batches` counts those so far)."""

    @property
    def is_finished(self) -> bool:
        from shipyard.jobs.states import TERMINAL

        return self.state in TERMINAL

    @property
    def duration(self) -> float | None:
        """Seconds the job has run, over all its runs (the time between an end and a retry not counted)."""
        return run_seconds(self.started_at, self.run_started_at, self.ended_at, self.prior_seconds, time.time())

    @property
    def rate(self) -> float | None:
        """Rows per second of running time."""
        duration = self.duration
        handled = self.rows_done + self.rows_failed
        return handled / duration if duration and handled else None

    @property
    def eta(self) -> float | None:
        rate = self.rate
        if rate is None or self.rows_total is None or self.is_finished:
            return None
        return max(0.0, (self.rows_total - self.rows_done - self.rows_failed) / rate)

    @property
    def is_stalled(self) -> bool:
        """Unfinished, and no runner holds it: nothing moves until one starts."""
        return not self.is_finished and not self.runner_active

    @property
    def manifest(self) -> str:
        return f"{self.output.rstrip('/')}/_manifest.json"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(duration=self.duration, rate=self.rate, eta=self.eta)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobInfo:
        """The inverse of `to_dict` (its derived fields are recomputed, not read): a job the daemon sent."""
        names = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in names}
        values["events"] = [Event(**event) for event in data.get("events") or []]
        return cls(**values)


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`1 row`, `2 rows`, `1 batch attempt`, `3 batch attempts`."""
    return f"{count:,} {singular if count == 1 else plural or singular + 's'}"


_ERROR_KINDS = {"rows dead-lettered": ("row", "dead-lettered"), "batch attempts failed": ("batch attempt", "failed")}


def error_line(error: dict[str, Any]) -> str:
    """One of `JobInfo.errors` as `jobs get` shows it: `1 row dead-lettered: ValueError: ...`."""
    kind = _ERROR_KINDS.get(error["of"])
    what = f"{error['count']:,} {error['of']}" if kind is None else f"{counted(int(error['count']), kind[0])} {kind[1]}"
    return f"{what}: {error['error']}"


def batches_done_text(done: int, stored: int, is_split: bool) -> str:
    """`7 of 20 batches done`; while the input is still being split, the total is not known yet."""
    if is_split:
        return f"{done} of {stored} batches done"
    return f"{done} of the {stored} batches split so far done (the rest of the input was not split yet)"


def run_seconds(
    started_at: float | None, run_started_at: float | None, ended_at: float | None, prior: float, now: float
) -> float | None:
    start = run_started_at or started_at
    if start is None:
        return prior or None
    return prior + max(0.0, (ended_at or now) - start)


def job_info(
    row: dict[str, Any],
    progress: Progress,
    events: list[Event] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JobInfo:
    return JobInfo(
        id=row["id"],
        api=row["api"],
        state=row["state"],
        reason=row["reason"],
        output=row["output"],
        format=row["format"],
        inputs=[source["url"] for source in row["inputs"]],
        batches=progress.batches,
        batches_done=progress.batches_done,
        batches_failed=progress.batches_failed,
        rows_total=row["total_rows"],
        rows_done=progress.rows_done,
        rows_failed=progress.rows_failed,
        created_at=row["created_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        error=row["error"],
        events=events or [],
        run_started_at=row["run_started_at"],
        prior_seconds=row["prior_seconds"] or 0.0,
        runner_active=has_live_runner(row),
        errors=errors or [],
        batches_total=row["total_batches"],
    )
