"""Shadow bookkeeping: agreement, latencies timed alike, skipped copies apart from failed ones."""

from __future__ import annotations

from shipyard.runtime.local.shadow import Answer, ShadowBook, agree
from shipyard.runtime.local.state import ShadowStats

PAIR = ("front", "candidate")
NOW = 1_000.0


def test_answers_agree_on_status_and_json_equal_bodies() -> None:
    assert agree(Answer(200, b'{"a": 1, "b": 2}', 0.1), Answer(200, b'{"b":2,"a":1}', 0.2))
    assert not agree(Answer(200, b'{"a": 1}', 0.1), Answer(500, b'{"a": 1}', 0.1))
    assert agree(Answer(200, b"plain", 0.1), Answer(200, b"plain", 0.1))
    assert not agree(Answer(200, b"plain", 0.1), Answer(200, b"other", 0.1))


def test_comparisons_add_up_and_are_handed_over_once() -> None:
    book = ShadowBook()
    book.compare(PAIR, Answer(200, b"1", 0.010), Answer(200, b"1", 0.030), NOW)
    book.compare(PAIR, Answer(200, b"1", 0.020), Answer(200, b"2", 0.050), NOW)
    book.failed(PAIR)
    book.skipped(PAIR)
    book.skipped(PAIR)
    [delta] = book.take()
    assert (delta.compared, delta.agreed, delta.failed, delta.skipped) == (2, 1, 1, 2)
    assert (round(delta.primary_ms), round(delta.shadow_ms)) == (30, 80)
    assert book.take() == ()  # totals go to the store once
    recent = book.latency(NOW)[PAIR]
    assert recent.primary.requests == recent.shadow.requests == 2
    assert recent.primary.p50_ms is not None and recent.shadow.p50_ms is not None
    assert 9 < recent.primary.p50_ms < 11 and 28 < recent.shadow.p50_ms < 32  # buckets are 5% wide
    assert 47 < (recent.shadow.p99_ms or 0) < 53


def test_skipped_copies_alone_go_to_the_store_so_a_restart_keeps_them() -> None:
    book = ShadowBook()
    book.skipped(PAIR)
    assert book.take() == (ShadowStats(*PAIR, 0, 0, 0, 0.0, 0.0, skipped=1),)
    assert book.take() == ()
    assert PAIR not in book.latency(NOW)  # nothing was answered, so there are no latencies to show
