"""`shipyard models ...` through the real CLI root: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from shipyard.cli.main import cli
from shipyard.registry import Registry
from shipyard.registry.identity import os_identity


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "model.onnx").write_bytes(b"onnx-bytes")
    return root


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["models", *args], catch_exceptions=False, prog_name="shipyard")


def test_register_prints_ref_and_digest(database_url: str, model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{"f1": 0.8}')
    result = run("register", "iris", str(model_dir), "--metric", "accuracy=0.9", "--metrics-file",
                 str(tmp_path / "m.json"), "--tag", "owner=ana", "--param", "depth=3")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    ref, digest = result.stdout.split()
    assert ref == "iris:1"
    assert digest.startswith("sha256:")
    shown = json.loads(run("show", "iris:1", "-o", "json").stdout)
    assert shown["metrics"] == {"f1": 0.8, "accuracy": 0.9}
    assert (shown["tags"], shown["params"], shown["flavor"]) == ({"owner": "ana"}, {"depth": "3"}, "onnx")
    assert shown["files"] == [{"path": "model.onnx", "sha256": digest_of(b"onnx-bytes"), "size": 10}]


def digest_of(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_tables_and_json_listings(database_url: str, model_dir: Path) -> None:
    run("register", "iris", str(model_dir))
    run("register", "iris", str(model_dir))
    run("promote", "iris:1", "--to", "staging")
    assert "iris" in run("list").stdout
    assert json.loads(run("list", "-o", "json").stdout)[0] | {"created_at": None} == {
        "name": "iris", "versions": 2, "latest": 2, "aliases": {"staging": 1}, "created_at": None,
    }  # fmt: skip
    versions = json.loads(run("versions", "iris", "-o", "json").stdout)
    assert [(v["version"], v["aliases"]) for v in versions] == [(1, ["staging"]), (2, [])]
    assert "staging" in run("show", "iris@staging").stdout
    history = json.loads(run("history", "iris", "-o", "json").stdout)
    assert [entry["action"] for entry in history] == ["register", "register", "promote"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "iris:x"], 2, "model reference 'iris:x' is not valid"),
        (["show", "nope"], 1, "error: model 'nope' is not registered"),
        (["delete", "iris"], 2, "must name one version, as NAME:VERSION"),
        (["register", "iris", "/no/such/dir"], 2, "does not exist"),
        (["register", "iris", ".", "--metric", "acc=high"], 2, "'acc=high': 'high' is not a finite number"),
        (["register", "iris", ".", "--metric", "accuracy=nan"], 2, "'accuracy=nan': 'nan' is not a finite number"),
        (["register", "iris", ".", "--metrics-file", "METRICS"], 2, "metric 'f1' in 'METRICS' must be a finite number"),
        (["register", "bad/name", "."], 2, "model name 'bad/name' is not valid"),
        (["register", "iris", ".", "--tag", "owner"], 2, "'owner' must be KEY=VALUE"),
        (["register", "iris", ".", "--flavor", "f" * 200], 2, "is 200 characters long, but the registry keeps at most"),
        (["promote", "iris:1", "--to", "prod", "--force"], 2, "needs --reason"),
        (["promote", "iris:1", "--to", "Prod"], 2, "alias 'Prod' is not valid"),
        (["promote", "iris:1", "--to", "latest"], 2, "'latest' always means the newest version"),
        (["approve", "iris:1", "--alias", "Prod"], 2, "alias 'Prod' is not valid"),
        (["show"], 2, "Missing argument 'REF' (see `shipyard models show --help`)"),
        (["history", "nope"], 1, "error: model 'nope' is not registered"),
        (["history", "Bad Name!"], 2, "model name 'Bad Name!' is not valid"),
        (["versions", "Bad Name!"], 2, "model name 'Bad Name!' is not valid"),
    ],
)
def test_errors_are_one_line_with_exit_codes(
    database_url: str, args: list[str], code: int, message: str, tmp_path: Path
) -> None:
    (tmp_path / "m.json").write_text('{"f1": "high"}')
    message = message.replace("METRICS", str(tmp_path / "m.json"))
    result = run(*[str(tmp_path / "m.json") if arg == "METRICS" else arg for arg in args])
    assert result.exit_code == code
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_governed_promotion(database_url: str, model_dir: Path, shipyard_home: Path) -> None:
    (shipyard_home / "policies.yaml").write_text(
        "aliases:\n  production:\n    require: [candidate.metrics.accuracy >= 0.9]\n    approvals: 1\n"
    )
    run("register", "iris", str(model_dir), "--metric", "accuracy=0.95", "--user", "ana")
    dry = run("promote", "iris:1", "--to", "production", "--dry-run")
    assert dry.exit_code == 1
    assert "would be refused; nothing changed" in dry.stdout
    assert f"policy: aliases.production of {shipyard_home / 'policies.yaml'}" in dry.stdout
    unlisted = run("promote", "iris:1", "--to", "staging", "--dry-run")
    assert "policy: no policy for alias 'staging' in" in unlisted.stdout
    assert ": allowed by default" in unlisted.stdout
    refused = run("promote", "iris:1", "--to", "production")
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines() == [
        "error: promotion of iris:1 to 'production' refused by policy: needs 1 approval(s), has 0; "
        "fix these, or use --force --reason TEXT"
    ]
    # the registrant's own OS account cannot approve, whatever name it claims
    self_approval = run("approve", "iris:1", "--alias", "production", "--user", "bob")
    assert self_approval.exit_code == 1
    assert f"'{os_identity()}' registered iris:1 and cannot approve it" in self_approval.stderr
    with Registry.from_env(identity="bo@lab") as colleague:  # someone else, on their machine
        colleague.approve("iris:1", "production")
    promoted = run("promote", "iris:1", "--to", "production", "-o", "json")
    assert promoted.exit_code == 0
    assert json.loads(promoted.stdout)["verdict"]["rules"][0]["values"] == {"candidate.metrics.accuracy": 0.95}
    history = json.loads(run("history", "iris", "-o", "json").stdout)
    assert [(e["action"], e["actor"], e["claimed_user"]) for e in history] == [
        ("register", os_identity(), "ana"),
        ("promote_refused", os_identity(), None),
        ("approve", "bo@lab", None),
        ("promote", os_identity(), None),
    ]
    assert f"{os_identity()} (for ana)" in run("history", "iris").stdout


def test_bad_policy_file_is_reported_with_position(database_url: str, model_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("aliases:\n  production:\n    require:\n      - candidate.metrics.accuracy >=\n")
    run("register", "iris", str(model_dir))
    result = run("promote", "iris:1", "--to", "production", "--policies", str(policy))
    assert result.exit_code == 2
    assert f"error: {policy}:4:36: aliases.production.require.0: CEL expression" in result.stderr


def test_verify_download_and_delete(database_url: str, model_dir: Path, tmp_path: Path, shipyard_home: Path) -> None:
    run("register", "iris", str(model_dir))
    run("register", "iris", str(model_dir))
    assert "all 1 file(s) verified" in run("verify", "iris:1").stdout
    assert run("download", "iris:1", str(tmp_path / "out")).exit_code == 0
    assert (tmp_path / "out" / "model.onnx").read_bytes() == b"onnx-bytes"
    blob = next(p for p in (shipyard_home / "artifacts" / "blobs").rglob("*") if p.is_file())
    blob.write_bytes(b"tampered")
    broken = run("verify", "iris:1")
    assert broken.exit_code == 1
    assert f"error: model.onnx: expected sha256:{digest_of(b'onnx-bytes')}, found {digest_of(b'tampered')}" in (
        broken.stderr
    )
    assert run("delete", "iris:2").stdout.startswith("deleted iris:2 sha256:")
    assert [v["version"] for v in json.loads(run("versions", "iris", "-o", "json").stdout)] == [1]


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("corrupt-db", ["list"], "cannot open the database sqlite:///"),
        ("home-is-a-file", ["list"], "cannot be created (a file is in the way)"),
        ("unknown-protocol", ["list"], "artifact store nope://bucket: Protocol not known: nope"),
        ("artifacts-is-a-file", ["register", "m", "MODEL"], "a file is in the way of a folder it needs"),
        ("", ["register", "m", "/dev/null"], "model path '/dev/null' is neither a regular file nor a folder"),
    ],
)
def test_environment_problems_are_one_line(
    setup: str, args: list[str], message: str, model_dir: Path, tmp_path: Path, shipyard_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    if setup == "corrupt-db":
        (shipyard_home / "shipyard.db").write_text("not a database" * 100)
    elif setup == "home-is-a-file":
        (tmp_path / "file").write_text("x")
        monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "file"))
    elif setup == "unknown-protocol":
        monkeypatch.setenv("SHIPYARD_ARTIFACTS", "nope://bucket")
    elif setup == "artifacts-is-a-file":
        (tmp_path / "file").write_text("x")
        monkeypatch.setenv("SHIPYARD_ARTIFACTS", str(tmp_path / "file"))
    result = run(*[str(model_dir) if arg == "MODEL" else arg for arg in args])
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_register_profiles_parquet_decimals(database_url: str, model_dir: Path, tmp_path: Path) -> None:
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"price": pa.array([Decimal("1.25"), None], pa.decimal128(4, 2))}), tmp_path / "t.parquet")
    result = run("register", "m", str(model_dir), "--data", str(tmp_path / "t.parquet"))
    assert result.exit_code == 0, result.stderr
    shown = json.loads(run("show", "m:1", "-o", "json").stdout)
    assert shown["profile"]["columns"]["price"]["type"] == "number"


def test_tables_are_never_cut_when_stdout_is_not_a_terminal(
    database_url: str, model_dir: Path, shipyard_home: Path
) -> None:
    metric = "accuracy_on_the_rather_long_named_holdout_set_of_may"
    rule = f"candidate.metrics.{metric} >= 0.999 && candidate.metrics.{metric} >= 0.5"
    (shipyard_home / "policies.yaml").write_text(f"aliases:\n  production:\n    require: ['{rule}']\n")
    run("register", "iris", str(model_dir), "--metric", f"{metric}=0.9")
    dry = run("promote", "iris:1", "--to", "production", "--dry-run")
    assert rule in dry.stdout
    assert f"candidate.metrics.{metric}=0.9" in dry.stdout
    digest = json.loads(run("show", "iris:1", "-o", "json").stdout)["digest"]
    assert digest in run("show", "iris:1").stdout


def test_download_delete_and_approve_speak_json(database_url: str, model_dir: Path, tmp_path: Path) -> None:
    with Registry.from_env(identity="ana@lab") as colleague:
        digest = colleague.register("iris", model_dir).digest
        colleague.register("iris", model_dir)
    downloaded = json.loads(run("download", "iris:1", str(tmp_path / "out"), "-o", "json").stdout)
    assert downloaded == {"version": "iris:1", "digest": digest, "path": str((tmp_path / "out").resolve())}
    approved = json.loads(run("approve", "iris:1", "--alias", "production", "--user", "bo", "-o", "json").stdout)
    assert approved == {"approved": "iris:1", "alias": "production", "approver": os_identity(), "claimed_user": "bo"}
    assert json.loads(run("delete", "iris:2", "-o", "json").stdout) == {"deleted": "iris:2", "digest": digest}


def test_promoting_a_damaged_version_is_refused_in_one_line(
    database_url: str, model_dir: Path, shipyard_home: Path
) -> None:
    run("register", "iris", str(model_dir))
    next(p for p in (shipyard_home / "artifacts" / "blobs").rglob("*") if p.is_file()).write_bytes(b"tampered")
    result = run("promote", "iris:1", "--to", "production", "--force", "--reason", "hotfix")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: promotion of iris:1 to 'production' refused: its stored files fail verification (model.onnx: "
        f"expected sha256:{digest_of(b'onnx-bytes')}, found sha256:{digest_of(b'tampered')}); register the model "
        "again to repair its files (or restore the artifact store), then promote"
    ]


def test_a_forced_dry_run_says_it_would_be_forced_and_exits_0(
    database_url: str, model_dir: Path, shipyard_home: Path
) -> None:
    (shipyard_home / "policies.yaml").write_text("aliases:\n  production:\n    require: [has(candidate.tags.owner)]\n")
    run("register", "iris", str(model_dir))
    dry = run("promote", "iris:1", "--to", "production", "--dry-run", "--force", "--reason", "hotfix")
    assert dry.exit_code == 0, dry.output
    assert "dry run: iris:1 -> production would be forced past 1 failing rule(s); nothing changed" in dry.stdout
    assert run("promote", "iris:1", "--to", "production", "--dry-run").exit_code == 1
    forced = run("promote", "iris:1", "--to", "production", "--force", "--reason", "hotfix")
    assert (forced.exit_code, "promoted iris:1 -> production (forced)" in forced.stdout) == (0, True)


def test_a_damaged_record_is_listed_with_a_marker(database_url: str, model_dir: Path, tmp_path: Path) -> None:
    from sqlalchemy import update

    from shipyard.store import write_transaction
    from shipyard.store.tables import model_versions

    run("register", "iris", str(model_dir))
    run("register", "iris", str(model_dir))
    with Registry.from_env() as registry, write_transaction(registry.engine) as connection:
        connection.execute(update(model_versions).where(model_versions.c.version == 1).values(manifest="[]"))
    listed = run("versions", "iris")
    assert listed.exit_code == 0, listed.output
    assert [line.split()[1] for line in listed.stdout.splitlines() if "DAMAGED" in line] == ["1"]
    assert listed.stderr.startswith("warning: the record of iris:1 is damaged or was altered")
    shown = json.loads(run("versions", "iris", "-o", "json").stdout)
    assert [(v["version"], v["damaged"] is not None) for v in shown] == [(1, True), (2, False)]


def _big_model(root: Path, files: int = 40) -> Path:
    import os

    root.mkdir()
    for index in range(files):
        (root / f"shard-{index:02}.bin").write_bytes(os.urandom(1 << 20))
    return root


def _signal_when(args: list[str], ready: Callable[[], bool], signum: int) -> subprocess.CompletedProcess[str]:
    """Run `shipyard ARGS` in a child and send it `signum` once `ready()` holds (before it finishes)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "shipyard", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not ready():
        assert child.poll() is None, f"finished before the signal: {child.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)
    child.send_signal(signum)
    out, err = child.communicate(timeout=60)
    return subprocess.CompletedProcess(args, child.returncode, out, err)


def _staging(parent: Path) -> list[Path]:
    return [path for path in parent.glob(".*download-*") if path.is_dir()] if parent.exists() else []


def test_a_terminated_download_leaves_nothing_and_a_killed_one_is_swept_by_the_next(tmp_path: Path) -> None:
    """Files only: the default SQLite store is enough (the database plays no part in the cleanup)."""
    run("register", "big", str(_big_model(tmp_path / "big")))
    parent = tmp_path / "downloads"

    def midway() -> bool:
        return any(any(path.iterdir()) for path in _staging(parent))

    terminated = _signal_when(["models", "download", "big:1", str(parent / "a")], midway, signal.SIGTERM)
    assert terminated.returncode == 143, terminated.stderr
    assert terminated.stderr.splitlines()[-1].startswith("error: terminated (SIGTERM)")
    assert list(parent.iterdir()) == []
    killed = _signal_when(["models", "download", "big:1", str(parent / "b")], midway, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert len(_staging(parent)) == 1, "a killed process cannot clean up"
    assert run("download", "big:1", str(parent / "c")).exit_code == 0
    assert sorted(path.name for path in parent.iterdir()) == ["c"], "the next download swept the leftover"


def test_a_terminated_registration_leaves_no_temporary_blob(tmp_path: Path, shipyard_home: Path) -> None:
    model = _big_model(tmp_path / "big")
    blobs = shipyard_home / "artifacts" / "blobs"

    def uploading() -> bool:
        return blobs.exists() and any(".tmp-" in path.name for path in blobs.rglob("*"))

    terminated = _signal_when(["models", "register", "big", str(model)], uploading, signal.SIGTERM)
    assert terminated.returncode == 143, terminated.stderr
    assert [path for path in blobs.rglob("*") if ".tmp-" in path.name] == []
    assert [m["versions"] for m in json.loads(run("list", "-o", "json").stdout)] in ([], [0]), "no version"
    assert run("register", "big", str(model)).exit_code == 0
