"""Errors of batch jobs; each names the thing, the value and what to do."""

from __future__ import annotations

from shipyard.errors import ShipyardError


class BadInput(ShipyardError):
    """An input cannot be used: missing, unreadable, of an unknown format, or lacking a required column."""

    status_code = 400

    def __init__(self, source: str, problem: str, remedy: str) -> None:
        self.source = source
        super().__init__(f"input {source!r}: {problem}; {remedy}")


class MissingColumns(BadInput):
    """An input lacks columns that the API's schema requires."""

    def __init__(self, source: str, missing: list[str], found: list[str]) -> None:
        self.missing, self.found = missing, found
        super().__init__(
            source,
            f"lacks the column(s) {', '.join(missing)} that the API's schema requires (it has: {_names(found)})",
            "add the columns, or mark them required: false in the schema",
        )


class MissingIdColumn(BadInput):
    """--id-column names a column that an input does not have."""

    def __init__(self, source: str, column: str, found: list[str]) -> None:
        self.column, self.found = column, found
        super().__init__(
            source,
            f"has no column {column!r} for --id-column (it has: {_names(found)})",
            "pass one of its columns to --id-column, or leave the option out to keep every column",
        )


class UnconvertibleColumn(BadInput):
    """No value of a declared column converts to its type in a file's first block: the file is wrong."""

    def __init__(self, source: str, column: str, kind: str, rows: int, where: str, value: object) -> None:
        self.column, self.kind, self.rows, self.where, self.value = column, kind, rows, where, value
        super().__init__(
            source,
            f"no value of column {column!r} in its first {rows} rows is {kind} as the API's schema declares "
            f"({where} is {value!r})",
            "fix the file, or change the field's type in the API's schema",
        )


def _names(names: list[str]) -> str:
    return ", ".join(names) or "none"


class BadOutput(ShipyardError):
    status_code = 400

    def __init__(self, destination: str, problem: str, remedy: str) -> None:
        super().__init__(f"output {destination!r}: {problem}; {remedy}")


class JobNotFound(ShipyardError):
    status_code = 404

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found; list jobs with `shipyard jobs list`")


class JobConflict(ShipyardError):
    """The operation does not fit the job's state (retrying a running job, stopping a finished one)."""

    status_code = 409


class BadJobOption(ShipyardError):
    status_code = 400


class StoreFailed(ShipyardError):
    """The store refused a write; the message is the database's first line, never a traceback."""

    status_code = 500

    def __init__(self, what: str, detail: str) -> None:
        first = detail.strip().splitlines()[0] if detail.strip() else "no detail"
        super().__init__(
            f"the store could not record {what}: {first}; check SHIPYARD_DATABASE_URL and the database, then retry"
        )
