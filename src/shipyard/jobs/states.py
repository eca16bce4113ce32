"""Job and batch states, and the pure rules that move a job between them."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    pending = "pending"  #: submitted; no runner has picked it up yet
    enqueuing = "enqueuing"  #: a runner is splitting the inputs into batches (workers already score them)
    running = "running"  #: every batch is in the queue; workers are scoring the rest
    succeeded = "succeeded"  #: every row has an output row
    completed_with_failures = "completed_with_failures"  #: every row is in an output part or a dead letter
    failed = "failed"  #: the job could not run (bad input, a handler that does not load, crashing workers)
    stopped = "stopped"  #: `jobs stop`: workers drained, finished parts kept
    timed_out = "timed_out"  #: ran longer than its timeout: workers drained, finished parts kept

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {JobState.succeeded, JobState.completed_with_failures, JobState.failed, JobState.stopped, JobState.timed_out}
)
ACTIVE = (JobState.pending, JobState.enqueuing, JobState.running)


class BatchState(StrEnum):
    pending = "pending"  #: waiting for a worker (after `not_before`)
    leased = "leased"  #: a worker holds it until `lease_expires_at`, unless it renews
    done = "done"  #: its rows are in its output part or its dead-letter part


class Mode(StrEnum):
    """How a worker runs the batch it leased."""

    batch = "batch"  #: all rows in one predict_batch call (or predict per row, any exception fails all)
    rows = "rows"  #: retries are used up: each row on its own, so only the bad rows are dead-lettered
    dead = "dead"  #: row by row, the worker kept dying outside any one row: dead-letter every row unrun


ROWS_MODE_FAILURES = 2
"""Row by row, a worker that dies while it runs a row puts the death down to that row (the store names the
row it was on); these many deaths outside any row (decoding, writing the part) end the batch as dead letters."""

ROW_DEATHS = 2
"""Row by row, a row that workers died on this many times is dead-lettered without running again. One death
is not enough: the OOM killer or a machine restart may hit any row. A row that runs longer than
`batch_timeout` counts this many at once: the runner measured that row."""


def mode_for(failures: int, max_retries: int) -> Mode:
    """A batch fails as a whole up to `max_retries` times; then its rows run one by one until it is done."""
    if failures <= max_retries:
        return Mode.batch
    if failures <= max_retries + 1 + ROWS_MODE_FAILURES:
        return Mode.rows
    return Mode.dead


def backoff(failures: int) -> float:
    """Seconds before a failed batch may be leased again: 0.5s, 1s, 2s, ... capped at 30s."""
    return float(min(30.0, 0.5 * 2 ** max(0, failures - 1)))


def final_state(failed_rows: int) -> JobState:
    """The state of a job whose every batch is done."""
    return JobState.completed_with_failures if failed_rows else JobState.succeeded


def stop_state(request: str) -> JobState:
    """The terminal state a drained job reaches for a stop request (`stopped` or `timed_out`)."""
    return JobState.timed_out if request == JobState.timed_out else JobState.stopped


EXIT_LOAD_FAILED = 2
"""A worker's exit code when the handler or model does not load: the job fails at once, no restarts."""
