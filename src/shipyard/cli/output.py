"""How every command reports: one-line errors on stderr, exit codes 0 ok / 1 failure / 2 usage."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from shipyard.errors import ConfigError, HandlerLoadError, PathOutsideProject, ShipyardError

F = TypeVar("F", bound=Callable[..., Any])
USAGE_ERRORS = (ConfigError, HandlerLoadError, PathOutsideProject)


def fail(message: str, code: int = 1) -> None:
    click.echo(message if message.startswith("error") else f"error: {message}", err=True)
    sys.exit(code)


def reports_errors(command: F) -> F:
    """Turn Shipyard errors into one-line messages and exit codes; --debug shows the traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ShipyardError as exc:
            if logging.getLogger("shipyard").isEnabledFor(logging.DEBUG):
                logging.getLogger("shipyard.cli").debug("traceback", exc_info=True)
            code = 2 if isinstance(exc, USAGE_ERRORS) else 1
            if isinstance(exc, ConfigError):
                for line in exc.problems:
                    click.echo(f"error: {line}", err=True)
                sys.exit(code)
            fail(exc.message, code)

    return wrapper  # type: ignore[return-value]


def configure_logging(level: str, debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not debug:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations report themselves as INFO
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request: the daemon's health checks
