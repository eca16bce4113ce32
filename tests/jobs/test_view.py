"""How a job reads from outside: durations over runs, and progress whose total may not be known yet."""

from __future__ import annotations

from shipyard.jobs.queue import top_errors
from shipyard.jobs.view import batches_done_text, counted, error_line, run_seconds


def test_batches_done_says_when_the_total_is_not_known() -> None:
    assert batches_done_text(75, 3040, is_split=True) == "75 of 3040 batches done"
    assert batches_done_text(75, 3040, is_split=False) == (
        "75 of the 3040 batches split so far done (the rest of the input was not split yet)"
    )


def test_run_seconds_count_running_time_only() -> None:
    assert run_seconds(None, None, None, 0.0, now=50) is None
    assert run_seconds(10, None, None, 0.0, now=50) == 40, "a job from before run_started_at existed"
    assert run_seconds(10, 10, 30, 0.0, now=50) == 20
    assert run_seconds(10, 100, None, 20.0, now=130) == 50, "the first run's 20s, and 30s since the retry"


def test_errors_are_grouped_whichever_worker_had_them_and_counted_in_good_english() -> None:
    batches = [
        ("the lease of worker-1a2b3c expired: the worker hung or died", {}),
        ("the lease of worker-4d5e6f expired: the worker hung or died", {}),
        (None, {"not run again: the worker died on this row (worker-1a2b3c exited with code 3)": 1}),
        ("ValueError: x", {"ValueError: x": 2}),
    ]
    errors = top_errors(batches)
    assert [error_line(error) for error in errors] == [
        "2 rows dead-lettered: ValueError: x",
        "2 batch attempts failed: the lease of a worker expired: the worker hung or died",
        "1 row dead-lettered: not run again: the worker died on this row (a worker exited with code 3)",
        "1 batch attempt failed: ValueError: x",
    ]
    assert errors[1] == {
        "error": "the lease of a worker expired: the worker hung or died",
        "count": 2,
        "of": "batch attempts failed",
    }
    assert counted(1, "new batch", "new batches") == "1 new batch" and counted(1200, "row") == "1,200 rows"
