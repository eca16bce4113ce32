"""`shipyard deploy`, `get`, `predict`, `logs`, `refresh`, `delete`: thin commands over `shipyard.Client`."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from shipyard.cli.output import reports_errors
from shipyard.errors import ConfigError

_COLUMNS = (
    ("NAME", "name"),
    ("STATUS", "status"),
    ("READY", "ready"),
    ("DESIRED", "desired"),
    ("UP-TO-DATE", "up_to_date"),
    ("REQ/S", "requests_per_second"),
    ("P50 MS", "p50_ms"),
    ("P99 MS", "p99_ms"),
    ("2XX", "2xx"),
    ("4XX", "4xx"),
    ("5XX", "5xx"),
    ("ENDPOINT", "endpoint"),
    ("LAST UPDATE", "updated_at"),
)


@click.command()
@click.argument("path", default=".", type=click.Path())
@click.option("--no-wait", is_flag=True, help="Return once recorded, without waiting for the APIs to be ready.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for the rollout.")
@click.option("--force", is_flag=True, help="Take over APIs of the same name that another project deployed.")
@reports_errors
def deploy(path: str, no_wait: bool, timeout: float, force: bool) -> None:
    """Deploy the APIs of PATH (a project directory or a yaml file) and wait until they serve."""
    from shipyard.client import Client

    with Client() as client:
        changes = client.deploy(path, force=force)
        for change in changes:
            click.echo(f"{change['name']}: {change['outcome']} ({change['kind']} {change['version']})".rstrip())
        served = [c["name"] for c in changes if c["outcome"] != "skipped"]
        if no_wait or not served:
            return
        shown: dict[str, str] = {}
        apis = client.wait(served, timeout=timeout, on_progress=lambda found: _progress(found, shown))
    for api in apis:
        click.echo(f"{api['name']}: live at {api['endpoint']}")


def _progress(found: list[dict[str, Any]], shown: dict[str, str]) -> None:
    for api in found:
        if api["desired"] is None:
            line = api["status"]
        else:
            line = f"{api['status']}: {api['ready']}/{api['desired']} ready, {api['up_to_date']} up to date"
        if shown.get(api["name"]) != line:
            shown[api["name"]] = line
            click.echo(f"  {api['name']}: {line}")


@click.command()
@click.argument("api", required=False)
@click.option("-w", "--watch", is_flag=True, help="Refresh every second until Ctrl-C.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "--events", type=click.IntRange(1, 10_000), default=20, show_default=True, help="With API: how many recent events."
)
@reports_errors
def get(api: str | None, watch: bool, output: str, events: int) -> None:
    """Every API's status and traffic over the last minute; with API, its replicas, model and events."""
    from shipyard.client import Client

    with Client() as client:
        try:
            while True:
                found = client.get(api, events=events) if api else client.get()
                text = json.dumps(found, indent=2) if output == "json" else _render(found, api, time.time())
                if watch and sys.stdout.isatty():
                    click.clear()
                click.echo(text)
                if not watch:
                    return
                time.sleep(1.0)
        except KeyboardInterrupt:
            return  # Ctrl-C is how a watch ends: exit 0, quietly


def _render(found: Any, api: str | None, now: float) -> str:
    if api is None:
        rows = [[_cell(row, key, now) for _, key in _COLUMNS] for row in found]
        return _table(rows, [title for title, _ in _COLUMNS])
    return _detail(found, now)


def _detail(found: dict[str, Any], now: float) -> str:
    """The API's row, then each section that has something to say, one blank line between them."""
    sections = [_table([[_cell(found, key, now) for _, key in _COLUMNS]], [title for title, _ in _COLUMNS])]
    if found.get("message"):
        sections.append(f"why: {found['message']}")
    model = found.get("model")
    if model:
        sections.append(_model(model))
    if found.get("replicas"):
        rows = [
            [r["id"], r["version"], _state(r), str(r["restarts"]), r["last_error"] or "-"] for r in found["replicas"]
        ]
        sections.append(_table(rows, ["REPLICA", "VERSION", "STATE", "RESTARTS", "LAST ERROR"]))
    if found.get("targets") is not None:
        sections.append(_targets(found["targets"]))
    if found.get("shadows") is not None:
        sections.append(_shadows(found["shadows"]))
    events = [[_time(e["at"], now), e["kind"], e["message"]] for e in collapse(found.get("events", []))]
    sections.append(_table(events, ["WHEN", "EVENT", "MESSAGE"]) if events else "no events")
    return "\n\n".join(sections)


def _model(model: dict[str, Any]) -> str:
    pinned = f" → {model['name']}:{model['version']}" if model["name"] else ""
    line = f"model: {model['ref']}{pinned} {model['digest'] or ''}".rstrip()
    alias = model.get("alias")
    if alias and alias.get("holds") is not None and alias["holds"] != model["version"]:
        served = f"serving {model['name']}:{model['version']}, alias {alias['name']} → {model['name']}:{alias['holds']}"
        why = f"rollout failed because {alias['error']}" if alias.get("error") else "rolling out"
        line += f"\n{served}: {why}"
    return line


def _state(replica: dict[str, Any]) -> str:
    """`starting for 12s`, `ready for 3m, not answering (2 checks)`: its state, for how long, and whether it
    fails its health checks (and has left the gateway for it)."""
    state = str(replica["state"])
    seconds = replica.get("for_seconds")
    text = f"{state} for {_duration(seconds)}" if seconds is not None else state
    failed = replica.get("failed_checks") or 0
    if failed:
        text += f", not answering ({failed} check{'s' if failed != 1 else ''})"
        if not replica.get("in_gateway", True):
            text += ", out of the gateway"
    return text


def _targets(targets: list[dict[str, Any]]) -> str:
    rows = [
        [
            t["name"],
            f"{t['weight']:g}" + ("% copy" if t["shadow"] else "%"),
            t["status"],
            f"{t['ready']}/{t['desired']}",
        ]
        for t in targets
    ]
    return _table(rows, ["API", "WEIGHT", "STATUS", "READY"])


_SHADOW_COLUMNS = (
    ("SHADOW", "shadow"),
    ("COMPARED", "compared"),
    ("AGREEMENT", "agreement"),
    ("FAILED", "failed"),
    ("SKIPPED", "skipped"),
    ("PRIMARY MEAN/P50/P99 MS", ("primary_mean_ms", "primary_p50_ms", "primary_p99_ms")),
    ("SHADOW MEAN/P50/P99 MS", ("shadow_mean_ms", "shadow_p50_ms", "shadow_p99_ms")),
)


def _shadows(shadows: list[dict[str, Any]]) -> str:
    rows = []
    for shadow in shadows:
        row = []
        for _, key in _SHADOW_COLUMNS:
            if isinstance(key, tuple):
                row.append("/".join(_cell(shadow, part, 0.0) for part in key))
            else:
                row.append(_cell(shadow, key, 0.0))
        rows.append(row)
    table = _table(rows, [title for title, _ in _SHADOW_COLUMNS])
    return table + "\n(means since deploy; percentiles over the last minute; skipped: no free shadow replica)"


def collapse(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive events of one kind for one replica (a crash loop's) as one line with a count."""
    collapsed: list[dict[str, Any]] = []
    runs: list[int] = []
    for event in events:
        previous = collapsed[-1] if collapsed else None
        same = previous is not None and (previous["kind"], previous.get("replica")) == (
            event["kind"],
            event.get("replica"),
        )
        if same and event.get("replica") and event["kind"] in _FLAPPING:
            runs[-1] += 1
            collapsed[-1] = dict(event, message=f"{event['message']} (x{runs[-1]})")
            continue
        collapsed.append(event)
        runs.append(1)
    return collapsed


_FLAPPING = frozenset({"crashed", "restarting", "failed"})


def _cell(row: dict[str, Any], key: str, now: float) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if key == "updated_at":
        return _age(value, now)
    if key == "agreement":
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _age(at: float, now: float) -> str:
    """`45s ago`, `3m ago`, `2h ago`; a date when it is more than a day old."""
    seconds = max(0.0, now - at)
    if seconds >= 86_400:
        return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M")
    return f"{_duration(seconds)} ago"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _time(at: float, now: float) -> str:
    """Time of day today; the date too on other days."""
    moment = datetime.fromtimestamp(at)
    if moment.date() == datetime.fromtimestamp(now).date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[list[str]], titles: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(titles, *rows, strict=False)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [titles, *rows]]
    return "\n".join(line.rstrip() for line in lines)


@click.command()
@click.argument("api")
@click.argument("payload", required=False)
@reports_errors
def predict(api: str, payload: str | None) -> None:
    """Send PAYLOAD (JSON, or @file) to API through the gateway and print the answer."""
    from shipyard.client import Client

    body = _payload(payload)
    with Client() as client:
        answer = client.predict(api, body=body)
    click.echo(json.dumps(answer) if not isinstance(answer, str) else answer)


def _payload(payload: str | None) -> bytes:
    if payload is None:
        return sys.stdin.buffer.read()
    if payload.startswith("@"):
        path = Path(payload[1:])
        if not path.is_file():
            raise ConfigError([f"payload file {payload[1:]!r} does not exist; pass @PATH to a JSON file"])
        return path.read_bytes()
    try:
        json.loads(payload)
    except ValueError:
        raise ConfigError(
            [f"payload {payload!r} is not valid JSON; pass JSON such as '{{\"x\": 1}}' or @file.json"]
        ) from None
    return payload.encode()


@click.command()
@click.argument("api")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("--replica", help="Only this replica's log (ids in `shipyard get API`).")
@click.option("--all", "every_replica", is_flag=True, help="Every replica the API ever had, not only its current ones.")
@reports_errors
def logs(api: str, follow: bool, replica: str | None, every_replica: bool) -> None:
    """Print the logs of API's current replicas, each line prefixed with its replica id."""
    from shipyard.client import Client

    with Client() as client:
        try:
            for replica_id, text in client.logs(api, replica=replica, follow=follow, every_replica=every_replica):
                for line in text.splitlines():
                    click.echo(line if replica else f"[{replica_id}] {line}")
        except KeyboardInterrupt:
            return


@click.command()
@click.argument("api")
@reports_errors
def refresh(api: str) -> None:
    """Replace every replica of API with a new one, rolling, without downtime."""
    from shipyard.client import Client

    with Client() as client:
        version = client.refresh(api)
    click.echo(f"{api}: rolling restart to version {version}")


@click.command()
@click.argument("api")
@reports_errors
def delete(api: str) -> None:
    """Stop API's replicas and forget its deployment."""
    from shipyard.client import Client

    with Client() as client:
        client.delete(api)
    click.echo(f"{api}: deleted")


DEPLOY_COMMANDS = (deploy, get, predict, logs, refresh, delete)
