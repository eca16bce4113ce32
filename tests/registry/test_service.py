"""The registry end to end on SQLite and PostgreSQL: registration, promotion, approvals, audit, integrity."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shipyard.registry import (
    AliasNotFound,
    ArtifactIntegrityError,
    ModelNotFound,
    PromotionRefused,
    Registry,
    VersionInUse,
    register_model,
    resolve_model_ref,
)
from shipyard.registry.errors import ForceWithoutReason, SelfApproval
from shipyard.registry.identity import os_identity, os_login, same_person
from shipyard.registry.manifest import build_manifest, file_sha256

POLICY = """\
aliases:
  production:
    require:
      - candidate.metrics.accuracy >= 0.90
      - "!has(current) || candidate.metrics.accuracy >= current.metrics.accuracy - 0.005"
      - has(candidate.lineage.data)
    approvals: 1
"""


def write_policy(home: Path, text: str = POLICY) -> None:
    (home / "policies.yaml").write_text(text)


def test_register_records_everything(registry: Registry, model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("x,y\n1,a\n2,b\n")
    version = registry.register(
        "iris", model_dir, metrics={"accuracy": 0.93}, params={"depth": 3}, tags={"owner": "ana"},
        data=[tmp_path / "train.csv"], description="first", parent_run_id="run-1",
    )  # fmt: skip
    assert (version.ref, version.digest) == ("iris:1", build_manifest(model_dir).digest)
    again = registry.get("models:/iris:1")
    assert again.metrics == {"accuracy": 0.93}
    assert (again.params, again.tags, again.description) == ({"depth": "3"}, {"owner": "ana"}, "first")
    assert again.lineage["data"][0]["digest"] == "sha256:" + file_sha256(tmp_path / "train.csv")
    assert again.lineage["parent_run_id"] == "run-1"
    assert again.profile is not None
    assert again.profile["columns"]["y"]["frequencies"] == {"a": 0.5, "b": 0.5}
    assert again.created_by == os_identity()
    assert again.created_at.tzinfo is not None


@pytest.mark.parametrize("as_given", [str, Path, lambda path: [str(path)]])
def test_one_data_path_may_be_given_alone(registry: Registry, model_dir: Path, tmp_path: Path, as_given) -> None:
    (tmp_path / "train.csv").write_text("x\n1\n")
    version = registry.register("iris", model_dir, data=as_given(tmp_path / "train.csv"))
    assert [item["path"] for item in version.lineage["data"]] == [str(tmp_path / "train.csv")]
    assert version.profile is not None and version.profile["files"] == ["train.csv"]


def test_versions_count_up_and_list(registry: Registry, model_dir: Path) -> None:
    for _ in range(3):
        registry.register("iris", model_dir)
    registry.register("wine", model_dir)
    assert [v.version for v in registry.list_versions("iris")] == [1, 2, 3]
    assert registry.get("iris").version == 3
    summaries = {summary.name: summary for summary in registry.list_models()}
    assert (summaries["iris"].versions, summaries["iris"].latest, summaries["wine"].versions) == (3, 3, 1)


def test_unknown_model_version_alias(registry: Registry, model_dir: Path) -> None:
    with pytest.raises(ModelNotFound, match="model 'nope' is not registered"):
        registry.get("nope")
    with pytest.raises(ModelNotFound, match="model 'nope' is not registered"):
        registry.history("nope")
    registry.register("iris", model_dir)
    with pytest.raises(Exception, match="model 'iris' has no version 9"):
        registry.get("iris:9")
    with pytest.raises(AliasNotFound, match="model 'iris' has no alias 'production'"):
        registry.get("iris@production")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": {"accuracy": "high"}}, "metric 'accuracy' must be a finite number"),
        ({"metrics": {"loss": float("nan")}}, "metric 'loss' must be a finite number"),
        ({"metrics": {"passed": True}}, "metric 'passed' must be a finite number"),
        ({"metrics": {"passed": np.bool_(True)}}, "metric 'passed' must be a finite number"),
        ({"metrics": {"loss": np.float32("inf")}}, "metric 'loss' must be a finite number"),
        ({"metrics": {"n": 10**400}}, "metric 'n' must be a finite number"),
        ({"tags": {"owner": ["a"]}}, "tag 'owner' must be a single value"),
    ],
)
def test_bad_input_records_nothing(registry: Registry, model_dir: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(Exception, match=message):
        registry.register("iris", model_dir, **kwargs)
    assert registry.list_models() == []


def test_numpy_numbers_are_metrics(registry: Registry, model_dir: Path) -> None:
    from fractions import Fraction

    metrics = {"accuracy": np.float32(0.5), "support": np.int64(150), "f1": np.float64(0.75), "r": Fraction(1, 4)}
    version = registry.register("iris", model_dir, metrics=metrics)
    assert version.metrics == {"accuracy": 0.5, "support": 150.0, "f1": 0.75, "r": 0.25}
    assert all(type(value) is float for value in registry.get("iris:1").metrics.values())


def test_missing_model_path(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"model path '.*nowhere' does not exist"):
        registry.register("iris", tmp_path / "nowhere")


_CONCURRENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from shipyard.registry import Registry
    go, ready, model = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    with Registry.from_env() as registry:
        ready.touch()
        while not go.exists():
            time.sleep(0.005)
        print(registry.register("shared", model).version)
    """
)


def test_concurrent_registration_gets_distinct_consecutive_numbers(
    database_url: str, model_dir: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT, str(go), str(tmp_path / f"ready-{n}"), str(model_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < 8 and time.monotonic() < deadline:
        assert all(child.poll() is None for child in children), [c.stderr.read() for c in children if c.stderr]
        time.sleep(0.02)
    go.touch()
    outputs = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0] * 8, [err for _, err in outputs]
    assert sorted(int(out) for out, _ in outputs) == list(range(1, 9))
    with Registry.from_env() as registry:
        assert [v.version for v in registry.list_versions("shared")] == list(range(1, 9))


def test_promotion_allowed_and_refused_is_audited(
    registry: Registry, as_user: Callable[[str], Registry], model_dir: Path, tmp_path: Path, shipyard_home: Path
) -> None:
    write_policy(shipyard_home)
    data = tmp_path / "train.csv"
    data.write_text("x\n1\n")
    ana, bo = as_user("ana@lab"), as_user("bo@lab")
    ana.register("iris", model_dir, metrics={"accuracy": 0.95}, data=[data])
    ana.register("iris", model_dir, metrics={"accuracy": 0.93}, data=[data])
    bo.approve("iris:1", "production", comment="looked at the eval")
    first = ana.promote("iris:1", "production", reason="first release")
    assert (first.applied, first.from_version) == (True, None)
    assert registry.get("iris@production").version == 1

    bo.approve("iris:2", "production")
    refused = ana.promote("iris:2", "production")
    assert not refused.applied
    assert [rule.passed for rule in refused.verdict.rules] == [True, False, True]
    assert registry.get("iris@production").version == 1
    with pytest.raises(PromotionRefused, match=r"current\.metrics\.accuracy=0\.95"):
        refused.raise_for_refusal()

    entries = [e for e in registry.history("iris") if e.action.startswith("promote")]
    assert [(e.action, e.version, e.from_version, e.allowed) for e in entries] == [
        ("promote", 1, None, True), ("promote_refused", 2, 1, False),
    ]  # fmt: skip
    assert entries[0].reason == "first release"
    assert entries[0].actor == "ana@lab"
    assert entries[1].details["approvals"] == {"required": 1, "approvers": ["bo@lab"]}
    policy_file = shipyard_home / "policies.yaml"
    assert entries[1].details["policy_file"] == {
        "path": str(policy_file), "digest": "sha256:" + file_sha256(policy_file),
    }  # fmt: skip
    assert entries[1].details["policy"] == f"aliases.production of {policy_file}"
    assert entries[1].details["candidate_digest"] == registry.get("iris:2").digest
    second_rule = entries[1].details["rules"][1]
    assert second_rule["passed"] is False
    assert second_rule["values"] == {
        "current": "{13 fields}",
        "candidate.metrics.accuracy": 0.93,
        "current.metrics.accuracy": 0.95,
    }


def test_a_promotion_no_policy_governs_says_so_in_the_audit_log(registry: Registry, model_dir: Path) -> None:
    registry.register("iris", model_dir)
    outcome = registry.promote("iris:1", "staging")
    assert outcome.applied
    assert outcome.verdict.policy == "no policy for alias 'staging' (no policy file): allowed by default"
    entry = registry.history("iris")[-1]
    assert (entry.details["policy"], entry.details["policy_file"]) == (outcome.verdict.policy, None)


def test_dry_run_changes_nothing(registry: Registry, model_dir: Path, shipyard_home: Path) -> None:
    write_policy(shipyard_home)
    registry.register("iris", model_dir, metrics={"accuracy": 0.99})
    outcome = registry.promote("iris:1", "production", dry_run=True)
    assert not outcome.applied
    assert outcome.verdict.failures() == [
        "has(candidate.lineage.data) failed [candidate.lineage.data='(missing)']",
        "needs 1 approval(s), has 0",
    ]
    assert [e.action for e in registry.history("iris")] == ["register"]
    with pytest.raises(AliasNotFound):
        registry.get("iris@production")


def test_force_needs_a_reason_and_is_recorded(registry: Registry, model_dir: Path, shipyard_home: Path) -> None:
    write_policy(shipyard_home)
    registry.register("iris", model_dir, metrics={"accuracy": 0.1})
    with pytest.raises(ForceWithoutReason):
        registry.promote("iris:1", "production", force=True)
    outcome = registry.promote("iris:1", "production", force=True, reason="hotfix", on_behalf_of="ops")
    assert (outcome.applied, outcome.forced, outcome.verdict.allowed) == (True, True, False)
    last = registry.history("iris")[-1]
    assert (last.action, last.forced, last.allowed, last.reason) == ("promote", True, False, "hotfix")
    assert (last.actor, last.claimed_user) == (os_identity(), "ops")


def test_approval_flow(
    registry: Registry, as_user: Callable[[str], Registry], model_dir: Path, shipyard_home: Path
) -> None:
    write_policy(shipyard_home, "aliases:\n  production:\n    approvals: 2\n")
    ana, bo, cy = as_user("ana@lab"), as_user("bo@lab"), as_user("cy@desk")
    ana.register("iris", model_dir)
    with pytest.raises(SelfApproval, match="'ana@lab' registered iris:1 and cannot approve it"):
        ana.approve("iris:1", "production")
    bo.approve("iris:1", "production")
    assert not registry.promote("iris:1", "production").applied
    with pytest.raises(Exception, match="'bo@lab' has already approved iris:1"):
        bo.approve("iris:1", "production")
    cy.approve("iris:1", "staging")  # an approval counts for its own alias only
    assert not registry.promote("iris:1", "production").applied
    cy.approve("iris:1", "production")
    outcome = ana.promote("iris:1", "production")
    assert outcome.applied
    assert outcome.verdict.approvers == ("bo@lab", "cy@desk")
    approvals = [(e.actor, e.alias) for e in registry.history("iris") if e.action == "approve"]
    assert approvals == [("bo@lab", "production"), ("cy@desk", "staging"), ("cy@desk", "production")]


def test_a_claimed_name_never_replaces_the_os_account(
    registry: Registry, as_user: Callable[[str], Registry], model_dir: Path, shipyard_home: Path
) -> None:
    write_policy(shipyard_home, "aliases:\n  production:\n    approvals: 1\n")
    registry.register("iris", model_dir, on_behalf_of="ana")
    with pytest.raises(SelfApproval, match=f"'{os_identity()}' registered iris:1 and cannot approve it"):
        registry.approve("iris:1", "production", on_behalf_of="bob")  # the registrant's own account, claiming bob
    assert not registry.promote("iris:1", "production").applied  # so the registrant alone cannot satisfy it
    as_user("bo@lab").approve("iris:1", "production", on_behalf_of="the review board")
    with pytest.raises(Exception, match="'bo@lab' has already approved"):
        as_user("bo@lab").approve("iris:1", "production", on_behalf_of="someone else")
    assert registry.promote("iris:1", "production").applied
    entries = registry.history("iris")
    assert [(e.action, e.actor, e.claimed_user) for e in entries] == [
        ("register", os_identity(), "ana"),
        ("promote_refused", os_identity(), None),
        ("approve", "bo@lab", "the review board"),
        ("promote", os_identity(), None),
    ]


def test_identities_recorded_without_a_host_match_by_login() -> None:
    assert same_person("ana@lab", "ana@lab")
    assert not same_person("ana@lab", "ana@desk")
    assert same_person("ana", "ana@desk")  # recorded by an older Shipyard
    assert not same_person("ana", "bo")


def test_the_os_account_comes_from_the_user_id_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    monkeypatch.setenv("USER", "somebody-else")
    monkeypatch.setenv("LOGNAME", "somebody-else")
    assert os_login() == pwd.getpwuid(os.geteuid()).pw_name


def test_delete_refused_while_an_alias_points_at_it(registry: Registry, model_dir: Path) -> None:
    registry.register("iris", model_dir)
    registry.register("iris", model_dir)
    registry.promote("iris:1", "production")
    with pytest.raises(VersionInUse, match="model 'iris' version 1 is in use by alias 'production'"):
        registry.delete("iris", 1)
    registry.promote("iris:2", "production")
    registry.delete("iris", 1, on_behalf_of="ana")
    assert [v.version for v in registry.list_versions("iris")] == [2]
    assert registry.history("iris")[-1].action == "delete"
    registry.register("iris", model_dir)
    assert registry.get("iris").version == 3  # numbers are never reused


def test_delete_refused_while_a_deployment_serves_it(registry: Registry, model_dir: Path, tmp_path: Path) -> None:
    """With the runtime's own release records (no daemon needed), on SQLite and PostgreSQL."""
    from shipyard.runtime.local import state
    from shipyard.runtime.local.release import prepare
    from shipyard.store import write_transaction
    from tests.serving.conftest import make_project

    registry.register("iris", model_dir)
    registry.register("iris", model_dir)
    project = make_project(tmp_path / "p", "- name: api\n  handler: handlers.py:Echo\n  model: models:/iris:1\n")
    with write_transaction(registry.engine) as connection:
        for release in prepare(project).releases:
            state.record_release(connection, release, "spec.yaml", str(project), 1.0)
    with pytest.raises(VersionInUse) as caught:
        registry.delete("iris", 1)
    assert caught.value.message == (
        "model 'iris' version 1 is in use by deployment 'api'; delete deployment 'api' (`shipyard delete API`) "
        "or redeploy with another model, then delete it"
    )
    registry.promote("iris:1", "production")
    with pytest.raises(VersionInUse, match=r"by alias 'production', deployment 'api'; promote another version to "
                       r"alias 'production' and delete deployment 'api'"):  # fmt: skip
        registry.delete("iris", 1)
    registry.delete("iris", 2)  # the version nothing uses
    assert [v.version for v in registry.list_versions("iris")] == [1]


class _Planted:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def test_tampered_blob_is_refused_and_nothing_is_unpickled(
    registry: Registry, tmp_path: Path, shipyard_home: Path
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.pkl").write_bytes(pickle.dumps({"coef": [1, 2]}))
    version = registry.register("iris", model)
    registry.promote("iris:1", "production")
    marker = tmp_path / "unpickled"
    entry = version.manifest.files[0]
    Path(registry.artifacts.blob_path(entry.sha256)).write_bytes(pickle.dumps(_Planted(str(marker))))
    with pytest.raises(ArtifactIntegrityError) as caught:
        resolve_model_ref("models:/iris@production")
    assert "'model.pkl'" in caught.value.message
    assert f"expected sha256:{entry.sha256}, found sha256:" in caught.value.message
    assert not marker.exists()
    assert not list((shipyard_home / "models").rglob("model.pkl"))
    _, problems = registry.verify("iris:1")
    assert [(p.path, p.expected) for p in problems] == [("model.pkl", entry.sha256)]


def test_resolve_returns_a_verified_folder(registry: Registry, model_dir: Path) -> None:
    version = registry.register("iris", model_dir)
    registry.promote("iris:1", "staging")
    resolved = resolve_model_ref("models:/iris@staging")
    assert (resolved.name, resolved.version, resolved.digest) == ("iris", 1, version.digest)
    assert build_manifest(resolved.path).digest == version.digest
    assert resolve_model_ref("models:/iris:1").path == resolved.path


def test_download_refuses_a_non_empty_folder(registry: Registry, model_dir: Path, tmp_path: Path) -> None:
    registry.register("iris", model_dir)
    registry.download("iris:1", tmp_path / "out")
    assert build_manifest(tmp_path / "out").digest == build_manifest(model_dir).digest
    with pytest.raises(Exception, match="is not an empty folder"):
        registry.download("iris:1", tmp_path / "out")


_SLOW_UPLOAD = "import sys; from shipyard.registry import register_model; register_model('big', sys.argv[1])"


def test_crash_during_upload_leaves_no_version(database_url: str, tmp_path: Path, shipyard_home: Path) -> None:
    model = tmp_path / "big"
    model.mkdir()
    for index in range(40):
        (model / f"shard-{index:02}.bin").write_bytes(os.urandom(1 << 20))
    blobs = shipyard_home / "artifacts" / "blobs"
    child = subprocess.Popen([sys.executable, "-c", _SLOW_UPLOAD, str(model)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (blobs.exists() and any(p.is_file() for p in blobs.rglob("*"))):
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    with Registry.from_env() as registry:
        assert registry.list_models() == [] or registry.list_versions("big") == []
        stored = [p for p in blobs.rglob("*") if p.is_file() and ".tmp-" not in p.name]
        assert len(stored) < 40
        assert all(file_sha256(p) == p.name for p in stored)  # a blob under its final name is whole
        assert register_model("big", model).version == 1
        assert build_manifest(registry.resolve("big:1").path).digest == build_manifest(model).digest


def test_registering_again_repairs_a_damaged_blob(registry: Registry, model_dir: Path) -> None:
    version = registry.register("iris", model_dir)
    entry = version.manifest.files[0]
    Path(registry.artifacts.blob_path(entry.sha256)).write_bytes(b"bit rot")
    with pytest.raises(ArtifactIntegrityError, match="register the model again"):
        registry.resolve("iris:1")
    registry.register("iris", model_dir)
    assert registry.verify("iris:1")[1] == []
    assert build_manifest(registry.resolve("iris:1").path).digest == version.digest
    assert registry.history("iris")[-1].details["repaired_blobs"] == 1


def test_a_tampered_version_record_is_refused(registry: Registry, model_dir: Path, tmp_path: Path) -> None:
    from sqlalchemy import update

    from shipyard.registry.errors import DamagedVersionRecord
    from shipyard.registry.manifest import FileEntry, Manifest
    from shipyard.store import write_transaction
    from shipyard.store.tables import model_versions

    version = registry.register("iris", model_dir)
    other = tmp_path / "other"
    other.mkdir()
    (other / "weights.bin").write_bytes(b"something else entirely")
    registry.register("wine", other)  # a blob the tampered manifest can point at
    swapped = Manifest(tuple(
        FileEntry(e.path, file_sha256(other / "weights.bin"), 23) if e.path == "weights.bin" else e
        for e in version.manifest.files
    ))  # fmt: skip
    with write_transaction(registry.engine) as connection:
        connection.execute(
            update(model_versions).where(model_versions.c.id == version.id).values(manifest=swapped.to_json().decode())
        )
    message = rf"the record of iris:1 is damaged or was altered: it names digest {version.digest}, but its file "
    message += rf"manifest hashes to {swapped.digest}"
    for attempt in (
        lambda: registry.verify("iris:1"),
        lambda: registry.resolve("iris:1"),
        lambda: registry.get("iris"),
    ):
        with pytest.raises(DamagedVersionRecord, match=message):
            attempt()
    registry.delete("iris", 1)  # the damaged record can still be removed
    assert registry.list_versions("iris") == []


def test_a_failed_download_leaves_nothing_behind(registry: Registry, model_dir: Path, tmp_path: Path) -> None:
    version = registry.register("iris", model_dir)
    damaged = next(entry for entry in version.manifest.files if entry.path == "weights.bin")
    Path(registry.artifacts.blob_path(damaged.sha256)).write_bytes(b"bit rot")
    out = tmp_path / "downloads" / "iris"
    with pytest.raises(ArtifactIntegrityError, match="'weights.bin'"):
        registry.download("iris:1", out)
    assert not out.exists()
    assert list((tmp_path / "downloads").iterdir()) == []  # no staging folder either
    registry.register("iris", model_dir)  # repairs the blob
    registry.download("iris:1", out)
    assert build_manifest(out).digest == version.digest


def test_a_version_whose_files_fail_verification_is_never_promoted(registry: Registry, model_dir: Path) -> None:
    from shipyard.registry.errors import CandidateDamaged

    version = registry.register("iris", model_dir)
    registry.promote("iris:1", "staging")
    weights = next(entry for entry in version.manifest.files if entry.path == "weights.bin")
    Path(registry.artifacts.blob_path(weights.sha256)).write_bytes(b"bit rot")
    assert registry.promote("iris@staging", "production", dry_run=True).verdict.allowed  # dry runs read no blobs
    for force in (False, True):
        outcome = registry.promote("iris@staging", "production", force=force, reason="hotfix" if force else "")
        assert not outcome.applied
        assert outcome.damaged is not None and f"weights.bin: expected sha256:{weights.sha256}" in outcome.damaged
        with pytest.raises(CandidateDamaged, match=r"refused: its stored files fail verification .*register the"):
            outcome.raise_for_refusal()
    with pytest.raises(AliasNotFound):
        registry.get("iris@production")
    refused = [e for e in registry.history("iris") if e.action == "promote_refused"]
    assert [(e.version, e.details["damaged"] is not None) for e in refused] == [(1, True), (1, True)]


def test_a_recorded_local_copy_is_verified_again_before_it_is_loaded(registry: Registry, model_dir: Path) -> None:
    from shipyard.registry import verify_model_folder
    from shipyard.registry.errors import UnknownDigest
    from shipyard.registry.integrity import NotACheckout

    version = registry.register("iris", model_dir)
    copy = registry.resolve("iris:1").path
    (copy / "weights.bin").write_bytes(b"changed on disk")
    (copy / "extra.py").write_text("import os")
    assert verify_model_folder(copy, version.digest) == copy
    assert build_manifest(copy).digest == version.digest, "rebuilt from the blobs"
    with pytest.raises(NotACheckout, match="is not the registry's local copy"):
        verify_model_folder(model_dir, version.digest)
    registry.delete("iris", 1)
    with pytest.raises(UnknownDigest, match=f"no version in the registry has digest {version.digest}"):
        verify_model_folder(copy, version.digest)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.symlink_to(p.parent / "gone.yaml"), "is a symbolic link to .*gone.yaml', which does not exist"),
        (lambda p: p.mkdir(), "is a folder, not a policy file"),
        (lambda p: p.with_suffix(".yml").write_text(POLICY), r"reads the policies from .*policies.yaml, not .*yml"),
    ],
)
def test_governance_never_turns_off_because_the_policy_file_cannot_be_read(
    registry: Registry, model_dir: Path, shipyard_home: Path, make: Callable[[Path], object], message: str
) -> None:
    from shipyard.errors import ConfigError

    registry.register("iris", model_dir)
    make(shipyard_home / "policies.yaml")
    with pytest.raises(ConfigError, match=message):
        registry.promote("iris:1", "production")
    with pytest.raises(AliasNotFound):
        registry.get("iris@production")


def test_a_relative_policy_path_is_audited_as_an_absolute_one(
    registry: Registry, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rules.yaml").write_text("aliases:\n  staging: {}\n")
    monkeypatch.chdir(tmp_path)
    registry.register("iris", model_dir)
    registry.promote("iris:1", "staging", policies="rules.yaml")
    assert registry.history("iris")[-1].details["policy_file"]["path"] == str(tmp_path / "rules.yaml")


def _damage_record(registry: Registry, version: int) -> None:
    from sqlalchemy import update

    from shipyard.store import write_transaction
    from shipyard.store.tables import model_versions

    with write_transaction(registry.engine) as connection:
        connection.execute(update(model_versions).where(model_versions.c.version == version).values(manifest="[]"))


def test_an_alias_can_be_moved_off_a_damaged_record_which_can_then_be_deleted(
    registry: Registry, model_dir: Path, shipyard_home: Path
) -> None:
    write_policy(shipyard_home, "aliases:\n  production:\n    require: [candidate.metrics.accuracy >= 0.9]\n")
    registry.register("iris", model_dir, metrics={"accuracy": 0.95})
    registry.promote("iris:1", "production")
    registry.register("iris", model_dir, metrics={"accuracy": 0.96})
    _damage_record(registry, 1)
    listed = registry.list_versions("iris")
    assert [(v.version, v.damaged is not None) for v in listed] == [(1, True), (2, False)]
    assert listed[0].damaged is not None and "the record of iris:1 is damaged" in listed[0].damaged
    outcome = registry.promote("iris:2", "production")
    assert outcome.applied and outcome.from_version == 1
    assert outcome.current_damaged is not None and "the record of iris:1 is damaged" in outcome.current_damaged
    assert registry.history("iris")[-1].details["current_damaged"] == outcome.current_damaged
    registry.delete("iris", 1)
    assert [v.version for v in registry.list_versions("iris")] == [2]


def test_profiles_of_numbers_near_the_float_limits_are_stored(
    registry: Registry, model_dir: Path, tmp_path: Path
) -> None:
    """A constant ns timestamp and an overflowing mean once broke the histogram, or stored NaN (SQLite) and
    failed the insert (PostgreSQL's json has no NaN)."""
    data = tmp_path / "train.csv"
    data.write_text("ts,huge,edge\n" + "".join(f"1700000000123456789,1e308,{(-1) ** i}e308\n" for i in range(4)))
    version = registry.register("iris", model_dir, data=[data])
    stored = registry.get("iris:1").profile
    assert stored == version.profile and stored is not None
    assert stored["columns"]["ts"]["histogram"]["counts"] == [4]
    assert stored["columns"]["huge"]["mean"] == 1e308
    assert stored["columns"]["edge"]["min"] == -1e308


def test_bounded_fields_are_checked_before_anything_is_written(
    registry: Registry, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite would keep a 200-character flavor and PostgreSQL refuse it without naming the field."""
    from shipyard.registry.errors import ValueTooLong

    with pytest.raises(
        ValueTooLong, match=r"flavor 'fff.*' is 200 characters long, but the registry keeps at most 128"
    ):
        registry.register("iris", model_dir, flavor="f" * 200)
    assert registry.list_models() == []
    with pytest.raises(ValueTooLong, match="identity 'aaa.*' is 129 characters long"):
        Registry(registry.engine, registry.artifacts, registry.home, identity="a" * 129)
    monkeypatch.setattr("socket.gethostname", lambda: "h" * 300)
    assert len(os_identity()) == 128 and os_identity().startswith(f"{os_login()}@hhh")
    long_host = Registry(registry.engine, registry.artifacts, registry.home)
    assert long_host.register("iris", model_dir).created_by == os_identity()


def test_a_relative_artifact_folder_lies_in_shipyard_home_whatever_the_working_directory(
    database_url: str, model_dir: Path, tmp_path: Path, shipyard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_ARTIFACTS", "store")
    for where in ("one", "two"):
        (tmp_path / where).mkdir()
    monkeypatch.chdir(tmp_path / "one")
    with Registry.from_env() as registry:
        version = registry.register("iris", model_dir)
        assert registry.artifacts.location == str(shipyard_home / "store")
    monkeypatch.chdir(tmp_path / "two")
    assert resolve_model_ref("models:/iris:1").digest == version.digest
    assert list((tmp_path / "one").iterdir()) == list((tmp_path / "two").iterdir()) == []
