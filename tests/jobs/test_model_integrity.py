"""A batch job's registry model is verified again by every worker, just before it loads: a local copy
changed after the job was submitted is rebuilt from the blobs, and an altered blob is never unpickled."""

from __future__ import annotations

import pickle
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shipyard import jobs
from shipyard.jobs import JobRequest
from shipyard.registry import Registry
from tests.jobs.conftest import read_output, write_rows

Runner = Callable[..., object]

READER = '''\
import pickle
from pathlib import Path


class Reader:
    """Scores every row with the `label` of the pickled model it loaded."""

    def __init__(self, config, model_path):
        self.label = pickle.loads((Path(model_path) / "model.pkl").read_bytes())["label"]

    def predict_batch(self, payloads):
        return [{"label": self.label} for _ in payloads]
'''


class _Planted:
    """Unpickling it creates the marker file: proof that altered bytes were loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def _project(root: Path) -> Path:
    root.mkdir()
    (root / "reader.py").write_text(READER)
    (root / "shipyard.yaml").write_text(
        textwrap.dedent("""\
            - name: label
              kind: BatchAPI
              handler: reader.py:Reader
              model: models:/iris@production
            """)
    )
    return root


@pytest.fixture
def registry(database_url: str) -> Iterator[Registry]:
    with Registry.from_env() as opened:
        yield opened


def _submit_with_registered_model(tmp_path: Path, registry: Registry) -> tuple[str, Path]:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.pkl").write_bytes(pickle.dumps({"label": "GOOD"}))
    registry.register("iris", model)
    registry.promote("iris:1", "production")
    request = JobRequest("label", [str(write_rows(tmp_path / "in.csv", range(6)))], str(tmp_path / "out"),
                         str(_project(tmp_path / "p")))  # fmt: skip
    job = jobs.submit(request, start_runner=False)  # resolves the reference: checks out the local copy
    copy = registry.home / "models" / registry.get("iris:1").digest.removeprefix("sha256:")
    assert (copy / "model.pkl").is_file()
    return job.id, copy


def test_a_local_copy_changed_after_submit_is_rebuilt_before_the_worker_loads_it(
    registry: Registry, tmp_path: Path, runner: Runner
) -> None:
    job_id, copy = _submit_with_registered_model(tmp_path, registry)
    marker = tmp_path / "unpickled"
    (copy / "model.pkl").write_bytes(pickle.dumps(_Planted(str(marker))))
    runner(only={job_id})
    job = jobs.wait(job_id, timeout=90)
    assert job.state == "succeeded", job.error
    rows, _ = read_output(tmp_path / "out")
    assert [row["label"] for row in rows] == ["GOOD"] * 6
    assert not marker.exists()
    assert registry.verify("iris:1")[1] == []


def test_a_job_whose_copy_and_blob_were_both_altered_fails_naming_the_file_and_both_digests(
    registry: Registry, tmp_path: Path, runner: Runner
) -> None:
    job_id, copy = _submit_with_registered_model(tmp_path, registry)
    entry = registry.get("iris:1").manifest.files[0]
    marker = tmp_path / "unpickled"
    planted = pickle.dumps(_Planted(str(marker)))
    (copy / "model.pkl").write_bytes(planted)
    Path(registry.artifacts.blob_path(entry.sha256)).write_bytes(planted)
    runner(only={job_id})
    job = jobs.wait(job_id, timeout=90)
    assert job.state == "failed"
    assert job.error is not None and "'model.pkl'" in job.error
    assert f"expected sha256:{entry.sha256}, found sha256:" in job.error
    assert not marker.exists(), "nothing was unpickled from the altered bytes"
    assert not (copy / "model.pkl").exists(), "no altered copy is left to load"
