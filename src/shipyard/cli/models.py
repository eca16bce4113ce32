"""`shipyard models ...`: register, inspect, verify, promote and approve model versions.

Talks to the store directly (no daemon needed). Human tables by default, `-o json` for scripts.
"""

from __future__ import annotations

import json
import math
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
import orjson
from rich.table import Table

from shipyard.cli.output import print_table, reports_errors
from shipyard.registry.errors import InvalidModelRef, InvalidName, ValueTooLong
from shipyard.registry.refs import ModelRef, check_alias, check_length, check_name, parse_ref

if TYPE_CHECKING:  # the store, CEL and the artifact store load when a command runs, not for `--help`
    from shipyard.registry import ModelVersion, PromotionOutcome, Registry

_OUTPUT = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)
_USER = click.option(
    "--user",
    metavar="NAME",
    help="Whom you act for; recorded beside your OS account, which stays the actor (and the approver).",
)


@contextmanager
def _registry() -> Iterator[Registry]:
    from shipyard.registry import open_registry

    with open_registry() as registry:
        yield registry


def _emit_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _ref(_ctx: click.Context, param: click.Parameter, value: str) -> ModelRef:
    try:
        return parse_ref(value)
    except (InvalidModelRef, InvalidName) as exc:
        raise click.BadParameter(exc.message, param=param) from None


def _name(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_name(value)
    except InvalidName as exc:
        raise click.BadParameter(exc.message, param=param) from None


def _alias(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_alias(value)
    except InvalidName as exc:
        raise click.BadParameter(exc.message, param=param) from None


def _flavor(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        from shipyard.registry.service import FLAVOR_LENGTH

        return check_length("flavor", value, FLAVOR_LENGTH)
    except ValueTooLong as exc:
        raise click.BadParameter(exc.message, param=param) from None


def _finite(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def _pinned(ctx: click.Context, param: click.Parameter, value: str) -> ModelRef:
    ref = _ref(ctx, param, value)
    if ref.version is None:
        raise click.BadParameter(f"{value!r} must name one version, as NAME:VERSION (for example iris:3)")
    return ref


def _pairs(
    convert: Callable[[str], Any],
) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], dict[str, Any]]:
    def parse(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for item in values:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{item!r} must be KEY=VALUE", param=param)
            try:
                found[key] = convert(raw)
            except ValueError:
                raise click.BadParameter(f"{item!r}: {raw!r} is not a finite number", param=param) from None
        return found

    return parse


@click.group()
@click.pass_context
def models(ctx: click.Context) -> None:
    """The model registry: versions, aliases, governance and the audit log."""
    _clean_up_on_sigterm(ctx)


def _clean_up_on_sigterm(ctx: click.Context) -> None:
    """SIGTERM unwinds like Ctrl-C does, so an upload's temporary blob or a download's staging folder is
    removed on the way out (exit code 143); the previous handler is back when the command ends."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread (an embedding program's worker)

    def terminate(signum: int, _frame: FrameType | None) -> None:
        click.echo("error: terminated (SIGTERM); nothing half done is left behind", err=True)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    if previous is not None:  # None: a handler Python did not install, which it cannot put back
        ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, previous))


@models.command()
@click.argument("name", callback=_name)
@click.argument("path", type=click.Path(exists=True))
@click.option("--metric", "metrics", multiple=True, callback=_pairs(_finite), metavar="K=V", help="A metric (number).")
@click.option("--metrics-file", type=click.Path(exists=True, dir_okay=False), help="JSON object of metrics.")
@click.option("--param", "params", multiple=True, callback=_pairs(str), metavar="K=V", help="A training parameter.")
@click.option("--tag", "tags", multiple=True, callback=_pairs(str), metavar="K=V", help="A tag, e.g. owner=ana.")
@click.option("--data", multiple=True, type=click.Path(exists=True), help="Training data file or folder.")
@click.option("--code", type=click.Path(exists=True, file_okay=False), help="Source folder (git or digest).")
@click.option("--description", default="", help="What this version is.")
@click.option(
    "--flavor", callback=_flavor, help="Handler hint, e.g. sklearn or onnx (guessed from the files otherwise)."
)
@click.option("--parent-run-id", help="The training run this version came from.")
@_USER
@_OUTPUT
@reports_errors
def register(
    name: str,
    path: str,
    metrics: dict[str, float],
    metrics_file: str | None,
    params: dict[str, str],
    tags: dict[str, str],
    data: tuple[str, ...],
    code: str | None,
    description: str,
    flavor: str | None,
    parent_run_id: str | None,
    user: str | None,
    output: str,
) -> None:
    """Register the model file or folder PATH as the next version of NAME."""
    all_metrics = _metrics_file(metrics_file) | metrics
    with _registry() as registry:
        version = registry.register(
            name,
            path,
            metrics=all_metrics,
            params=params,
            tags=tags,
            data=data,
            code=code,
            description=description,
            flavor=flavor,
            parent_run_id=parent_run_id,
            on_behalf_of=user,
        )
    if output == "json":
        _emit_json(version.to_dict(full=False))
    else:
        click.echo(f"{version.ref} {version.digest}")


def _metrics_file(path: str | None) -> dict[str, float]:
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path!r} is not readable JSON: {exc}", param_hint="--metrics-file") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path!r} must hold a JSON object of name: number", param_hint="--metrics-file")
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise click.BadParameter(
                f"metric {key!r} in {path!r} must be a finite number, got {value!r}", param_hint="--metrics-file"
            )
    return data


@models.command("list")
@_OUTPUT
@reports_errors
def list_(output: str) -> None:
    """Every registered model with its newest version and aliases."""
    with _registry() as registry:
        found = registry.list_models()
    if output == "json":
        _emit_json(
            [
                {
                    "name": m.name,
                    "versions": m.versions,
                    "latest": m.latest,
                    "aliases": m.aliases,
                    "created_at": m.created_at.isoformat(),
                }
                for m in found
            ]
        )
        return
    table = Table("NAME", "VERSIONS", "LATEST", "ALIASES")
    for model in found:
        aliases = ", ".join(f"{alias}→{version}" for alias, version in model.aliases.items())
        table.add_row(model.name, str(model.versions), str(model.latest or "-"), aliases or "-")
    print_table(table)


@models.command()
@click.argument("ref", callback=_ref)
@_OUTPUT
@reports_errors
def show(ref: ModelRef, output: str) -> None:
    """One version (REF is NAME, NAME:VERSION or NAME@ALIAS): metrics, lineage, files."""
    with _registry() as registry:
        version = registry.get(ref)
    if output == "json":
        _emit_json(version.to_dict())
        return
    table = Table("FIELD", "VALUE", show_header=False)
    for key, value in _summary_rows(version):
        table.add_row(key, value)
    print_table(table)


def _summary_rows(version: ModelVersion) -> Iterator[tuple[str, str]]:
    lineage = version.lineage
    yield "version", version.ref
    yield "digest", version.digest
    yield "size", f"{version.size} bytes in {len(version.manifest.files)} file(s)"
    yield "aliases", ", ".join(version.aliases) or "-"
    yield "flavor", version.flavor or "-"
    yield "created", f"{version.created_at:%Y-%m-%d %H:%M:%S} UTC by {version.created_by}"
    yield "description", version.description or "-"
    yield "metrics", _kv(version.metrics)
    yield "params", _kv(version.params)
    yield "tags", _kv(version.tags)
    yield (
        "data",
        ", ".join(f"{item['path']} ({item['digest'][:19]})" for item in lineage.get("data", [])) or "-",
    )
    yield "code", _code(lineage.get("code", {})) if lineage.get("code_captured", True) else _NO_CODE
    yield "python", lineage.get("python", {}).get("version", "-")
    if version.profile:
        yield "profile", _profile_line(version.profile)


def _profile_line(profile: dict[str, Any]) -> str:
    rows = f"{profile['rows']} rows"
    if profile.get("truncated"):
        total = profile.get("rows_total")
        rows = f"the first {profile['rows']} rows of {total if total is not None else 'more'} (the row limit)"
    return f"{rows}, columns: {', '.join(profile['columns'])}"


_NO_CODE = "not captured (registered outside a git tree without --code DIR)"


def _kv(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in values.items()) or "-"


def _code(code: dict[str, Any]) -> str:
    if "git_commit" in code:
        return f"git {code['git_commit'][:12]}{' (dirty)' if code['git_dirty'] else ''}"
    return f"source {code['source_digest'][:19]}" if "source_digest" in code else "-"


@models.command()
@click.argument("name", callback=_name)
@_OUTPUT
@reports_errors
def versions(name: str, output: str) -> None:
    """Every version of NAME, oldest first; a damaged record is marked DAMAGED."""
    with _registry() as registry:
        found = registry.list_versions(name)
    if output == "json":
        _emit_json([version.to_dict(full=False) for version in found])
        return
    table = Table("VERSION", "DIGEST", "ALIASES", "METRICS", "CREATED", "BY")
    for version in found:
        table.add_row(
            str(version.version),
            version.digest[:19] + (" [red]DAMAGED[/red]" if version.damaged else ""),
            ", ".join(version.aliases) or "-",
            _kv(version.metrics),
            f"{version.created_at:%Y-%m-%d %H:%M}",
            version.created_by,
        )
    print_table(table)
    for version in found:
        if version.damaged:
            click.echo(f"warning: {version.damaged}", err=True)


@models.command()
@click.argument("ref", callback=_ref)
@click.argument("directory", type=click.Path(file_okay=False))
@_OUTPUT
@reports_errors
def download(ref: ModelRef, directory: str, output: str) -> None:
    """Copy a version's files into DIRECTORY (new or empty), verifying each."""
    with _registry() as registry:
        version = registry.download(ref, directory)
    if output == "json":
        _emit_json({"version": version.ref, "digest": version.digest, "path": str(Path(directory).resolve())})
    else:
        click.echo(f"{version.ref} {version.digest} -> {directory}")


@models.command()
@click.argument("ref", callback=_ref)
@_OUTPUT
@reports_errors
def verify(ref: ModelRef, output: str) -> None:
    """Re-hash every stored file of a version; exit 1 if any differs from its manifest."""
    with _registry() as registry:
        version, problems = registry.verify(ref)
    if output == "json":
        _emit_json(
            {
                "version": version.ref,
                "digest": version.digest,
                "ok": not problems,
                "problems": [p.__dict__ for p in problems],
            }
        )
    elif not problems:
        click.echo(f"{version.ref} {version.digest}: all {len(version.manifest.files)} file(s) verified")
    for problem in problems:
        click.echo(f"error: {problem.path}: expected sha256:{problem.expected}, found {problem.actual}", err=True)
    if problems:
        raise SystemExit(1)


@models.command()
@click.argument("name", callback=_name)
@_OUTPUT
@reports_errors
def history(name: str, output: str) -> None:
    """The audit log of NAME: registrations, approvals, promotions (allowed or refused), deletions."""
    with _registry() as registry:
        entries = registry.history(name)
    if output == "json":
        _emit_json([entry.to_dict() | {"claimed_user": entry.claimed_user} for entry in entries])
        return
    table = Table("WHEN", "WHO", "ACTION", "VERSION", "ALIAS", "FROM", "FORCED", "REASON")
    for entry in entries:
        table.add_row(
            f"{entry.at:%Y-%m-%d %H:%M:%S}" if entry.at else "-",
            entry.actor + (f" (for {entry.claimed_user})" if entry.claimed_user else ""),
            str(entry.action),
            _dash(entry.version),
            entry.alias or "-",
            _dash(entry.from_version),
            "yes" if entry.forced else "-",
            entry.reason or "-",
        )
    print_table(table)


def _dash(value: int | None) -> str:
    return "-" if value is None else str(value)


@models.command()
@click.argument("ref", metavar="NAME:VERSION", callback=_pinned)
@_USER
@_OUTPUT
@reports_errors
def delete(ref: ModelRef, user: str | None, output: str) -> None:
    """Delete one version; refused while an alias or a deployment uses it."""
    assert ref.version is not None
    with _registry() as registry:
        deleted = registry.delete(ref.name, ref.version, on_behalf_of=user)
    if output == "json":
        _emit_json({"deleted": deleted.ref, "digest": deleted.digest})
    else:
        click.echo(f"deleted {deleted.ref} {deleted.digest}")


@models.command()
@click.argument("ref", callback=_ref)
@click.option("--to", "alias", required=True, callback=_alias, help="The alias to move, e.g. production.")
@click.option("--reason", default="", help="Why; recorded in the audit log (required with --force).")
@click.option("--dry-run", is_flag=True, help="Evaluate the rules and print them; change nothing.")
@click.option("--force", is_flag=True, help="Skip the rules (needs --reason); recorded as forced.")
@click.option(
    "--policies",
    type=click.Path(exists=True, dir_okay=False),
    help="Policy file (default: SHIPYARD_HOME/policies.yaml).",
)
@_USER
@_OUTPUT
@reports_errors
def promote(
    ref: ModelRef,
    alias: str,
    reason: str,
    dry_run: bool,
    force: bool,
    policies: str | None,
    user: str | None,
    output: str,
) -> None:
    """Point ALIAS at the version REF names, once the governance policy allows it."""
    if force and not reason.strip():
        raise click.UsageError("--force skips the governance rules and needs --reason TEXT saying why")
    with _registry() as registry:
        outcome = registry.promote(
            ref, alias, on_behalf_of=user, reason=reason, dry_run=dry_run, force=force, policies=policies
        )
    if output == "json":
        _emit_json(outcome.to_dict())
        _exit_if_refused(outcome)
    else:
        _print_outcome(outcome)
        outcome.raise_for_refusal()
        _exit_if_refused(outcome)


def _exit_if_refused(outcome: PromotionOutcome) -> None:
    """Exit 1 when the alias did not move, or (dry run) would not: a pipeline can gate on it."""
    if not (outcome.applied or (outcome.dry_run and (outcome.verdict.allowed or outcome.forced))):
        raise SystemExit(1)


def _print_outcome(outcome: PromotionOutcome) -> None:
    verdict = outcome.verdict
    click.echo(f"policy: {verdict.policy}")
    if verdict.denial:
        click.echo(f"denied: {verdict.denial}")
    if verdict.rules:
        table = Table("RULE", "RESULT", "VALUES")
        for rule in verdict.rules:
            result = "[green]pass[/green]" if rule.passed else f"[red]FAIL[/red] {rule.error or ''}".rstrip()
            values = ", ".join(f"{key}={value!r}" for key, value in rule.values.items())
            table.add_row(rule.expression, result, values or "-")
        print_table(table)
    if verdict.approvals_required:
        names = ", ".join(verdict.approvers) or "none"
        click.echo(f"approvals: {len(verdict.approvers)} of {verdict.approvals_required} ({names})")
    if outcome.current_damaged:
        click.echo(f"warning: {outcome.alias!r} points at a damaged record now: {outcome.current_damaged}", err=True)
    target = f"{outcome.name}:{outcome.version} -> {outcome.alias}"
    previous = f" (was {outcome.from_version})" if outcome.from_version else ""
    if outcome.dry_run:
        click.echo(f"dry run: {target} would be {_would(outcome)}; nothing changed")
    elif outcome.applied:
        click.echo(f"promoted {target}{previous}{' (forced)' if outcome.forced else ''}")


def _would(outcome: PromotionOutcome) -> str:
    if outcome.verdict.allowed:
        return "allowed"
    if outcome.forced:
        return f"forced past {len(outcome.verdict.failures())} failing rule(s)"
    return "refused"


@models.command()
@click.argument("ref", metavar="NAME:VERSION", callback=_pinned)
@click.option("--alias", required=True, callback=_alias, help="The alias this approval is for.")
@click.option("--comment", default="", help="What was checked.")
@_USER
@_OUTPUT
@reports_errors
def approve(ref: ModelRef, alias: str, comment: str, user: str | None, output: str) -> None:
    """Approve a version for an alias (your OS account must not be the one that registered it)."""
    with _registry() as registry:
        registry.approve(ref, alias, comment=comment, on_behalf_of=user)
        approver = registry.identity
    if output == "json":
        _emit_json({"approved": str(ref), "alias": alias, "approver": approver, "claimed_user": user})
    else:
        click.echo(f"approved {ref} for {alias!r} as {approver}")
