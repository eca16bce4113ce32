"""`shipyard up`, `down` and `status`: the daemon that runs deployed APIs behind one gateway."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

import click

from shipyard.cli.output import reports_errors
from shipyard.settings import get_settings

if TYPE_CHECKING:
    from shipyard.runtime.local.server import ServerOptions
    from shipyard.settings import Settings


@click.command()
@click.option("--foreground", is_flag=True, help="Run in this terminal instead of in the background.")
@click.option("--port", type=click.IntRange(1, 65535), help="Control API port on 127.0.0.1  [default: 7070]")
@click.option("--gateway-host", help="Address the gateway binds  [default: 127.0.0.1]")
@click.option("--gateway-port", type=click.IntRange(1, 65535), help="Gateway port  [default: 8080]")
@click.option(
    "--tick", type=click.FloatRange(0.05, 60), default=0.5, show_default=True, help="Seconds between reconciliations."
)
@click.pass_context
@reports_errors
def up(
    ctx: click.Context,
    foreground: bool,
    port: int | None,
    gateway_host: str | None,
    gateway_port: int | None,
    tick: float,
) -> None:
    """Start the daemon: control API, gateway and every deployed API's replicas."""
    from shipyard.runtime.local.home import Home

    settings = get_settings()
    home = Home(settings.home)
    options = _options(settings, port, gateway_host, gateway_port, tick, ctx.obj["log_level"])
    if foreground:
        from shipyard.runtime.local.server import run

        sys.exit(run(settings, options))
    if home.is_locked():
        address = home.read_address()
        where = f" at {address.url}, gateway {address.gateway_url}" if address else ""
        click.echo(f"the daemon already runs{where}")
        return
    from shipyard.runtime.local.launcher import start_detached

    arguments = ["--port", str(options.port), "--gateway-host", options.gateway_host]
    arguments += ["--gateway-port", str(options.gateway_port), "--tick", str(tick)]
    address = start_detached(home, arguments)
    click.echo(f"daemon started (pid {address.pid}): control API {address.url}, gateway {address.gateway_url}")


def _options(
    settings: Settings, port: int | None, gateway_host: str | None, gateway_port: int | None, tick: float, level: str
) -> ServerOptions:
    from shipyard.runtime.local.daemon import Options
    from shipyard.runtime.local.server import ServerOptions

    return ServerOptions(
        port=port or settings.control_port,
        gateway_host=gateway_host or settings.gateway_host,
        gateway_port=gateway_port or settings.gateway_port,
        log_level=level,
        daemon=Options(tick=tick),
    )


@click.command()
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for replicas to drain.")
@reports_errors
def down(timeout: float) -> None:
    """Stop the daemon and every replica it runs (deployments stay recorded for the next `up`)."""
    from shipyard.client import Client
    from shipyard.runtime.local.home import Home

    home = Home(get_settings().home)
    with Client() as client:
        if not client.is_running():
            click.echo("the daemon is not running")
            return
        pid = client.shutdown()["stopping"]
    deadline = time.monotonic() + timeout
    while home.is_locked() and time.monotonic() < deadline:
        time.sleep(0.1)
    if home.is_locked():
        from shipyard.errors import ShipyardError

        raise ShipyardError(f"the daemon (pid {pid}) is still stopping after {timeout:g}s; wait, or kill it")
    click.echo(f"daemon stopped (pid {pid})")


@click.command()
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@reports_errors
def status(output: str) -> None:
    """Whether the daemon runs, where, and what it serves."""
    from shipyard.client import Client

    with Client() as client:
        if not client.is_running():
            if output == "json":
                click.echo(json.dumps({"running": False, "url": client.url}))
            else:
                click.echo(f"the daemon is not running (looked at {client.url}); start it with `shipyard up`")
            sys.exit(1)
        found = client.status()
    if output == "json":
        click.echo(json.dumps({"running": True, **found}))
        return
    apis = ", ".join(found["apis"]) or "none"
    click.echo(f"daemon running (pid {found['pid']}, shipyard {found['version']}), home {found['home']}")
    click.echo(f"control API {found['url']}")
    click.echo(f"gateway     {found['gateway_url']}")
    click.echo(f"APIs        {apis} ({found['replicas']} replica(s))")


DAEMON_COMMANDS = (up, down, status)
