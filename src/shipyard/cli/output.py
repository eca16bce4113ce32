"""How every command reports: one-line errors on stderr, exit codes 0 ok / 1 failure / 2 usage."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.exceptions import NoArgsIsHelpError

from shipyard.errors import ConfigError, HandlerLoadError, PathOutsideProject, ShipyardError

if TYPE_CHECKING:
    from rich.table import Table

F = TypeVar("F", bound=Callable[..., Any])
USAGE_ERRORS = (ConfigError, HandlerLoadError, PathOutsideProject)


def fail(message: str, code: int = 1) -> None:
    click.echo(message if message.startswith("error") else f"error: {message}", err=True)
    sys.exit(code)


class OneLineUsageGroup(click.Group):
    """A command group whose usage errors are one line, `error: ... (see `CMD --help`)`, exit code 2.

    click prints three lines (Usage, Try, Error); here every bad flag, argument or value reads like
    every other Shipyard error. Everything else click does in standalone mode is kept.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except NoArgsIsHelpError as exc:  # `shipyard` or `shipyard models` alone: the help is the answer
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            fail(usage_line(exc), exc.exit_code)
        except click.ClickException as exc:
            fail(" ".join(exc.format_message().split()), exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        # without standalone mode click returns the code of `ctx.exit(code)` (--help, --version) as a value
        sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)


def usage_line(exc: click.UsageError) -> str:
    message = " ".join(exc.format_message().split()).rstrip(".")
    if exc.ctx is None:
        return message
    return f"{message} (see `{exc.ctx.command_path} --help`)"


def reports_errors(command: F) -> F:
    """Turn errors into one-line messages and exit codes; --debug shows the traceback.

    Shipyard's own errors say what to do. As a last resort, an OSError or a database error that no layer
    below turned into one is still reported in one line, never as a traceback.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ShipyardError as exc:
            _log_traceback()
            code = 2 if isinstance(exc, USAGE_ERRORS) else 1
            if isinstance(exc, ConfigError):
                for line in exc.problems:
                    click.echo(f"error: {line}", err=True)
                sys.exit(code)
            fail(exc.message, code)
        except BrokenPipeError:  # the reader of our output went away (`shipyard ... | head`): nothing to say
            sys.exit(1)
        except OSError as exc:
            _log_traceback()
            fail(f"{os_error_text(exc)}; {_DEBUG_HINT}")
        except Exception as exc:
            if not _is_database_error(exc):
                raise
            _log_traceback()
            fail(f"database error: {database_error_text(exc)}; {_DEBUG_HINT}")

    return wrapper  # type: ignore[return-value]


_DEBUG_HINT = "run with --debug for the traceback"


def _log_traceback() -> None:
    if logging.getLogger("shipyard").isEnabledFor(logging.DEBUG):
        logging.getLogger("shipyard.cli").debug("traceback", exc_info=True)


def os_error_text(exc: OSError) -> str:
    """`cannot use '/x/y': Permission denied (PermissionError)`, from any OSError."""
    what = exc.strerror or str(exc) or type(exc).__name__
    target = f"cannot use {exc.filename!r}: " if exc.filename else ""
    return f"{target}{what} ({type(exc).__name__})"


def _is_database_error(exc: Exception) -> bool:
    # sqlalchemy is not imported here (most commands never load it); if it was never loaded, this is not its error
    errors = sys.modules.get("sqlalchemy.exc")
    return errors is not None and isinstance(exc, errors.SQLAlchemyError)


def database_error_text(exc: Exception) -> str:
    """The driver's own first line, and which column a too-long value was for: never the SQL statement or
    its parameters, which may hold secrets."""
    from shipyard.store.engine import too_long_columns  # sqlalchemy is loaded: this is its error

    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip().splitlines()
    first = " ".join(text[0].split()) if text else type(exc).__name__
    columns = too_long_columns(exc)
    return f"{first} ({'; '.join(columns)})" if columns else first


_UNLIMITED_WIDTH = 100_000


def print_table(table: Table) -> None:
    """A table on stdout that never cuts a value: in a terminal, long values fold onto more lines; when
    stdout is not a terminal (a pipe, a file, a CI log) the table is as wide as its widest row."""
    from rich.console import Console  # imported here: most commands print no table

    for column in table.columns:
        column.overflow = "fold"
    if sys.stdout.isatty():
        Console(soft_wrap=True).print(table)
    else:
        Console(width=_UNLIMITED_WIDTH, soft_wrap=True).print(table)


def configure_logging(level: str, debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not debug:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations report themselves as INFO
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request: the daemon's health checks
