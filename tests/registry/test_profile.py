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
