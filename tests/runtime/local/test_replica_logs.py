"""Reading replicas' logs: current replicas only, whole lines when following, and rotation."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.errors import BadRequest
from shipyard.runtime.local.replica_logs import check_replica, read_logs, rotate_log


def test_only_the_replicas_asked_for(tmp_path: Path) -> None:
    (tmp_path / "api-old.log").write_text("gone\n")
    (tmp_path / "api-new.log").write_text("here\n")
    current = read_logs(tmp_path, ["api-new"], {})
    assert current["chunks"] == [{"replica": "api-new", "text": "here\n"}]
    everything = read_logs(tmp_path, None, {})
    assert {chunk["replica"] for chunk in everything["chunks"]} == {"api-old", "api-new"}


def test_following_gives_whole_lines_and_the_rest_of_a_line_later(tmp_path: Path) -> None:
    log = tmp_path / "api-1.log"
    log.write_text("first line\nsecond ha")
    found = read_logs(tmp_path, None, {}, whole_lines=True)
    assert found["chunks"] == [{"replica": "api-1", "text": "first line\n"}]
    with open(log, "a") as file:
        file.write("lf\n")
    later = read_logs(tmp_path, None, found["cursors"], whole_lines=True)
    assert later["chunks"] == [{"replica": "api-1", "text": "second half\n"}]
    assert read_logs(tmp_path, None, later["cursors"], whole_lines=True)["chunks"] == []


def test_a_rotated_log_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "api-1.log"
    log.write_text("x" * 100 + "\n")
    cursors = read_logs(tmp_path, None, {})["cursors"]
    log.write_text("after rotation\n")  # truncated in place, then written again
    assert read_logs(tmp_path, None, cursors)["chunks"] == [{"replica": "api-1", "text": "after rotation\n"}]


def test_an_unknown_replica_lists_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "api-1.log").write_text("")
    with pytest.raises(BadRequest, match=r"'api-9' has no log here \(replicas with logs: api-1\)"):
        check_replica(tmp_path, "api-9")


def test_a_log_past_its_limit_is_rotated_and_only_a_few_are_kept(tmp_path: Path) -> None:
    log = tmp_path / "echo-1.log"
    for round_ in range(5):
        log.write_text(f"round {round_}\n" * 10)
        assert rotate_log(log, limit=50, keep=3)
    assert not rotate_log(log, limit=1000)
    rotated = sorted(p.name for p in tmp_path.iterdir())
    assert rotated == ["echo-1.log", "echo-1.log.1", "echo-1.log.2", "echo-1.log.3"]
    assert log.read_text() == ""
    assert (tmp_path / "echo-1.log.1").read_text().startswith("round 4")
    assert (tmp_path / "echo-1.log.3").read_text().startswith("round 2")
