"""Train the iris classifier deterministically from the data that ships with scikit-learn; save it with skops."""

from __future__ import annotations

from pathlib import Path

import skops.io
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent


def main() -> Path:
    data = load_iris()
    labels = data.target_names[data.target]  # predict answers with species names, not class numbers
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, random_state=0))
    model.fit(data.data, labels)
    target = HERE / "model" / "iris.skops"
    target.parent.mkdir(exist_ok=True)
    skops.io.dump(model, target)
    accuracy = model.score(data.data, labels)
    print(f"saved {target.relative_to(HERE)} (training accuracy {accuracy:.3f})")
    return target


if __name__ == "__main__":
    main()
