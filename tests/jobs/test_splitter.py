"""Splitting inputs: every format, folders, globs, resume offsets, flat memory, and early, named errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shipyard.jobs import misfits, splitter
from shipyard.jobs.errors import BadInput, BadOutput
from shipyard.jobs.output import OutputFolder
from shipyard.jobs.splitter import check, expand, rebatch, split, widen
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
        (["empty"], r"the folder holds no data file \(.csv, .jsonl, .ndjson, .json, .parquet or .pq; CSV and JSON "),
        (["notes.txt"], r"notes.txt'?: has an unknown format; name data files .csv, .jsonl, .ndjson, .json, .parq"),
        (["rows.parquet.gz"], r"rows.parquet.gz'?: is a compressed Parquet file, which cannot be read as a stream"),
        (["packed"], r"rows.parquet.gz'?: is a compressed Parquet file, which cannot be read as a stream"),
        ([], r"no input given"),
    ],
)
def test_unusable_inputs_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inputs: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "rows.parquet.gz").write_bytes(gzip.compress(b"PAR1"))
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "rows.parquet.gz").write_bytes(gzip.compress(b"PAR1"))
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


# -- fields that come and go, and types that change part-way -------------------------------------------------


def test_json_lines_keep_every_field_any_record_has(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.jsonl"
    sparse.write_text('{"id": 1}\n{"id": 2, "x": 5}\n{"id": 3, "x": 6, "note": "keep me"}\n')
    sources = expand([str(sparse)])
    check(sources, ["id", "x"])  # x is there, though not in the first record
    (chunk,) = split(sources, 10)
    assert chunk.table.to_pylist() == [
        {"id": 1, "x": None, "note": None},
        {"id": 2, "x": 5, "note": None},
        {"id": 3, "x": 6, "note": "keep me"},
    ]


def test_a_json_lines_field_that_turns_float_after_65536_lines_is_widened(tmp_path: Path) -> None:
    path = tmp_path / "drift.jsonl"
    lines = [f'{{"id": {i}, "x": {i}}}' for i in range(65_536)] + ['{"id": 65536, "x": 1.5, "late": "yes"}']
    path.write_text("\n".join(lines) + "\n")
    chunks = list(split(expand([str(path)]), batch_size=70_000))
    assert [c.table.num_rows for c in chunks] == [65_537]
    table = chunks[0].table
    assert (table.schema.field("x").type, table.column("x")[-1].as_py(), table.column("x")[3].as_py()) == (
        pa.float64(),
        1.5,
        3.0,
    )
    assert table.column("late").to_pylist()[-2:] == [None, "yes"]


def test_mixed_kinds_in_one_field_become_text_rather_than_fail(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"id": 1, "v": 7}\n{"id": 2, "v": "seven"}\n{"id": 3, "v": {"n": 7}}\n')
    (chunk,) = split(expand([str(path)]), 10)
    assert chunk.table.column("v").to_pylist() == ["7", "seven", '{"n":7}']


def _csv(path: Path, rows: int, last: str) -> Path:
    """A CSV far over one 1 MB block, with whole numbers in x, then `last` in x on the final row."""
    path.write_text("id,x,tag\n" + "".join(f"{i},{i}," + "\n" for i in range(rows)) + f"{rows},{last},late\n")
    return path


def test_a_csv_column_of_ints_that_holds_a_float_after_150k_rows_is_read_whole(tmp_path: Path) -> None:
    path = _csv(tmp_path / "drift.csv", 150_000, "1.5")
    chunks = list(split(expand([str(path)]), batch_size=50_000))
    assert sum(c.table.num_rows for c in chunks) == 150_001
    assert _ids(chunks) == list(range(150_001)), "no row is lost or sent twice by the reread"
    last = chunks[-1].table
    assert last.schema.field("x").type == pa.float64() and last.column("x")[-1].as_py() == 1.5
    assert last.column("tag")[-1].as_py() == "late", "a column of nulls takes the type of its first value"
    assert chunks[0].table.schema.field("x").type == pa.int64(), "batches sent before the widening keep theirs"


def test_a_resumed_csv_rereads_from_its_offset_with_the_wider_type(tmp_path: Path) -> None:
    path = _csv(tmp_path / "drift.csv", 150_000, "text now")
    resumed = list(split(expand([str(path)]), batch_size=50_000, start=(0, 140_000)))
    assert _ids(resumed) == list(range(140_000, 150_001))
    assert resumed[-1].table.column("x")[-1].as_py() == "text now"


@pytest.mark.parametrize(
    ("kind", "value", "widened"),
    [
        ("null", "7", pa.int64()),
        ("null", "7.5", pa.float64()),
        ("null", "seven", pa.string()),
        ("int64", "1.5", pa.float64()),
        ("int64", "1e9", pa.float64()),
        ("int64", "n/a?", pa.string()),
        ("double", "x", pa.string()),
        ("bool", "maybe", pa.string()),
        ("timestamp[s]", "soon", pa.string()),
    ],
)
def test_widen_takes_the_narrowest_type_that_holds_the_value(kind: str, value: str, widened: pa.DataType) -> None:
    assert widen(kind, value) == widened


def _marked(chunks: list) -> list[tuple[int, str, dict]]:
    """(id, error, values as read) of every row marked as not converting, in order."""
    found = []
    for chunk in chunks:
        table, marked = misfits.take(chunk.table)
        ids = table.column("id").to_pylist()
        found += [(ids[i], marked.errors[i], marked.as_read[i]) for i in sorted(marked.errors)]
    return found


def test_a_declared_value_that_does_not_convert_marks_its_row_alone(tmp_path: Path) -> None:
    path = _csv(tmp_path / "typed.csv", 150_000, "1.5")
    first = next(split(expand([str(path)]), batch_size=10, types={"x": pa.float64()}))
    assert first.table.schema.field("x").type == pa.float64(), "ints read as the declared float"
    chunks = list(split(expand([str(path)]), batch_size=50_000, types={"x": pa.int64()}))
    assert _ids(chunks) == list(range(150_001)), "no row is lost or sent twice by the reread"
    assert _marked(chunks) == [
        (150_000, "'x' is '1.5', which is not an int as the API's schema declares", {"x": "1.5"})
    ]
    assert chunks[-1].table.column("x")[-1].as_py() is None and chunks[-1].table.column("x").type == pa.int64()
    assert misfits.ERROR not in chunks[0].table.column_names, "a batch whose rows all converted carries no marks"
    jsonl = tmp_path / "typed.jsonl"
    jsonl.write_text('{"id": 1, "x": 1}\n\n{"id": 2, "x": "two"}\n{"id": 3, "x": [3]}\n')
    assert _marked(list(split(expand([str(jsonl)]), 10, types={"x": pa.int64()}))) == [
        (2, "'x' is 'two', which is not an int as the API's schema declares", {"x": "two"}),
        (3, "'x' is [3], which is not an int as the API's schema declares", {"x": [3]}),
    ]
    parquet = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "x": [1.0, 2.0, 2.5]}), parquet)
    assert _marked(list(split(expand([str(parquet)]), 10, types={"x": pa.int64()}))) == [
        (3, "'x' is 2.5, which is not an int as the API's schema declares", {"x": 2.5})
    ]
    assert next(split(expand([str(parquet)]), 10, types={"id": pa.float64()})).table.column("id").type == pa.float64()


def test_csv_values_of_a_declared_type_convert_as_the_csv_reader_does(tmp_path: Path) -> None:
    """Once a column is read as text (one value misfit), the rest convert as before: blanks around a
    number ignored, the CSV null markers null, bools in the reader's words."""
    path = tmp_path / "mixed.csv"
    path.write_text("id,x,ok\n0, 1.5,true\n1,n/a,False\n2,,1\n3,abc,yes\n4,1e3,0\n")
    (chunk,) = split(expand([str(path)]), 10, types={"x": pa.float64(), "ok": pa.bool_()})
    table, marked = misfits.take(chunk.table)
    assert table.column("x").to_pylist() == [1.5, None, None, None, 1000.0]
    assert table.column("ok").to_pylist() == [True, False, True, None, False]
    assert marked.errors == {
        3: "'x' is 'abc', which is not a float as the API's schema declares; "
        "'ok' is 'yes', which is not a bool as the API's schema declares"
    }
    assert marked.as_read == {3: {"x": "abc", "ok": "yes"}}


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("wrong.csv", "id,x\n0,abc\n1,def\n", "row 0 (line 2) is 'abc'"),
        ("wrong.jsonl", '{"id": 0, "x": "abc"}\n{"id": 1}\n', "record 0 is 'abc'"),
    ],
)
def test_a_file_whose_declared_column_holds_no_value_of_its_type_fails_at_submit(
    tmp_path: Path, name: str, text: str, where: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(BadInput) as caught:
        check(expand([str(path)]), [], types={"x": pa.float64()})
    assert caught.value.message == (
        f"input '{path}': no value of column 'x' in its first 2 rows is a float as the API's schema declares "
        f"({where}); fix the file, or change the field's type in the API's schema"
    )
    check(expand([str(path)]), [], types={"x": pa.string()})


def test_a_parquet_column_of_another_kind_entirely_fails_at_submit(tmp_path: Path) -> None:
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"id": [0, 1], "x": [[1.0], [2.0]]}), path)
    with pytest.raises(BadInput, match=r"no value of column 'x' in its first 2 rows is a float .*\(row 0 is \[1.0\]\)"):
        check(expand([str(path)]), [], types={"x": pa.float64()})
    mixed = tmp_path / "mixed.parquet"
    pq.write_table(pa.table({"id": [0, 1], "x": ["1.5", "abc"]}), mixed)
    check(expand([str(mixed)]), [], types={"x": pa.float64()})  # one bad value: a dead letter at run time


# -- a .json list, streamed -------------------------------------------------------------------------------


def test_a_json_list_is_decoded_as_it_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(splitter, "_JSON_BLOCK", 7)  # records cut across many reads
    path = tmp_path / "items.json"
    path.write_text(
        ' [ {"id": 0, "x": "a, ]"} ,\n' + ",".join(f'{{"id": {i}, "x": {i}}}' for i in range(1, 50)) + "]\n"
    )
    chunks = list(split(expand([str(path)]), batch_size=20))
    assert _ids(chunks) == list(range(50))
    assert chunks[0].table.column("x")[0].as_py() == "a, ]"
    empty = tmp_path / "empty.json"
    empty.write_text("[ ]")
    assert list(split(expand([str(empty)]), 10)) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"id": 1}, {"id": 2', r"list.json': is not valid JSON at record 1"),
        ('[{"id": 1}] {"id": 2}', r"list.json': has text after the list's closing \]"),
        ('[{"id": 1} {"id": 2}]', r"list.json': is not valid JSON after record 0: expected , or \]"),
        ('[{"id": 1}, 2]', r"list.json': must be a list of records"),
    ],
)
def test_a_broken_json_list_names_the_record(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "list.json"
    path.write_text(content)
    with pytest.raises(BadInput, match=message):
        list(split(expand([str(path)]), 10))


# -- locations --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["memory://data/rows.csv", "simplecache::memory://data/rows.csv"])
def test_process_local_filesystems_are_refused_for_input_and_output(url: str) -> None:
    import fsspec

    fsspec.filesystem("memory").pipe("/data/rows.csv", b"id,x\n1,1\n")
    with pytest.raises(BadInput, match=r"lives in one process's memory .*; use a local path or a shared store"):
        expand([url])
    with pytest.raises(BadOutput, match=r"output 'memory://out': lives in one process's memory"):
        OutputFolder("memory://out")


def test_local_paths_are_normalised(tmp_path: Path) -> None:
    write_rows(tmp_path / "in" / "a.csv", range(2))
    (source,) = expand([str(tmp_path / "in" / ".." / "in" / "." / "a.csv")])
    assert source.url == str(tmp_path / "in" / "a.csv")


def test_an_id_column_the_input_lacks_is_named_with_the_columns_it_has(tmp_path: Path) -> None:
    source = write_rows(tmp_path / "rows.csv", range(2))
    with pytest.raises(
        BadInput,
        match=r"rows.csv': has no column 'nope' for --id-column \(it has: id, x\); pass one of its columns",
    ):
        check(expand([str(source)]), [], id_column="nope")
