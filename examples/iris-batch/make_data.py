"""Write measurements to score: `python make_data.py [ROWS] [FILES]` → data/part-N.parquet (and copy the model)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
CENTERS = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]])


def measurements(rows: int, seed: int, first_id: int = 0) -> pa.Table:
    """Rows around the three species' centers, each with a unique id to join the predictions back."""
    rng = np.random.default_rng(seed)
    values = CENTERS[rng.integers(0, 3, rows)] + rng.normal(0, 0.25, (rows, 4))
    columns = {"id": pa.array(np.arange(first_id, first_id + rows))}
    columns.update({name: pa.array(values[:, i].round(2)) for i, name in enumerate(FEATURES)})
    return pa.table(columns)


def main(rows: int = 100_000, files: int = 4) -> None:
    model = HERE.parent / "iris" / "model"
    if not (model / "iris.skops").exists():
        sys.exit("train the model first: python examples/iris/train.py")
    shutil.copytree(model, HERE / "model", dirs_exist_ok=True)
    (HERE / "data").mkdir(exist_ok=True)
    per_file = rows // files
    for index in range(files):
        table = measurements(per_file, seed=index, first_id=index * per_file)
        pq.write_table(table, HERE / "data" / f"part-{index}.parquet", row_group_size=50_000)
    print(f"wrote {per_file * files} rows in {files} files under data/")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
