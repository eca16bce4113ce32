"""The reference profile of tabular training data: per column its type, count, missing share, quantiles
and histogram (numbers) or category frequencies (everything else). Monitoring compares live traffic
with it to find drift and unknown categories.

Reads CSV (`.csv`, `.tsv`), JSON lines (`.jsonl`, `.ndjson`) and Parquet (`.parquet`, `.pq`); every
tabular file given, or found in a folder given, is profiled together as one table.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from shipyard.errors import ShipyardError

if TYPE_CHECKING:
    import numpy as np

MAX_ROWS = 1_000_000
MAX_CATEGORIES = 100
HISTOGRAM_BINS = 20
QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
_MISSING_TEXT = {"", "na", "n/a", "nan", "null", "none"}
_READERS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}

Row = dict[str, Any]


class UnreadableData(ShipyardError):
    status_code = 400

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"training data {path!r} cannot be profiled: {problem}; fix the file or leave it out of --data"
        )


def tabular_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files among `paths` (and inside folders among them) that a profile can read."""
    found: list[Path] = []
    for path in map(Path, paths):
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        found += [file for file in candidates if file.is_file() and file.suffix.lower() in _READERS]
    return found


def profile_data(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Any] | None:
    """The profile of every tabular file in `paths`, or None when there is none."""
    files = tabular_files(paths)
    if not files:
        return None
    columns: dict[str, list[Any]] = {}
    rows = 0
    for row in _limited(_rows(file) for file in files):
        for name in columns.keys() - row.keys():
            columns[name].append(None)
        for name, value in row.items():
            columns.setdefault(name, [None] * rows).append(value)
        rows += 1
    return {
        "rows": rows,
        "files": [file.name for file in files],
        "columns": {name: profile_column(values) for name, values in columns.items()},
    }


def _limited(sources: Iterable[Iterator[Row]]) -> Iterator[Row]:
    count = 0
    for source in sources:
        for row in source:
            if count >= MAX_ROWS:
                return
            count += 1
            yield row


def _rows(file: Path) -> Iterator[Row]:
    kind = _READERS[file.suffix.lower()]
    try:
        if kind == "csv":
            yield from _csv_rows(file)
        elif kind == "jsonl":
            yield from _jsonl_rows(file)
        else:
            yield from _parquet_rows(file)
    except (OSError, UnicodeDecodeError, csv.Error, orjson.JSONDecodeError, ValueError) as exc:
        raise UnreadableData(str(file), str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _csv_rows(file: Path) -> Iterator[Row]:
    with open(file, newline="", encoding="utf-8") as handle:
        delimiter = "\t" if file.suffix.lower() == ".tsv" else ","
        for row in csv.DictReader(handle, delimiter=delimiter):
            yield {str(key): _parse_text(value) for key, value in row.items() if key is not None}


def _jsonl_rows(file: Path) -> Iterator[Row]:
    with open(file, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = orjson.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"line {number} is not a JSON object")
            yield row


def _parquet_rows(file: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq  # imported here: only Parquet needs it

    for batch in pq.ParquetFile(file).iter_batches(batch_size=65_536):
        yield from batch.to_pylist()


def _parse_text(value: str | None) -> Any:
    """A CSV cell as the value it spells: None, bool, int, float or the text itself."""
    if value is None or value.strip().lower() in _MISSING_TEXT:
        return None
    text = value.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return value


def column_type(values: Sequence[Any]) -> str:
    if not values:
        return "empty"
    if all(isinstance(value, bool) for value in values):
        return "boolean"
    if all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        return "integer"
    if all(isinstance(value, int | float) and not isinstance(value, bool) for value in values):
        return "number"
    return "string"


def profile_column(values: Sequence[Any]) -> dict[str, Any]:
    present = [value for value in values if not _is_missing(value)]
    kind = column_type(present)
    summary: dict[str, Any] = {
        "type": kind,
        "count": len(present),
        "missing": len(values) - len(present),
        "missing_share": (len(values) - len(present)) / len(values) if values else 0.0,
    }
    if kind in ("integer", "number"):
        import numpy as np  # imported here: registering without data should not pay for it

        summary |= numeric_summary(np.asarray(present, dtype=float))
    elif present:
        summary |= category_summary([_category(value) for value in present])
    return summary


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _category(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode()


def numeric_summary(values: np.ndarray[Any, Any]) -> dict[str, Any]:
    import numpy as np

    counts, edges = np.histogram(values, bins=min(HISTOGRAM_BINS, max(1, len(np.unique(values)))))
    quantiles = np.quantile(values, QUANTILES)
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "quantiles": {f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        "histogram": {"edges": [float(edge) for edge in edges], "counts": [int(count) for count in counts]},
    }


def category_summary(values: Sequence[str]) -> dict[str, Any]:
    counts = Counter(values)
    top = counts.most_common(MAX_CATEGORIES)
    shown = sum(count for _, count in top)
    return {
        "distinct": len(counts),
        "frequencies": {value: count / len(values) for value, count in top},
        "other_share": (len(values) - shown) / len(values),
    }
