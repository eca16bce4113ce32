"""What goes wrong in the registry; each message names the thing, the value and the remedy."""

from __future__ import annotations

from shipyard.errors import ShipyardError


class InvalidName(ShipyardError):
    status_code = 400

    def __init__(self, what: str, value: str, rule: str) -> None:
        super().__init__(f"{what} {value!r} is not valid: {rule}")


class ValueTooLong(ShipyardError):
    status_code = 400

    def __init__(self, what: str, value: str, limit: int) -> None:
        shown = value if len(value) <= 40 else value[:37] + "..."
        super().__init__(
            f"{what} {shown!r} is {len(value)} characters long, but the registry keeps at most {limit}; "
            f"pass a shorter {what}"
        )


class InvalidModelRef(ShipyardError):
    status_code = 400

    def __init__(self, ref: str) -> None:
        super().__init__(
            f"model reference {ref!r} is not valid; write NAME, NAME:VERSION or NAME@ALIAS "
            "(optionally prefixed with models:/), for example models:/iris@production"
        )


class ModelNotFound(ShipyardError):
    status_code = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} is not registered; see `shipyard models list` for the models there are")


class VersionNotFound(ShipyardError):
    status_code = 404

    def __init__(self, name: str, version: int) -> None:
        super().__init__(
            f"model {name!r} has no version {version}; see `shipyard models versions {name}` for its versions"
        )


class AliasNotFound(ShipyardError):
    status_code = 404

    def __init__(self, name: str, alias: str) -> None:
        super().__init__(
            f"model {name!r} has no alias {alias!r}; promote a version to it first "
            f"(`shipyard models promote {name}:VERSION --to {alias}`)"
        )


class VersionInUse(ShipyardError):
    status_code = 409

    def __init__(self, name: str, version: int, aliases: list[str], deployments: list[str]) -> None:
        users = [f"alias {alias!r}" for alias in aliases] + [f"deployment {api!r}" for api in deployments]
        remedies = []
        if aliases:
            remedies.append(f"promote another version to {_named('alias', 'aliases', aliases)}")
        if deployments:
            named = _named("deployment", "deployments", deployments)
            remedies.append(f"delete {named} (`shipyard delete API`) or redeploy with another model")
        super().__init__(
            f"model {name!r} version {version} is in use by {', '.join(users)}; {' and '.join(remedies)}, "
            "then delete it"
        )


class ArtifactMissing(ShipyardError):
    status_code = 404

    def __init__(self, path: str, digest: str, location: str) -> None:
        super().__init__(
            f"artifact file {path!r} (sha256:{digest}) is missing from the artifact store {location}; "
            "register the model again or restore the store from a backup"
        )


class ArtifactIntegrityError(ShipyardError):
    """A stored file's bytes do not hash to the digest recorded for it; it is never loaded."""

    status_code = 500

    def __init__(self, path: str, expected: str, actual: str, where: str) -> None:
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(
            f"artifact file {path!r} in {where} is corrupt or was altered: expected {_digest(expected)}, "
            f"found {_digest(actual)}; it was not loaded. Restore the store from a backup or register "
            "the model again"
        )


class ArtifactStoreUnavailable(ShipyardError):
    """The artifact store cannot be opened or written (missing fsspec package, unknown protocol, a file in
    the way, no permission)."""

    status_code = 503

    def __init__(self, location: str, problem: str, remedy: str) -> None:
        super().__init__(f"artifact store {location}: {problem}; {remedy}")


class UnreadablePath(ShipyardError):
    status_code = 400

    def __init__(self, what: str, path: str, problem: str) -> None:
        super().__init__(f"{what} {path!r} {problem}; pass a regular file or a folder that you can read")


class UploadChanged(ShipyardError):
    status_code = 409

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(
            f"file {path!r} changed while it was being registered (sha256:{expected} became "
            f"sha256:{actual}); wait until whatever writes it has finished, then register again"
        )


class DamagedVersionRecord(ShipyardError):
    """A version's stored manifest does not hash to the digest stored beside it: the row was altered."""

    status_code = 500

    def __init__(self, name: str, version: int, recorded: str, found: str) -> None:
        super().__init__(
            f"the record of {name}:{version} is damaged or was altered: it names digest {recorded}, but its "
            f"file manifest hashes to {found}; it is not used. Restore the database from a backup, or delete "
            f"the version (`shipyard models delete {name}:{version}`) and register the model again"
        )


class UnknownDigest(ShipyardError):
    """A local copy was recorded for a digest that no version in the registry has (any more)."""

    status_code = 404

    def __init__(self, digest: str) -> None:
        super().__init__(
            f"no version in the registry has digest {digest} (it was deleted?), so its local copy cannot be "
            "verified and is not loaded; register the model again and use the new version"
        )


class UnsafeManifestPath(ShipyardError):
    status_code = 500

    def __init__(self, path: str) -> None:
        super().__init__(
            f"manifest path {path!r} is absolute or leaves the model folder; the version record is damaged, "
            "register the model again"
        )


class SelfApproval(ShipyardError):
    status_code = 403

    def __init__(self, name: str, version: int, user: str) -> None:
        super().__init__(
            f"{user!r} registered {name}:{version} and cannot approve it (approvals count operating-system "
            f"accounts, whatever --user says); ask someone else to run `shipyard models approve "
            f"{name}:{version} --alias ALIAS` from their own account"
        )


class AlreadyApproved(ShipyardError):
    status_code = 409

    def __init__(self, name: str, version: int, alias: str, user: str) -> None:
        super().__init__(f"{user!r} has already approved {name}:{version} for alias {alias!r}; nothing to do")


class ForceWithoutReason(ShipyardError):
    status_code = 400

    def __init__(self) -> None:
        super().__init__("--force skips the governance rules and needs --reason TEXT saying why")


class PromotionRefused(ShipyardError):
    """The policy refused; `failures` lists each failed rule or missing approval in one line."""

    status_code = 403

    def __init__(self, name: str, version: int, alias: str, failures: list[str]) -> None:
        self.failures = failures
        super().__init__(
            f"promotion of {name}:{version} to {alias!r} refused by policy: {'; '.join(failures)}; "
            "fix these, or use --force --reason TEXT"
        )


class CandidateDamaged(ShipyardError):
    """A version whose stored files fail verification is never promoted, not even with --force."""

    status_code = 409

    def __init__(self, name: str, version: int, alias: str, problem: str) -> None:
        super().__init__(
            f"promotion of {name}:{version} to {alias!r} refused: {problem}; register the model again to "
            "repair its files (or restore the artifact store), then promote"
        )


def _named(one: str, many: str, names: list[str]) -> str:
    return f"{one if len(names) == 1 else many} {', '.join(repr(name) for name in names)}"


def _digest(value: str) -> str:
    """`sha256:<hex>` for a digest, the text itself for a placeholder such as "(absent)"."""
    return f"sha256:{value}" if len(value) == 64 else value
