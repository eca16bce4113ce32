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
