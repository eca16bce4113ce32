"""The reference profile of tabular training data: per column its type, count and missing share, and
quantiles and histogram (numbers, Parquet decimals included), earliest and latest (dates, times,
timestamps), lengths (binary) or category frequencies (text, booleans, nested lists and structs as JSON).
Monitoring compares live traffic with it to find drift and unknown categories.

Reads CSV (`.csv`, `.tsv`), JSON lines (`.jsonl`, `.ndjson`), either compressed (`.gz`, `.bz2`, `.xz`),
and Parquet (`.parquet`, `.pq`); every tabular file given, or found in a folder given, is profiled
together as one table. Past MAX_ROWS rows the profile stops, and says so (`truncated`, `rows_total`).
"""

from __future__ import annotations

import bz2
import csv
import datetime as dt
import gzip
import io
import lzma
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from shipyard.errors import ShipyardError

if TYPE_CHECKING:
    import numpy as np

MAX_ROWS = 1_000_000
MAX_CATEGORIES = 100
MAX_CATEGORY_LENGTH = 200
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
_COMPRESSED: dict[str, Any] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
"""Compressions a text format (CSV, JSON lines) may come in, and how each is opened."""

Row = dict[str, Any]
# order matters: a datetime is also a date
_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (int, "integer"),
    ((float, Decimal), "number"),
    (dt.datetime, "timestamp"),
    (dt.date, "date"),
    (dt.time, "time"),
    ((bytes, bytearray), "binary"),
    ((list, tuple), "list"),
    (dict, "struct"),
)


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
        found += [file for file in candidates if file.is_file() and _format(file) is not None]
    return found


def _format(file: Path) -> tuple[str, str | None] | None:
    """(reader, compression) of a file a profile can read, else None: `train.csv.gz` is ("csv", ".gz")."""
    suffixes = [suffix.lower() for suffix in file.suffixes]
    compression = suffixes[-1] if suffixes and suffixes[-1] in _COMPRESSED else None
    plain = suffixes[-2] if compression and len(suffixes) >= 2 else (suffixes[-1] if suffixes else "")
    reader = _READERS.get(plain)
    if reader is None or (compression is not None and reader == "parquet"):
        return None
    return reader, compression


def profile_data(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Any] | None:
    """The profile of every tabular file in `paths`, or None when there is none."""
    files = tabular_files(paths)
    if not files:
        return None
    columns: dict[str, list[Any]] = {}
    rows = 0
    sources = _Limited([_rows(file) for file in files])
    for row in sources:
        for name in columns.keys() - row.keys():
            columns[name].append(None)
        for name, value in row.items():
            columns.setdefault(name, [None] * rows).append(value)
        rows += 1
    profile = {
        "rows": rows,
        "files": [file.name for file in files],
        "columns": {name: _profile_named(name, values, files) for name, values in columns.items()},
    }
    if sources.truncated:
        profile |= {"truncated": True, "rows_total": _total_rows(files)}
    cleaned: dict[str, Any] = finite_only(profile)
    return cleaned


def _profile_named(name: str, values: Sequence[Any], files: Sequence[Path]) -> dict[str, Any]:
    try:
        return profile_column(values)
    except (ArithmeticError, ValueError, TypeError) as exc:  # statistics this column's values defeat
        shown = files[0] if len(files) == 1 else ", ".join(file.name for file in files)
        raise UnreadableData(str(shown), f"column {name!r}: {exc or type(exc).__name__}") from None


class _Limited:
    """The rows of every source, in order, up to MAX_ROWS; `truncated` tells whether any were left over."""

    def __init__(self, sources: Iterable[Iterator[Row]]) -> None:
        self.sources = sources
        self.truncated = False

    def __iter__(self) -> Iterator[Row]:
        count = 0
        for source in self.sources:
            for row in source:
                if count >= MAX_ROWS:
                    self.truncated = True
                    return
                count += 1
                yield row


def _total_rows(files: Sequence[Path]) -> int | None:
    """How many rows the files hold, when that is known without reading them all (Parquet only)."""
    if any(_format(file) != ("parquet", None) for file in files):
        return None
    import pyarrow.parquet as pq

    return sum(int(pq.ParquetFile(file).metadata.num_rows) for file in files)


def finite_only(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None: JSON (and PostgreSQL's json) has neither."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_only(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite_only(item) for item in value]
    return value


def _rows(file: Path) -> Iterator[Row]:
    kind, compression = _format(file) or ("", None)
    try:
        if kind == "csv":
            yield from _csv_rows(file, compression)
        elif kind == "jsonl":
            yield from _jsonl_rows(file, compression)
        else:
            yield from _parquet_rows(file)
    except (
        OSError,
        EOFError,
        lzma.LZMAError,
        UnicodeDecodeError,
        csv.Error,
        orjson.JSONDecodeError,
        ValueError,
    ) as exc:
        raise UnreadableData(str(file), str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _open_binary(file: Path, compression: str | None) -> IO[bytes]:
    opener = _COMPRESSED[compression] if compression else open
    return opener(file, "rb")


def _csv_rows(file: Path, compression: str | None) -> Iterator[Row]:
    with _open_binary(file, compression) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as handle:
        delimiter = "\t" if ".tsv" in [suffix.lower() for suffix in file.suffixes] else ","
        for row in csv.DictReader(handle, delimiter=delimiter):
            yield {str(key): _parse_text(value) for key, value in row.items() if key is not None}


def _jsonl_rows(file: Path, compression: str | None) -> Iterator[Row]:
    with _open_binary(file, compression) as handle:
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
    """integer, number, boolean, timestamp, date, time, binary, list, struct, or string for text and mixes."""
    if not values:
        return "empty"
    kinds = {_kind(value) for value in values}
    if kinds == {"integer", "number"}:
        return "number"
    return kinds.pop() if len(kinds) == 1 else "string"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    for kind, name in _KINDS:
        if isinstance(value, kind):
            return name
    return "string"


def profile_column(values: Sequence[Any]) -> dict[str, Any]:
    present = [_plain(value) for value in values if not _is_missing(value)]
    kind = column_type(present)
    summary: dict[str, Any] = {
        "type": kind,
        "count": len(present),
        "missing": len(values) - len(present),
        "missing_share": (len(values) - len(present)) / len(values) if values else 0.0,
    }
    if kind in ("integer", "number"):
        import numpy as np  # imported here: registering without data should not pay for it

        summary |= numeric_summary(np.asarray([_float(value) for value in present], dtype=float))
    elif kind in ("timestamp", "date", "time"):
        summary |= range_summary(present)
    elif kind == "binary":
        summary |= length_summary(present)
    elif present:
        summary |= category_summary([_category(value) for value in present])
    return summary


def _float(value: int | float) -> float:
    """A number as a float; an integer beyond the float range (10**400) as an infinity."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _is_missing(value: Any) -> bool:
    if isinstance(value, Decimal):
        return value.is_nan()
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """Parquet's decimals as numbers (a profile is statistics, not an exact ledger)."""
    return float(value) if isinstance(value, Decimal) else value


def _category(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:  # nested lists and structs, or a stray value in a text column, as compact JSON
        text = orjson.dumps(value, default=_json_default, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= MAX_CATEGORY_LENGTH else text[: MAX_CATEGORY_LENGTH - 3] + "..."


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def range_summary(values: Sequence[Any]) -> dict[str, Any]:
    """Earliest and latest of dates, times or timestamps, in ISO 8601 (UTC for zoned timestamps)."""
    shown = sorted(_iso(value) for value in values)
    return {"min": shown[0], "max": shown[-1], "distinct": len(set(shown))}


def _iso(value: dt.date | dt.time) -> str:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.isoformat()


def length_summary(values: Sequence[bytes]) -> dict[str, Any]:
    lengths = [len(value) for value in values]
    return {"min_length": min(lengths), "max_length": max(lengths), "mean_length": sum(lengths) / len(lengths)}


def numeric_summary(values: np.ndarray[Any, Any]) -> dict[str, Any]:
    """Statistics of the finite values; infinities are counted apart (JSON has no infinity). Values near
    the ends of the float range (a constant nanosecond timestamp, a decimal(38), ±1e308) are handled:
    a constant column has one bin, and a statistic that still overflows is left out as None."""
    import numpy as np

    finite = values[np.isfinite(values)]
    summary: dict[str, Any] = {"infinite": int(len(values) - len(finite))} if len(finite) < len(values) else {}
    if not len(finite):
        return summary
    with np.errstate(all="ignore"):  # an overflow becomes inf or NaN here, and None in the profile
        counts, edges = _histogram(finite)
        quantiles = np.quantile(finite, QUANTILES)
        mean, std = _moments(finite)
    return summary | {
        "min": float(finite.min()),
        "max": float(finite.max()),
        "mean": mean,
        "std": std,
        "quantiles": {f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        "histogram": {"edges": [float(edge) for edge in edges], "counts": [int(count) for count in counts]},
    }


def _histogram(finite: np.ndarray[Any, Any]) -> tuple[list[int], list[float]]:
    import numpy as np

    low, high = float(finite.min()), float(finite.max())
    if low == high:  # numpy would make a bin of width 1 around it, which 1e16 cannot tell from its ends
        return [len(finite)], [low, high]
    bins = min(HISTOGRAM_BINS, len(np.unique(finite)))
    for scale in (1.0, 0.5):  # halved, the span of -1e308..1e308 fits in a float; power-of-two scaling is exact
        try:
            counts, edges = np.histogram(finite * scale, bins=bins)
        except ValueError:  # a span too small to split into `bins` finite bins, or too large to measure
            continue
        return [int(count) for count in counts], [float(edge) / scale for edge in edges]
    return [len(finite)], [low, high]


def _moments(finite: np.ndarray[Any, Any]) -> tuple[float, float]:
    """Mean and standard deviation, computed on values scaled into [-1, 1] when the plain sums overflow."""
    import numpy as np

    mean, std = float(finite.mean()), float(finite.std())
    if math.isfinite(mean) and math.isfinite(std):
        return mean, std
    exponent = int(np.frexp(np.max(np.abs(finite)))[1])
    scaled = np.ldexp(finite, -exponent)
    return float(np.ldexp(scaled.mean(), exponent)), float(np.ldexp(scaled.std(), exponent))


def category_summary(values: Sequence[str]) -> dict[str, Any]:
    counts = Counter(values)
    top = counts.most_common(MAX_CATEGORIES)
    shown = sum(count for _, count in top)
    return {
        "distinct": len(counts),
        "frequencies": {value: count / len(values) for value, count in top},
        "other_share": (len(values) - shown) / len(values),
    }
