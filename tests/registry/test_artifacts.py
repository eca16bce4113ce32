"""The blob store: content addressing, deduplication, verification on every read, confinement."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.registry.artifacts import ArtifactStore, safe_join
from shipyard.registry.checkout import checkout
from shipyard.registry.errors import ArtifactIntegrityError, ArtifactMissing, UnsafeManifestPath
from shipyard.registry.manifest import FileEntry, Manifest, build_manifest


def model(root: Path, weights: bytes = b"w" * 1000) -> Path:
    (root / "nested").mkdir(parents=True)
    (root / "weights.bin").write_bytes(weights)
    (root / "nested" / "copy.bin").write_bytes(weights)
    (root / "config.json").write_text("{}")
    return root


def test_identical_files_are_stored_once(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    source = model(tmp_path / "m")
    report = store.upload(source, build_manifest(source))
    assert (report.stored, report.reused) == (2, 1)
    again = store.upload(source, build_manifest(source))
    assert (again.stored, again.reused) == (0, 3)
    blobs = [path for path in (tmp_path / "store" / "blobs").rglob("*") if path.is_file()]
    assert sorted(path.name for path in blobs) == sorted(
        {hashlib.sha256(b"w" * 1000).hexdigest(), hashlib.sha256(b"{}").hexdigest()}
    )


def test_materialize_restores_the_tree(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    source = model(tmp_path / "m")
    manifest = build_manifest(source)
    store.upload(source, manifest)
    store.materialize(manifest, tmp_path / "out")
    assert build_manifest(tmp_path / "out").digest == manifest.digest


def test_tampered_blob_is_refused_naming_file_and_digests(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    source = model(tmp_path / "m")
    manifest = build_manifest(source)
    store.upload(source, manifest)
    entry = next(entry for entry in manifest.files if entry.path == "config.json")
    Path(store.blob_path(entry.sha256)).write_text('{"evil": true}')
    bad = hashlib.sha256(b'{"evil": true}').hexdigest()
    with pytest.raises(ArtifactIntegrityError) as caught:
        store.materialize(manifest, tmp_path / "out")
    assert "'config.json'" in caught.value.message
    assert f"expected sha256:{entry.sha256}, found sha256:{bad}" in caught.value.message
    assert not (tmp_path / "out" / "config.json").exists()
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.name.startswith(".")] == []


def test_missing_blob_is_named(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    entry = FileEntry("model.pkl", "0" * 64, 3)
    with pytest.raises(ArtifactMissing, match=r"artifact file 'model.pkl' .* is missing"):
        store.fetch(entry, tmp_path / "out" / "model.pkl")


def test_any_fsspec_url_works(tmp_path: Path) -> None:
    store = ArtifactStore("memory://shipyard-test-artifacts")
    source = model(tmp_path / "m")
    manifest = build_manifest(source)
    store.upload(source, manifest)
    assert all(store.has(entry.sha256) for entry in manifest.files)
    store.materialize(manifest, tmp_path / "out")
    assert build_manifest(tmp_path / "out").digest == manifest.digest


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "a/../../b", "", "a\\..\\b"])
def test_manifest_paths_stay_inside(tmp_path: Path, path: str) -> None:
    with pytest.raises(UnsafeManifestPath):
        safe_join(tmp_path, path)


def test_checkout_rebuilds_a_local_copy_that_was_changed(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    source = model(tmp_path / "m")
    manifest = build_manifest(source)
    store.upload(source, manifest)
    folder = checkout(store, manifest, tmp_path / "cache")
    (folder / "config.json").write_text("changed")
    (folder / "planted.py").write_text("import os")
    assert checkout(store, manifest, tmp_path / "cache") == folder
    assert build_manifest(folder).digest == manifest.digest


def test_checkout_refuses_when_the_blob_itself_was_changed(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    source = model(tmp_path / "m")
    manifest = build_manifest(source)
    store.upload(source, manifest)
    sha = hashlib.sha256(b"w" * 1000).hexdigest()
    Path(store.blob_path(sha)).write_bytes(b"x" * 1000)
    with pytest.raises(ArtifactIntegrityError, match=r"weights\.bin|copy\.bin"):
        checkout(store, manifest, tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())


def test_empty_manifest_digest_is_stable() -> None:
    assert Manifest(()).digest == Manifest(()).digest


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("s3://bucket/models", r"artifact store s3://bucket/models: Install s3fs to access S3; install that package"),
        ("nope://bucket/x", r"Protocol not known: nope; set SHIPYARD_ARTIFACTS to a folder or an fsspec URL"),
    ],
)
def test_an_unusable_store_url_is_one_clear_error(location: str, message: str) -> None:
    import importlib.util

    from shipyard.registry.errors import ArtifactStoreUnavailable

    if location.startswith("s3://") and importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed here; the message is for users without it")
    with pytest.raises(ArtifactStoreUnavailable, match=message):
        ArtifactStore(location)


def test_a_password_in_the_store_url_is_never_shown() -> None:
    from shipyard.registry.artifacts import shown_location

    assert shown_location("s3://key:secret@bucket/x") == "s3://key:***@bucket/x"
    assert shown_location("/plain/folder") == "/plain/folder"


def test_a_file_in_the_way_of_the_store_is_one_clear_error(tmp_path: Path) -> None:
    from shipyard.registry.errors import ArtifactStoreUnavailable

    (tmp_path / "store").write_text("not a folder")
    store = ArtifactStore(str(tmp_path / "store"))
    source = model(tmp_path / "m")
    with pytest.raises(ArtifactStoreUnavailable, match="a file is in the way of a folder it needs"):
        store.upload(source, build_manifest(source))
    with pytest.raises(ArtifactMissing):
        store.check(build_manifest(source).files[0])


def test_uploading_again_repairs_a_damaged_blob(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    source = model(tmp_path / "m")
    manifest = build_manifest(source)
    store.upload(source, manifest)
    weights = next(entry for entry in manifest.files if entry.path == "weights.bin")
    Path(store.blob_path(weights.sha256)).write_bytes(b"bit rot")
    report = store.upload(source, manifest)
    assert (report.stored, report.reused, report.repaired) == (1, 2, 1)
    assert store.check(weights) == weights.sha256
    checkout(store, manifest, tmp_path / "cache")  # loads again


def test_stale_temporary_files_are_swept_and_fresh_ones_kept(tmp_path: Path) -> None:
    import os
    import time

    from shipyard.registry.artifacts import STALE_AFTER

    store = ArtifactStore(str(tmp_path / "store"))
    source = model(tmp_path / "m")
    manifest = build_manifest(source)
    weights = next(entry for entry in manifest.files if entry.path == "weights.bin")
    folder = Path(store.blob_path(weights.sha256)).parent
    folder.mkdir(parents=True)
    stale, fresh = folder / f"{weights.sha256}.tmp-dead", folder / f"{weights.sha256}.tmp-live"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in flight")
    old = time.time() - STALE_AFTER - 60
    os.utime(stale, (old, old))
    store.upload(source, manifest)
    assert (stale.exists(), fresh.exists()) == (False, True)


@pytest.fixture
def remote_store() -> Iterator[ArtifactStore]:
    """A store on fsspec's in-memory filesystem: remote as far as the store can tell (not a local disk)."""
    import uuid

    import fsspec

    location = f"memory://shipyard-test-{uuid.uuid4().hex}"
    yield ArtifactStore(location)
    fsspec.filesystem("memory").rm(location.removeprefix("memory://"), recursive=True)


def _same_size_rot(store: ArtifactStore, entry: FileEntry) -> None:
    with store._fs.open(store.blob_path(entry.sha256), "wb") as writer:
        writer.write(b"x" * entry.size)


def test_a_small_remote_blob_damaged_in_place_is_repaired_by_uploading_again(
    tmp_path: Path, remote_store: ArtifactStore
) -> None:
    source = model(tmp_path / "m")
    manifest = build_manifest(source)
    remote_store.upload(source, manifest)
    weights = next(entry for entry in manifest.files if entry.path == "weights.bin")
    _same_size_rot(remote_store, weights)
    assert remote_store.upload(source, manifest).repaired == 1
    assert remote_store.check(weights) == weights.sha256


def test_a_big_remote_blob_is_repaired_once_a_read_has_flagged_it(
    tmp_path: Path, remote_store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipyard.registry import artifacts

    monkeypatch.setattr(artifacts, "REMOTE_REHASH_MAX", 0)  # every blob is "big": no hash on upload
    source = model(tmp_path / "m")
    manifest = build_manifest(source)
    remote_store.upload(source, manifest)
    weights = next(entry for entry in manifest.files if entry.path == "weights.bin")
    _same_size_rot(remote_store, weights)
    assert remote_store.upload(source, manifest).repaired == 0, "same size and never read: not known"
    with pytest.raises(ArtifactIntegrityError, match="register the model again"):
        remote_store.materialize(manifest, tmp_path / "out")
    assert remote_store.upload(source, manifest).repaired == 1  # the failed read flagged it
    assert remote_store.check(weights) == weights.sha256
    assert not remote_store._fs.exists(remote_store._damage_mark(weights.sha256))
    assert remote_store.upload(source, manifest).repaired == 0


def test_stale_temporary_files_anywhere_in_a_local_store_are_swept_at_most_hourly(tmp_path: Path) -> None:
    import os
    import time

    from shipyard.registry.artifacts import STALE_AFTER

    store = ArtifactStore(str(tmp_path / "store"))
    elsewhere = tmp_path / "store" / "blobs" / "sha256" / "ff"
    elsewhere.mkdir(parents=True)
    old = time.time() - STALE_AFTER - 60
    first = elsewhere / f"{'f' * 64}.tmp-killed"
    first.write_bytes(b"half an upload")
    os.utime(first, (old, old))
    source = model(tmp_path / "m")
    store.upload(source, build_manifest(source))  # writes no blob in ff/, yet sweeps it
    assert not first.exists()
    second = elsewhere / f"{'f' * 64}.tmp-killed-later"
    second.write_bytes(b"half an upload")
    os.utime(second, (old, old))
    store.upload(source, build_manifest(source))
    assert second.exists(), "the whole store is swept at most once every STALE_AFTER seconds"
