"""How every command reports errors: one line on stderr, the right exit code, no traceback."""

from __future__ import annotations

import click
import pytest
import sqlalchemy.exc
from click.testing import CliRunner

from shipyard.cli.output import reports_errors


def command_raising(error: BaseException) -> click.Command:
    @click.command()
    @reports_errors
    def failing() -> None:
        raise error

    return failing


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            PermissionError(13, "Permission denied", "/srv/models/w.bin"),
            "error: cannot use '/srv/models/w.bin': Permission denied (PermissionError); run with --debug",
        ),
        (IsADirectoryError(21, "Is a directory"), "error: Is a directory (IsADirectoryError); run with --debug"),
        (
            sqlalchemy.exc.OperationalError("SELECT * FROM t WHERE x = ?", ("s3cret",), Exception("disk I/O error")),
            "error: database error: disk I/O error; run with --debug for the traceback",
        ),
    ],
)
def test_last_resort_errors_are_one_line(error: Exception, line: str) -> None:
    result = CliRunner().invoke(command_raising(error), [])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [line.split("; run")[0] + "; run with --debug for the traceback"]
    assert "s3cret" not in result.stderr


def test_other_exceptions_are_not_swallowed() -> None:
    result = CliRunner().invoke(command_raising(KeyError("bug")), [])
    assert isinstance(result.exception, KeyError)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["serve", ".", "--port", "99999"], "error: Invalid value for '--port': 99999 is not in the range"),
        (["nope"], "error: No such command 'nope' (see `shipyard --help`)"),
        (["models", "show"], "error: Missing argument 'REF' (see `shipyard models show --help`)"),
        (["jobs", "--bogus"], "error: No such option '--bogus' (see `shipyard jobs --help`)"),
    ],
)
def test_usage_errors_of_every_command_are_one_line_exit_2(args: list[str], line: str) -> None:
    from shipyard.cli.main import cli

    result = CliRunner().invoke(cli, args, prog_name="shipyard")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(line)


def test_help_and_version_still_exit_0() -> None:
    from shipyard.cli.main import cli

    assert CliRunner().invoke(cli, ["--help"], prog_name="shipyard").exit_code == 0
    assert CliRunner().invoke(cli, ["--version"], prog_name="shipyard").exit_code == 0
    assert CliRunner().invoke(cli, ["models", "--help"], prog_name="shipyard").exit_code == 0
