"""What a job submit asks for, checked where it is made: `JobRequest`, its option types, its paths.

Every field is checked for its type when the request is built (from the SDK, the CLI or a control-API
body), so a wrong type is one line naming the field and the value, never a traceback from deep inside.
The values' ranges are the BatchAPI spec's (`batch_size` 1..1,000,000, `timeout` above 0, ...): the
submit checks them against the spec with the API's defaults filled in (`service._batch_api`).

Paths: inputs and the output resolve against the caller's working directory (as a shell does with
`--input data/`), the project's folder too. `absolute()` makes them so before a request leaves the
caller's process; the daemon, whose working directory is not the caller's, refuses relative ones.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shipyard.jobs.errors import BadJobOption
from shipyard.jobs.output import FORMATS, OutputFormat

_WHOLE = ("batch_size", "workers", "max_retries")
OPTION_FLAGS = {
    "batch_size": "--batch-size",
    "workers": "--workers",
    "max_retries": "--max-retries",
    "timeout": "--timeout",
    "config": "--config",
}


@dataclass(frozen=True)
class JobRequest:
    """What `submit` needs; every None falls back to the BatchAPI's default in shipyard.yaml."""

    api: str
    inputs: Sequence[str] = ()
    output: str = ""
    project: str = "."
    items: list[dict[str, Any]] | None = None
    format: OutputFormat = "parquet"
    id_column: str | None = None
    batch_size: int | None = None
    workers: int | None = None
    max_retries: int | None = None
    timeout: float | None = None
    config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check_types(self)


def check_types(request: JobRequest) -> None:
    """BadJobOption for the first field whose value is not of its type."""
    if not isinstance(request.api, str) or not request.api:
        _refuse("api", request.api, "the name of a BatchAPI in the project")
    if isinstance(request.inputs, str | bytes) or not all(isinstance(text, str) for text in request.inputs):
        _refuse("inputs", request.inputs, "a list of paths, globs or URLs, such as ['data/']")
    for name in ("output", "project"):
        if not isinstance(getattr(request, name), str):
            _refuse(name, getattr(request, name), "a path or URL")
    if request.items is not None and not isinstance(request.items, list):
        _refuse("items", request.items, 'a list of records, such as [{"x": 1}]')
    if request.format not in FORMATS:
        _refuse("format", request.format, f"one of {', '.join(FORMATS)}")
    if request.id_column is not None and (not isinstance(request.id_column, str) or not request.id_column):
        _refuse("id_column", request.id_column, "a column name")
    for name in _WHOLE:
        value = getattr(request, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            _refuse(name, value, "a whole number")
    timeout = request.timeout
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        _refuse("timeout", timeout, "a number of seconds (--timeout takes 30m, 2h, ...)")
    if request.config is not None and not (
        isinstance(request.config, dict) and all(isinstance(key, str) for key in request.config)
    ):
        _refuse("config", request.config, "a mapping of handler config keys to values")


def is_seconds(value: object) -> bool:
    """A number of seconds above 0 (not a bool, not infinite)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _refuse(name: str, value: Any, expected: str) -> None:
    flag = f" ({OPTION_FLAGS[name]})" if name in OPTION_FLAGS else ""
    raise BadJobOption(f"job option {name}{flag} is {_shown(value)}; it must be {expected}")


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def option_error(name: str, value: Any, problem: str) -> BadJobOption:
    """A value of the right type the spec refuses (`batch_size` 0): one line, as for a wrong type."""
    flag = f" ({OPTION_FLAGS[name]})" if name in OPTION_FLAGS else ""
    return BadJobOption(f"job option {name}{flag} is {value!r}: {problem}")


def is_url(text: str) -> bool:
    return "://" in text


def absolute(request: JobRequest) -> JobRequest:
    """The request with every local path made absolute against this process's working directory, so that
    another process (the daemon) reads the same files whatever its own."""

    def local(text: str) -> str:
        return text if is_url(text) else os.path.normpath(Path(text).expanduser().absolute())

    return replace(
        request,
        project=str(Path(request.project).expanduser().resolve()),
        inputs=[local(text) for text in request.inputs],
        output=local(request.output) if request.output else "",
    )


def relative_paths(request: JobRequest) -> list[tuple[str, str]]:
    """(field, path) of every local path in the request that is not absolute."""
    found = [("inputs", text) for text in request.inputs if not is_url(text) and not os.path.isabs(text)]
    if request.output and not is_url(request.output) and not os.path.isabs(request.output):
        found.append(("output", request.output))
    if not os.path.isabs(request.project):
        found.append(("project", request.project))
    return found
