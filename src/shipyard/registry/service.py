"""The registry's composition root: the store, the artifact store and the policies, wired together.

Each method is one transaction over the functions of versions, aliases, approvals, promotion and audit.
Files are uploaded before the transaction that records the version begins, so a crash at any point of
a registration leaves either no version or a complete one.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, SupportsFloat

from sqlalchemy import Engine

from shipyard.errors import ConfigError, ShipyardError
from shipyard.governance import Policies, load_policies_file
from shipyard.registry import approvals, audit, leftovers, promotion, versions
from shipyard.registry.artifacts import ArtifactStore, remove_tree, safe_join
from shipyard.registry.audit import Action, AuditEntry
from shipyard.registry.checkout import Difference, checkout
from shipyard.registry.errors import ArtifactIntegrityError, ArtifactMissing, ForceWithoutReason
from shipyard.registry.identity import MAX_IDENTITY, os_identity
from shipyard.registry.lineage import capture_lineage
from shipyard.registry.manifest import Manifest, build_manifest
from shipyard.registry.profile import profile_data
from shipyard.registry.refs import ModelRef, check_alias, check_length, check_name, parse_ref
from shipyard.settings import Settings
from shipyard.store import create_store_engine, migrate, read_transaction, write_transaction
from shipyard.store.tables import model_versions

POLICY_FILE = "policies.yaml"
log = logging.getLogger("shipyard.registry")
FLAVOR_LENGTH: int = model_versions.c.flavor.type.length  # type: ignore[attr-defined]
_FLAVORS = {".onnx": "onnx", ".skops": "sklearn", ".joblib": "sklearn", ".pkl": "sklearn"}


class BadModelInput(ShipyardError):
    status_code = 400


@dataclass(frozen=True)
class ResolvedModel:
    """A version whose files sit, verified, in a local folder."""

    name: str
    version: int
    digest: str
    path: Path


class Registry:
    """The registry, acting as `identity`: by default the OS account running this process (identity.py).

    Every method that changes something records `identity` as the actor; an `on_behalf_of` name is kept
    beside it in the audit log and never replaces it.
    """

    def __init__(self, engine: Engine, artifacts: ArtifactStore, home: Path, identity: str | None = None) -> None:
        self.engine = engine
        self.artifacts = artifacts
        self.home = home
        self.identity = check_length("identity", identity, MAX_IDENTITY) or os_identity()
        migrate(engine)

    @classmethod
    def from_settings(cls, settings: Settings, identity: str | None = None) -> Registry:
        engine = create_store_engine(settings.database_url)
        return cls(engine, ArtifactStore(settings.artifacts), settings.home, identity)

    @classmethod
    def from_env(cls, identity: str | None = None) -> Registry:
        return cls.from_settings(Settings.from_env(), identity)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    # -- registration ------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        metrics: Mapping[str, SupportsFloat] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = (),
        code: str | os.PathLike[str] | None = None,
        description: str = "",
        flavor: str | None = None,
        parent_run_id: str | None = None,
        on_behalf_of: str | None = None,
    ) -> versions.ModelVersion:
        check_name(name)
        check_length("flavor", flavor, FLAVOR_LENGTH)
        data = as_paths(data)
        manifest = _model_manifest(path)
        new = versions.NewVersion(
            manifest=manifest,
            created_by=self.identity,
            flavor=flavor or guess_flavor(manifest),
            description=description,
            metrics=_metrics(metrics or {}),
            params=_strings("param", params or {}),
            tags=_strings("tag", tags or {}),
            lineage=capture_lineage(data, code, parent_run_id),
            profile=profile_data(data),
        )
        if new.profile and new.profile.get("truncated"):
            total = new.profile.get("rows_total")
            log.warning(
                "the reference profile covers the first %d rows of the training data, of %s",
                new.profile["rows"],
                total if total is not None else "more (the total of CSV and JSON lines files is not counted)",
            )
        uploaded = self.artifacts.upload(path, manifest)
        with write_transaction(self.engine) as connection:
            created = versions.create_version(connection, name, new)
            audit.record(
                connection,
                AuditEntry(
                    Action.REGISTER,
                    name,
                    new.created_by,
                    version=created.version,
                    details={"digest": created.digest, "files": len(manifest.files), "size": manifest.size}
                    | ({"repaired_blobs": uploaded.repaired} if uploaded.repaired else {})
                    | audit.claimed(self.identity, on_behalf_of),
                ),
            )
        return created

    # -- reading -----------------------------------------------------------------------------------

    def get(self, ref: str | ModelRef) -> versions.ModelVersion:
        with read_transaction(self.engine) as connection:
            return versions.get_version(connection, _ref(ref))

    def list_models(self) -> list[versions.ModelSummary]:
        with read_transaction(self.engine) as connection:
            return versions.list_models(connection)

    def list_versions(self, name: str) -> list[versions.ModelVersion]:
        with read_transaction(self.engine) as connection:
            return versions.list_versions(connection, name)

    def history(self, name: str) -> list[AuditEntry]:
        """The model's audit log, oldest first; ModelNotFound for a model never registered."""
        with read_transaction(self.engine) as connection:
            versions.model_id(connection, name)
            return audit.history(connection, name)

    # -- files -------------------------------------------------------------------------------------

    def resolve(self, ref: str | ModelRef) -> ResolvedModel:
        """The version `ref` names, checked out into a local folder whose every file was verified."""
        found = self.get(ref)
        folder = checkout(self.artifacts, found.manifest, self.home / "models")
        return ResolvedModel(found.name, found.version, found.digest, folder)

    def download(self, ref: str | ModelRef, destination: str | os.PathLike[str]) -> versions.ModelVersion:
        """Copy a version's files into `destination` (new or empty), each verified as it is copied.

        The files are gathered in a staging folder beside `destination`, which takes its name only once
        all are there: a failed download leaves `destination` as it was.
        """
        found = self.get(ref)
        target = Path(destination)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise BadModelInput(
                f"download destination {str(target)!r} is not an empty folder; pass a new or empty folder"
            )
        leftovers.sweep(target.parent, "download")  # what a killed download left here
        staging = leftovers.staging_path(target, "download")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.artifacts.materialize(found.manifest, staging)
            if target.exists():
                target.rmdir()  # empty, checked above
            staging.rename(target)
        finally:
            remove_tree(staging)
        return found

    def verify(self, ref: str | ModelRef) -> tuple[versions.ModelVersion, list[Difference]]:
        """Re-hash every stored blob of a version; the differences found (empty when all is well)."""
        found = self.get(ref)
        return found, self._differences(found)

    def _differences(self, found: versions.ModelVersion) -> list[Difference]:
        problems = []
        for entry in found.manifest.files:
            try:
                actual = self.artifacts.check(entry)
            except ArtifactMissing:
                actual = "(absent)"
            if actual != entry.sha256:
                problems.append(Difference(entry.path, entry.sha256, actual))
        return problems

    # -- changes -----------------------------------------------------------------------------------

    def delete(self, name: str, version: int, on_behalf_of: str | None = None) -> versions.ModelVersion:
        with write_transaction(self.engine) as connection:
            versions.lock_model(connection, name)
            deleted = versions.delete_version(connection, name, version)
            audit.record(
                connection,
                AuditEntry(
                    Action.DELETE,
                    name,
                    self.identity,
                    version=version,
                    details={"digest": deleted.digest} | audit.claimed(self.identity, on_behalf_of),
                ),
            )
        return deleted

    def approve(self, ref: str | ModelRef, alias: str, comment: str = "", on_behalf_of: str | None = None) -> None:
        check_alias(alias)
        who = self.identity
        with write_transaction(self.engine) as connection:
            versions.lock_model(connection, _ref(ref).name)
            found = versions.get_version(connection, _ref(ref))
            approvals.approve(connection, found, alias, who, comment)
            audit.record(
                connection,
                AuditEntry(
                    Action.APPROVE,
                    found.name,
                    who,
                    version=found.version,
                    alias=alias,
                    reason=comment,
                    details=audit.claimed(who, on_behalf_of),
                ),
            )

    def promote(
        self,
        ref: str | ModelRef,
        alias: str,
        *,
        on_behalf_of: str | None = None,
        reason: str = "",
        dry_run: bool = False,
        force: bool = False,
        policies: Policies | str | os.PathLike[str] | None = None,
    ) -> promotion.PromotionOutcome:
        """Evaluate the policy and move the alias when it allows; check `.applied` on the outcome.

        Unless this is a dry run, the candidate's stored files are verified first (before any lock is
        taken): a version whose files fail is refused, forced or not, and the attempt is logged.
        """
        check_alias(alias)
        if force and not reason.strip():
            raise ForceWithoutReason()
        rules = policies if isinstance(policies, Policies) else self.policies(policies)
        target, damaged = _ref(ref), None
        if not dry_run:
            found = self.get(target)
            target = ModelRef(found.name, found.version)  # the version verified is the one promoted
            damaged = _damage(self._differences(found))
        request = promotion.PromotionRequest(
            target, alias, self.identity, reason, dry_run, force, on_behalf_of=on_behalf_of, damaged=damaged
        )
        with write_transaction(self.engine) as connection:
            return promotion.promote(connection, rules, request)

    def policies(self, path: str | os.PathLike[str] | None = None) -> Policies:
        """The policies in `path`, else in SHIPYARD_HOME/policies.yaml, else none.

        Anything at SHIPYARD_HOME/policies.yaml (a folder, a dangling link, an unreadable file) is loaded
        and fails clearly: governance never turns itself off because the file cannot be read. A lone
        policies.yml is refused rather than ignored.
        """
        if path is not None:
            return load_policies_file(path)
        default = self.home / POLICY_FILE
        misnamed = default.with_suffix(".yml")
        if os.path.lexists(default):
            if os.path.lexists(misnamed):
                log.warning("%s is ignored: Shipyard reads %s; remove one of them", misnamed, default)
            return load_policies_file(default)
        if os.path.lexists(misnamed):
            raise ConfigError(
                [f"{misnamed}: Shipyard reads the policies from {default}, not {misnamed.name}; rename the file"]
            )
        return Policies()


@contextmanager
def open_registry(settings: Settings | None = None) -> Iterator[Registry]:
    registry = Registry.from_settings(settings or Settings.from_env())
    try:
        yield registry
    finally:
        registry.close()


def guess_flavor(manifest: Manifest) -> str | None:
    kinds = {_FLAVORS.get(Path(entry.path).suffix.lower()) for entry in manifest.files} - {None}
    return kinds.pop() if len(kinds) == 1 else None


def _ref(ref: str | ModelRef) -> ModelRef:
    return ref if isinstance(ref, ModelRef) else parse_ref(ref)


def _damage(problems: list[Difference]) -> str | None:
    """What verification found, in one line; None when every file matched."""
    if not problems:
        return None
    shown = "; ".join(f"{p.path}: expected {_sha(p.expected)}, found {_sha(p.actual)}" for p in problems[:3])
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    return f"its stored files fail verification ({shown}{more})"


def _sha(value: str) -> str:
    return f"sha256:{value}" if len(value) == 64 else value


def as_paths(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str | os.PathLike[str]]:
    """One path or several: a single "train.csv" is one file, not a sequence of characters."""
    if isinstance(data, str | os.PathLike):
        return [data]
    return list(data)


def _model_manifest(path: str | os.PathLike[str]) -> Manifest:
    manifest = build_manifest(path)
    if not manifest.files:
        raise BadModelInput(f"model folder {str(path)!r} holds no files; pass the folder your training wrote")
    for entry in manifest.files:
        safe_join(Path("."), entry.path)
    return manifest


def _metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics as floats: any real number (numpy's float32 and int64 too), but not a boolean."""
    found: dict[str, float] = {}
    for key, value in metrics.items():
        number = _real(value)
        if number is None or not math.isfinite(number):
            raise BadModelInput(f"metric {key!r} must be a finite number, got {value!r}; pass for example {key}=0.93")
        found[str(key)] = number
    return found


def _real(value: Any) -> float | None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:  # a Fraction or integer beyond the float range
        return None


def _strings(what: str, values: Mapping[str, Any]) -> dict[str, str]:
    for key, value in values.items():
        if isinstance(value, dict | list):
            raise BadModelInput(f"{what} {key!r} must be a single value, got {value!r}; pass {what} {key}=VALUE")
    return {str(key): str(value) for key, value in values.items()}


__all__ = ["ArtifactIntegrityError", "Registry", "ResolvedModel", "open_registry"]
