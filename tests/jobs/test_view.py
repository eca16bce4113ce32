"""How a job reads from outside: durations over runs, and progress whose total may not be known yet."""

from __future__ import annotations

from shipyard.jobs.view import batches_done_text, run_seconds


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
