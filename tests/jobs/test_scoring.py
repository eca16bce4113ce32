"""Scoring one batch: batch failures, per-row exceptions, row-by-row isolation, and results as columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import skops.io
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from shipyard.jobs.misfits import Misfits, take
from shipyard.jobs.scoring import (
    ROW_COLUMN,
    BatchFailed,
    RowByRow,
    dead_letters,
    feature_matrix,
    output_table,
    score,
    score_table,
)
from shipyard.jobs.states import Mode, backoff, final_state, mode_for
from shipyard.serving.builtin.sklearn import SklearnHandler
from shipyard.serving.handler import bind
from tests.jobs.handlers import Doubler, PerRow

RECORDS = [{"id": i, "x": i} for i in range(5)]


def test_a_raising_batch_fails_whole_then_row_by_row_isolates_the_bad_rows() -> None:
    handler = bind(Doubler({"bad": [3]}, None))
    with pytest.raises(BatchFailed, match="ValueError: cannot score x=3"):
        score(handler, RECORDS, Mode.batch)
    scored = score(handler, RECORDS, Mode.rows)
    assert scored.ok == [0, 1, 2, 4]
    assert scored.errors == {3: "ValueError: cannot score x=3"}
    assert handler.instance.batch_sizes == [5, 1, 1, 1, 1, 1], "rows mode calls predict_batch with one row"


def test_exceptions_returned_as_results_fail_only_their_rows() -> None:
    class Partial:
        def predict_batch(self, payloads: list[Any]) -> list[Any]:
            return [ValueError("bad row") if p["x"] == 1 else p["x"] for p in payloads]

    scored = score(bind(Partial()), RECORDS[:3], Mode.batch)
    assert (scored.ok, scored.results, scored.errors) == ([0, 2], [0, 2], {1: "ValueError: bad row"})


def test_wrong_result_count_fails_the_batch() -> None:
    class Short:
        def predict_batch(self, payloads: list[Any]) -> list[Any]:
            return payloads[1:]

    with pytest.raises(BatchFailed, match="returned 4 results for 5 rows"):
        score(bind(Short()), RECORDS, Mode.batch)


def test_results_become_columns_beside_the_inputs_in_order() -> None:
    inputs = pa.Table.from_pylist(RECORDS)
    scored = score(bind(PerRow({}, None)), RECORDS, Mode.batch)
    table = output_table(inputs, scored, None)
    assert table.column_names == ["id", "x", "prediction"]
    assert table.column("prediction").to_pylist() == [1, 2, 3, 4, 5]
    clash = score(bind(Doubler({}, None)), RECORDS, Mode.batch)
    clash.results = [{"x": r["double"], "extra": [1, 2]} for r in clash.results]
    assert output_table(inputs, clash, None).column_names == ["id", "x", "x_result", "extra"], "clash → _result"
    assert output_table(inputs, clash, "id").column_names == ["id", "x", "extra"], "only the id column is kept"


def test_dead_letters_carry_the_error_source_and_row_number() -> None:
    inputs = pa.Table.from_pylist(RECORDS)
    scored = score(bind(Doubler({"bad": [2]}, None)), RECORDS, Mode.rows)
    letters, table = dead_letters(inputs, scored, [100, 101, 102, 103, 104], "in.csv")
    assert letters == [{"id": 2, "x": 2, "_error": "ValueError: cannot score x=2", "_source": "in.csv", "_row": 102}]
    assert table.column(ROW_COLUMN).to_pylist() == [102]


def test_retry_policy() -> None:
    assert [mode_for(f, max_retries=2) for f in range(7)] == [Mode.batch] * 3 + [Mode.rows] * 3 + [Mode.dead]
    assert [backoff(f) for f in (1, 2, 3, 10)] == [0.5, 1.0, 2.0, 30.0]
    assert (final_state(0), final_state(1)) == ("succeeded", "completed_with_failures")


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = load_iris()
    folder = tmp_path_factory.mktemp("iris")
    estimator = LogisticRegression(max_iter=500).fit(data.data * 10, data.target_names[data.target])
    skops.io.dump(estimator, folder / "model.skops")
    return folder


FEATURES = ["a", "b", "c", "d"]


def _iris_inputs() -> pa.Table:
    X, _ = load_iris(return_X_y=True)
    return pa.table(
        {
            "id": pa.array(range(len(X)), pa.int64()),
            "a": pa.array(X[:, 0], pa.float64()),
            "b": pa.array(X[:, 1], pa.float32()),
            "c": pa.array((X[:, 2] * 10).round().astype("int32")),
            "d": pa.array((X[:, 3] * 10).round().astype("int64")),
        }
    )


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
@pytest.mark.parametrize("features", [FEATURES, ["c", "d", "c", "d"]], ids=["mixed", "integers"])
def test_builtin_columnar_path_equals_the_records_path(iris_dir: Path, method: str, features: list[str]) -> None:
    handler = bind(SklearnHandler({"method": method}, str(iris_dir), feature_names=features))
    inputs = _iris_inputs()
    matrix = feature_matrix(inputs, features)
    assert matrix is not None, "plain numbers without nulls take the columnar path"
    by_records = output_table(inputs, score(handler, inputs.to_pylist(), Mode.batch), None)
    by_matrix = output_table(inputs, score_table(handler, inputs, Mode.batch, columnar=True), None)
    assert by_matrix.equals(by_records)
    assert by_matrix.schema == by_records.schema


def test_columnar_path_falls_back_to_records_for_nulls_strings_and_missing_columns(iris_dir: Path) -> None:
    inputs = _iris_inputs()
    nulls = inputs.set_column(1, "a", pa.array([None, *inputs.column("a").to_pylist()[1:]], pa.float64()))
    text = inputs.set_column(1, "a", pa.array([str(v) for v in inputs.column("a").to_pylist()]))
    for table in (nulls, text, inputs.drop_columns(["d"]), inputs.slice(0, 0)):
        assert feature_matrix(table, FEATURES) is None
    assert feature_matrix(inputs, None) is None
    handler = bind(SklearnHandler({}, str(iris_dir), feature_names=FEATURES))
    rejected = score_table(handler, nulls, Mode.batch, columnar=True)  # the records path's own verdict
    assert list(rejected.errors) == [0], "the handler answers each payload alone: only the null row fails"
    assert "the model rejected the input" in rejected.errors[0]
    missing = score_table(handler, inputs.drop_columns(["d"]), Mode.batch, columnar=True)
    assert len(missing.errors) == inputs.num_rows and "lacks the feature(s) d" in missing.errors[0]


def test_rows_whose_values_did_not_convert_are_dead_lettered_as_read_and_never_run() -> None:
    inputs = pa.Table.from_pylist([{"id": i, "x": None if i == 1 else i} for i in range(5)])
    marked = Misfits({1: "'x' is 'abc', which is not an int as the API's schema declares"}, {1: {"x": "abc"}})
    handler = bind(Doubler({"bad": [3]}, None))
    seen: list[int] = []
    rows = RowByRow({3: "not run again: the worker died on this row (w exited with code 3)"}, seen.append)
    scored = score_table(handler, inputs, Mode.rows, rows=rows, preset=marked.errors)
    assert scored.ok == [0, 2, 4] and [r["double"] for r in scored.results] == [0, 4, 8]
    assert scored.errors == {1: marked.errors[1], 3: rows.skip[3]}
    assert seen == [0, 2, 4], "the row the worker is on is named by its index in the whole batch"
    assert handler.instance.batch_sizes == [1, 1, 1]
    batch = score_table(handler, inputs, Mode.batch, preset=marked.errors | {3: "x"})
    assert batch.ok == [0, 2, 4] and handler.instance.batch_sizes[-1] == 3, "one call without the marked rows"
    records, kept = dead_letters(inputs, scored, [10, 11, 12, 13, 14], "in.csv", marked)
    assert [(r["id"], r["x"], r["_row"]) for r in records] == [(1, "abc", 11), (3, 3, 13)]
    again, remarked = take(kept.drop_columns([ROW_COLUMN]))
    assert remarked.errors == {0: marked.errors[1]} and remarked.as_read == {0: {"x": "abc"}}
    assert again.column_names == ["id", "x"]
