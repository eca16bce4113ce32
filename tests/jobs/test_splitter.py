"""Splitting inputs: every format, folders, globs, resume offsets, flat memory, and early, named errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.jobs.errors import BadInput
from shipyard.jobs.splitter import check, expand, rebatch, split
from tests.jobs.conftest import write_rows


def _ids(chunks: list) -> list[int]:
    return [i for chunk in chunks for i in chunk.table.column("id").to_pylist()]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_each_format_splits_into_exact_batches_in_order(tmp_path: Path, suffix: str) -> None:
    source = write_rows(tmp_path / f"rows{suffix}", range(23))
    chunks = list(split(expand([str(source)]), batch_size=5))
    assert [c.table.num_rows for c in chunks] == [5, 5, 5, 5, 3]
    assert [c.offset for c in chunks] == [0, 5, 10, 15, 20]
    assert _ids(chunks) == list(range(23))


def test_gzip_json_lines_and_a_json_list_are_read(tmp_path: Path) -> None:
    packed = tmp_path / "rows.jsonl.gz"
    packed.write_bytes(gzip.compress(b'{"id": 1, "x": 1}\n{"id": 2, "x": 2}\n'))
    listed = tmp_path / "items.json"
    listed.write_text('[{"id": 3, "x": 3}, {"id": 4, "x": 4}]')
    assert _ids(list(split(expand([str(packed), str(listed)]), 10))) == [1, 2, 3, 4]


def test_folders_and_globs_expand_sorted_and_batches_never_span_files(tmp_path: Path) -> None:
    write_rows(tmp_path / "in" / "b.csv", range(3, 6))
    write_rows(tmp_path / "in" / "a.parquet", range(3))
    write_rows(tmp_path / "in" / "_skip" / "c.csv", range(100, 101))
    (tmp_path / "in" / "notes.txt").write_text("not data")
    sources = expand([str(tmp_path / "in")])
    assert [Path(s.url).name for s in sources] == ["a.parquet", "b.csv"]
    globbed = expand([str(tmp_path / "in" / "*.csv")])
    assert [s.format for s in globbed] == ["csv"]
    chunks = list(split(sources, batch_size=4))
    assert [(c.source_index, c.table.num_rows) for c in chunks] == [(0, 3), (1, 3)]


def test_resume_starts_at_a_source_and_row_offset(tmp_path: Path) -> None:
    sources = expand([str(write_rows(tmp_path / f"f{i}.parquet", range(i * 20, i * 20 + 20))) for i in range(2)])
    resumed = list(split(sources, batch_size=6, start=(0, 12)))
    assert [(c.source_index, c.offset) for c in resumed] == [(0, 12), (0, 18), (1, 0), (1, 6), (1, 12), (1, 18)]
    assert _ids(resumed) == list(range(12, 40))


def test_rebatch_joins_and_cuts_record_batches() -> None:
    batches = [pa.record_batch({"a": list(range(n))}) for n in (3, 1, 7, 2)]
    assert [t.num_rows for t in rebatch(batches, 4)] == [4, 4, 4, 1]


def test_memory_stays_flat_while_splitting_a_large_file(tmp_path: Path) -> None:
    """1.6M rows (26 MB as Arrow columns) pass through while Arrow never holds more than a few MB."""
    path = tmp_path / "big.parquet"
    rows = 1_600_000
    pq.write_table(pa.table({"id": pa.array(range(rows)), "x": pa.array(range(rows))}), path, row_group_size=20_000)
    baseline = pa.total_allocated_bytes()
    peak, total = 0, 0
    for chunk in split(expand([str(path)]), batch_size=1000):
        total += chunk.table.num_rows
        peak = max(peak, pa.total_allocated_bytes() - baseline)
    assert total == rows
    assert peak < 6 * 1024**2, f"Arrow held {peak} bytes at once"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["missing.csv"], r"input '.*missing.csv': no such file or folder; check the path"),
        (["*.nothing"], r"the glob matches no file"),
        (["empty"], r"the folder holds no .csv, .jsonl or .parquet file"),
        (["notes.txt"], r"notes.txt'?: has an unknown format; name files .csv, .jsonl"),
        ([], r"no input given"),
    ],
)
def test_unusable_inputs_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inputs: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BadInput, match=message):
        expand(inputs)


def test_check_names_the_file_and_the_missing_column(tmp_path: Path) -> None:
    good = write_rows(tmp_path / "good.csv", range(3))
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"id": [1]}), other)
    with pytest.raises(
        BadInput, match=r"other.parquet': lacks the column\(s\) x that the API's schema requires \(it has: id\)"
    ):
        check(expand([str(good), str(other)]), ["id", "x"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.parquet", b"not parquet at all", r"broken.parquet': cannot be read as Parquet"),
        ("broken.jsonl", b'{"id": 1}\n{oops\n', r"broken.jsonl:2': is not valid JSON"),
        ("scalar.jsonl", b"[1, 2]\n", r"scalar.jsonl': must be a list of records"),
    ],
)
def test_unreadable_files_fail_naming_the_file(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadInput, match=message):
        list(split(expand([str(path)]), 10))
