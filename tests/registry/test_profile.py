"""Reference profiles of tabular training data (CSV, JSON lines, Parquet)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.registry.profile import UnreadableData, profile_column, profile_data

CSV = "age,city,score,member\n30,paris,0.5,true\n40,rome,,false\n50,paris,1.5,true\n,paris,2.5,NA\n"


def test_csv_profile(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text(CSV)
    profile = profile_data([tmp_path / "train.csv"])
    assert profile is not None
    assert profile["rows"] == 4
    age, city = profile["columns"]["age"], profile["columns"]["city"]
    assert (age["type"], age["count"], age["missing"], age["missing_share"]) == ("integer", 3, 1, 0.25)
    assert (age["min"], age["max"], age["mean"], age["quantiles"]["p50"]) == (30.0, 50.0, 40.0, 40.0)
    assert sum(age["histogram"]["counts"]) == 3
    assert city["type"] == "string"
    assert city["frequencies"] == {"paris": 0.75, "rome": 0.25}
    assert profile["columns"]["score"]["type"] == "number"
    assert profile["columns"]["member"]["frequencies"] == {"true": 2 / 3, "false": 1 / 3}


def test_jsonl_and_parquet_profile_together(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text('{"x": 1, "tag": "a"}\n\n{"x": 2}\n')
    pq.write_table(pa.table({"x": [3, None], "tag": ["b", "b"]}), tmp_path / "data" / "b.parquet")
    (tmp_path / "data" / "notes.txt").write_text("ignored")
    profile = profile_data([tmp_path / "data"])
    assert profile is not None
    assert (profile["rows"], profile["files"]) == (4, ["a.jsonl", "b.parquet"])
    assert profile["columns"]["x"]["count"] == 3
    assert profile["columns"]["tag"]["missing"] == 1
    assert profile["columns"]["tag"]["frequencies"] == {"b": 2 / 3, "a": 1 / 3}


def test_no_tabular_data_gives_no_profile(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"png")
    assert profile_data([tmp_path / "images"]) is None


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"x": 1}\n[1, 2]\n')
    with pytest.raises(UnreadableData, match=r"'.*bad.jsonl' cannot be profiled: line 2 is not a JSON object"):
        profile_data([tmp_path / "bad.jsonl"])


def test_category_frequencies_are_capped() -> None:
    summary = profile_column([f"v{i}" for i in range(150)] + ["v0"])
    assert summary["distinct"] == 150
    assert len(summary["frequencies"]) == 100
    assert summary["other_share"] == pytest.approx(50 / 151)


def test_all_missing_column() -> None:
    assert profile_column([None, None]) == {"type": "empty", "count": 0, "missing": 2, "missing_share": 1.0}


def test_parquet_decimal_date_timestamp_binary_and_nested_columns(tmp_path: Path) -> None:
    import datetime as dt
    from decimal import Decimal

    utc = dt.UTC
    table = pa.table(
        {
            "price": pa.array([Decimal("1.50"), Decimal("2.25"), None], pa.decimal128(5, 2)),
            "day": [dt.date(2024, 2, 1), dt.date(2024, 1, 1), None],
            "at": [dt.datetime(2024, 3, 1, tzinfo=utc), None, dt.datetime(2024, 1, 1, 12, tzinfo=utc)],
            "blob": [b"ab", b"\x00\x01\x02", None],
            "items": [[1, 2], [3], None],
            "info": [{"a": Decimal("1.5")}, {"a": None}, None],
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    profile = profile_data([tmp_path / "t.parquet"])
    assert profile is not None
    columns = profile["columns"]
    assert (columns["price"]["type"], columns["price"]["mean"], columns["price"]["missing"]) == ("number", 1.875, 1)
    assert (columns["day"]["type"], columns["day"]["min"], columns["day"]["max"]) == (
        "date", "2024-01-01", "2024-02-01",
    )  # fmt: skip
    assert (columns["at"]["type"], columns["at"]["min"]) == ("timestamp", "2024-01-01T12:00:00+00:00")
    assert (columns["blob"]["type"], columns["blob"]["max_length"]) == ("binary", 3)
    assert columns["items"]["frequencies"] == {"[1,2]": 0.5, "[3]": 0.5}
    assert columns["info"]["frequencies"] == {'{"a":1.5}': 0.5, '{"a":null}': 0.5}
    import orjson

    orjson.dumps(profile)  # the whole profile is JSON, as the store keeps it


def test_infinities_are_counted_apart() -> None:
    summary = profile_column([1.0, float("inf"), 3.0])
    assert (summary["type"], summary["infinite"], summary["max"]) == ("number", 1, 3.0)


# -- numbers at the ends of the float range, compressed files, truncation ----------------------------------


@pytest.mark.parametrize(
    "values",
    [
        [1_700_000_000_123_456_789] * 5,  # one nanosecond timestamp in every row
        [10**16, 10**16 + 2, 10**16 + 2],  # a span too small to split into many bins
        [1e308, -1e308],  # a span a float cannot hold
        [1e308, 1e308, 1e308],  # a mean whose plain sum overflows
        [10**400, 1],  # an integer beyond the float range: counted as an infinity
    ],
)
def test_numbers_near_the_ends_of_the_float_range_are_profiled(values: list[float]) -> None:
    import math

    import orjson

    summary = profile_column(values)
    assert summary["type"] in ("integer", "number")
    assert sum(summary["histogram"]["counts"]) == len(values) - summary.get("infinite", 0)
    assert math.isfinite(summary["mean"]) and summary["min"] <= summary["mean"] <= summary["max"]
    orjson.dumps(summary)


def test_a_constant_decimal_38_column_from_parquet(tmp_path: Path) -> None:
    from decimal import Decimal

    big = Decimal("12345678901234567890123456789012345678")
    pq.write_table(pa.table({"d": pa.array([big] * 3, pa.decimal128(38, 0))}), tmp_path / "t.parquet")
    profile = profile_data([tmp_path / "t.parquet"])
    assert profile is not None
    column = profile["columns"]["d"]
    assert (column["histogram"]["counts"], column["min"], column["std"]) == ([3], float(big), 0.0)


def test_non_finite_statistics_are_stored_as_null() -> None:
    from shipyard.registry.profile import finite_only

    assert finite_only({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf")}, "e": "x"}) == {
        "a": None, "b": [1.0, None], "c": {"d": None}, "e": "x",
    }  # fmt: skip


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.bz2", ".tsv.xz", ".jsonl.gz", ".ndjson.bz2"])
def test_compressed_csv_and_json_lines_are_profiled(tmp_path: Path, suffix: str) -> None:
    import bz2
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[Path(suffix).suffix]
    if ".jsonl" in suffix or ".ndjson" in suffix:
        text = '{"age": 30, "city": "paris"}\n{"age": 40, "city": "rome"}\n'
    else:
        sep = "\t" if ".tsv" in suffix else ","
        text = f"age{sep}city\n30{sep}paris\n40{sep}rome\n"
    with opener(tmp_path / f"train{suffix}", "wt") as handle:
        handle.write(text)
    profile = profile_data([tmp_path])
    assert profile is not None
    assert (profile["rows"], profile["files"]) == (2, [f"train{suffix}"])
    assert profile["columns"]["age"]["mean"] == 35.0
    assert profile["columns"]["city"]["frequencies"] == {"paris": 0.5, "rome": 0.5}
    assert "truncated" not in profile


def test_a_damaged_compressed_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "train.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UnreadableData, match=r"'.*train.csv.gz' cannot be profiled: Not a gzipped file"):
        profile_data([tmp_path / "train.csv.gz"])


def test_a_profile_that_stops_at_the_row_limit_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shipyard.registry import profile as module

    monkeypatch.setattr(module, "MAX_ROWS", 5)
    pq.write_table(pa.table({"x": list(range(8))}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"x": list(range(4))}), tmp_path / "b.parquet")
    profile = profile_data([tmp_path])
    assert profile is not None
    assert (profile["rows"], profile["truncated"], profile["rows_total"]) == (5, True, 12)
    (tmp_path / "c.csv").write_text("x\n1\n")
    profile = profile_data([tmp_path])
    assert profile is not None
    assert (profile["rows"], profile["truncated"], profile["rows_total"]) == (5, True, None)  # unknown for CSV
