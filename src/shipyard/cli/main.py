"""The `shipyard` command group; each command group lives in its own module."""

from __future__ import annotations

import sys

import click

from shipyard import __version__
from shipyard.cli.daemon import DAEMON_COMMANDS
from shipyard.cli.deploy import DEPLOY_COMMANDS
from shipyard.cli.jobs import jobs
from shipyard.cli.models import models
from shipyard.cli.output import OneLineUsageGroup, configure_logging, reports_errors


@click.group(cls=OneLineUsageGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="shipyard")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"]),
    show_default=True,
    help="Log level on stderr.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_level: str) -> None:
    """Shipyard: turn a trained model into a production API."""
    ctx.obj = {"debug": debug, "log_level": "debug" if debug else log_level}
    configure_logging(log_level, debug)


@cli.command()
@click.argument("project", default=".", type=click.Path())
@click.option("--api", "api_name", help="Which RealtimeAPI to serve (needed when the project has several).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to bind.")
@click.pass_context
@reports_errors
def serve(ctx: click.Context, project: str, api_name: str | None, host: str, port: int) -> None:
    """Serve one API of PROJECT in the foreground until Ctrl-C or SIGTERM."""
    from shipyard.serving.replica import ServeOptions
    from shipyard.serving.replica import serve as run

    options = ServeOptions(project, api_name, host, port, ctx.obj["log_level"])
    sys.exit(run(options))


@cli.command()
@click.argument("project", default=".", type=click.Path())
@reports_errors
def validate(project: str) -> None:
    """Check PROJECT's shipyard.yaml, handlers, models and built-in handler configs without serving anything."""
    from shipyard.serving.replica import check_project
    from shipyard.spec import load

    loaded = load(project)
    check_project(loaded)
    names = ", ".join(f"{api.name} ({api.kind})" for api in loaded.apis)
    click.echo(f"{loaded.source}: ok — {names}")


cli.add_command(models)
cli.add_command(jobs)
for command in (*DAEMON_COMMANDS, *DEPLOY_COMMANDS):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="shipyard")
