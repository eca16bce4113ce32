"""Manifests and their digest: equal content gives equal digests, any change gives a new one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from shipyard.registry.manifest import FileEntry, Manifest, build_manifest


def make_model(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "weights.bin").write_bytes(b"\x00\x01" * 100)
    (root / "sub" / "config.json").write_text('{"a": 1}')
    return root


def test_manifest_lists_relative_posix_paths_hashes_and_sizes(tmp_path: Path) -> None:
    manifest = build_manifest(make_model(tmp_path / "m"))
    assert sorted(manifest.files) == [
        FileEntry("sub/config.json", hashlib.sha256(b'{"a": 1}').hexdigest(), 8),
        FileEntry("weights.bin", hashlib.sha256(b"\x00\x01" * 100).hexdigest(), 200),
    ]
    assert manifest.size == 208


def test_digest_ignores_location_and_order(tmp_path: Path) -> None:
    first = build_manifest(make_model(tmp_path / "a"))
    second = build_manifest(make_model(tmp_path / "b"))
    reversed_ = Manifest(tuple(reversed(first.files)))
    assert first.digest == second.digest == reversed_.digest
    assert first.digest.startswith("sha256:")
    assert len(first.digest) == 71


@pytest.mark.parametrize("change", ["content", "rename", "add"])
def test_any_change_changes_the_digest(tmp_path: Path, change: str) -> None:
    root = make_model(tmp_path / "m")
    before = build_manifest(root).digest
    if change == "content":
        (root / "weights.bin").write_bytes(b"\x00\x02" * 100)
    elif change == "rename":
        (root / "weights.bin").rename(root / "weights2.bin")
    else:
        (root / "extra.txt").write_text("x")
    assert build_manifest(root).digest != before


def test_json_round_trip(tmp_path: Path) -> None:
    manifest = build_manifest(make_model(tmp_path / "m"))
    assert Manifest.from_json(manifest.to_json()).digest == manifest.digest


def test_single_file_model_is_named_by_its_file_name(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    assert [entry.path for entry in build_manifest(tmp_path / "model.onnx").files] == ["model.onnx"]


def test_caches_are_left_out(tmp_path: Path) -> None:
    root = make_model(tmp_path / "m")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert "__pycache__/x.pyc" not in {entry.path for entry in build_manifest(root).files}


def test_a_path_that_is_neither_file_nor_folder_is_refused() -> None:
    from shipyard.registry.errors import UnreadablePath

    with pytest.raises(UnreadablePath, match="model path '/dev/null' is neither a regular file nor a folder"):
        build_manifest("/dev/null")
