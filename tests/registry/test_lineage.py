"""Lineage capture: data digests, code revision (git or source digest), Python and packages."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from pathlib import Path

import pytest

from shipyard.registry.lineage import LineagePathMissing, capture_lineage, code_info, data_digest
from shipyard.registry.manifest import build_manifest


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_data_file_and_folder_digests(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("a\n1\n")
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "0.csv").write_text("a\n2\n")
    file_, folder = data_digest(tmp_path / "train.csv"), data_digest(tmp_path / "shards")
    assert file_["digest"] == "sha256:" + hashlib.sha256(b"a\n1\n").hexdigest()
    assert (file_["size"], file_["files"]) == (4, 1)
    assert folder["digest"] == build_manifest(tmp_path / "shards").digest
    assert folder["files"] == 1


def test_missing_data_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(LineagePathMissing, match=r"training data '.*nope.csv' does not exist"):
        capture_lineage(data=[tmp_path / "nope.csv"])


def test_git_commit_and_dirty_flag(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("print(1)\n")
    git(tmp_path, "add", "train.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    commit = git(tmp_path, "rev-parse", "HEAD")
    assert code_info(tmp_path) == {"path": str(tmp_path.resolve()), "git_commit": commit, "git_dirty": False}
    (tmp_path / "train.py").write_text("print(2)\n")
    assert code_info(tmp_path)["git_dirty"] is True


def test_a_new_uncommitted_file_makes_the_tree_dirty_and_an_ignored_one_does_not(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("data/\n")
    git(tmp_path, "add", ".gitignore")
    git(tmp_path, "commit", "-q", "-m", "first")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("x\n")
    assert code_info(tmp_path)["git_dirty"] is False
    (tmp_path / "train_v2.py").write_text("print(2)\n")
    assert code_info(tmp_path)["git_dirty"] is True


def test_source_digest_without_git(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print(1)\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "train.pyc").write_bytes(b"x")
    first = code_info(tmp_path)
    assert set(first) == {"path", "source_digest"}
    (tmp_path / "__pycache__" / "train.pyc").write_bytes(b"y")
    assert code_info(tmp_path)["source_digest"] == first["source_digest"]
    (tmp_path / "train.py").write_text("print(2)\n")
    assert code_info(tmp_path)["source_digest"] != first["source_digest"]


def test_environment_and_parent_run(tmp_path: Path) -> None:
    lineage = capture_lineage(code=tmp_path, parent_run_id="run-42")
    assert lineage["python"]["version"] == platform.python_version()
    assert lineage["packages"]["sqlalchemy"]
    assert lineage["parent_run_id"] == "run-42"
    assert "data" not in lineage


def test_absent_pieces_are_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lineage = capture_lineage()
    assert set(lineage) == {"python", "packages", "code_captured"}
    assert lineage["code_captured"] is False  # said outright, not left to be guessed
    assert capture_lineage(code=tmp_path)["code_captured"] is True
