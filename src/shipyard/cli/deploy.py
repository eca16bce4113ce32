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
@reports_errors
def deploy(path: str, no_wait: bool, timeout: float) -> None:
    """Deploy the APIs of PATH (a project directory or a yaml file) and wait until they serve."""
    from shipyard.client import Client

    with Client() as client:
        changes = client.deploy(path)
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
@reports_errors
def get(api: str | None, watch: bool, output: str) -> None:
    """Every API's status and traffic over the last minute; with API, its replicas, model and events."""
    from shipyard.client import Client

    with Client() as client:
        while True:
            found = client.get(api)
            text = json.dumps(found, indent=2) if output == "json" else _render(found, api)
            if watch and sys.stdout.isatty():
                click.clear()
            click.echo(text)
            if not watch:
                return
            time.sleep(1.0)


def _render(found: Any, api: str | None) -> str:
    if api is None:
        return _table([[_cell(row, key) for _, key in _COLUMNS] for row in found], [title for title, _ in _COLUMNS])
    return _detail(found)


def _detail(found: dict[str, Any]) -> str:
    lines = [_table([[_cell(found, key) for _, key in _COLUMNS]], [title for title, _ in _COLUMNS]), ""]
    if found.get("message"):
        lines += [f"why: {found['message']}", ""]
    model = found.get("model")
    if model:
        pinned = f" → {model['name']}:{model['version']}" if model["name"] else ""
        lines.append(f"model: {model['ref']}{pinned} {model['digest'] or ''}".rstrip())
    if found.get("replicas"):
        rows = [
            [r["id"], r["version"], r["state"], str(r["restarts"]), r["last_error"] or "-"] for r in found["replicas"]
        ]
        lines += ["", _table(rows, ["REPLICA", "VERSION", "STATE", "RESTARTS", "LAST ERROR"])]
    if found.get("shadows") is not None:
        rows = [
            [
                s["shadow"],
                str(s["compared"]),
                _cell(s, "agreement"),
                str(s["failed"]),
                _cell(s, "primary_mean_ms"),
                _cell(s, "shadow_mean_ms"),
            ]
            for s in found["shadows"]
        ]
        lines += ["", _table(rows, ["SHADOW", "COMPARED", "AGREEMENT", "FAILED", "PRIMARY MS", "SHADOW MS"])]
    events = [[_time(e["at"]), e["kind"], e["message"]] for e in found.get("events", [])]
    lines += ["", _table(events, ["WHEN", "EVENT", "MESSAGE"]) if events else "no events"]
    return "\n".join(lines)


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if key == "updated_at":
        return _time(value)
    if key == "agreement":
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _time(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")


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
@reports_errors
def logs(api: str, follow: bool, replica: str | None) -> None:
    """Print the logs of API's replicas, each line prefixed with its replica id."""
    from shipyard.client import Client

    with Client() as client:
        try:
            for replica_id, text in client.logs(api, replica=replica, follow=follow):
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
