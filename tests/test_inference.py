"""`tollgate spec infer`: a spec from data that passes `spec check`, with a baseline's suggestions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import wine_frame
from tollgate import baseline, inference, validation
from tollgate import spec as specs


def test_a_classification_with_integer_labels_gets_a_checked_spec_and_a_baseline():
    frame = wine_frame(400, seed=2)
    text = inference.infer(frame, "wine", "cultivar", source="wine.csv")
    spec = specs.loads(text)
    assert spec.task == "classification" and spec.columns["cultivar"].allowed == (0, 1, 2)
    assert spec.columns["magnesium"].type == "int" and spec.columns["vineyard"].allowed == ("east", "north", "south")
    assert spec.feature_lists.categorical == ("vineyard",) and "cultivar" not in spec.features
    assert spec.primary_metric == "accuracy" and spec.model.estimator in baseline.CANDIDATES
    assert 0.5 < spec.policy.threshold < 1
    assert validation.validate(frame, spec).status == "valid"       # the data it came from passes
    low = spec.columns["alcohol"]
    assert low.min <= frame["alcohol"].min() and low.max >= frame["alcohol"].max()


def test_a_numeric_target_with_many_values_is_a_regression():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300), "kind": rng.choice(["a", "b"], 300),
                          "id": [f"row-{i}" for i in range(300)]})
    frame["y"] = frame["x"] * 3 + rng.normal(scale=0.1, size=300)
    text = inference.infer(frame, "toy", "y", with_baseline=False)
    spec = specs.loads(text)
    assert spec.task == "regression" and spec.primary_metric == "r2" and spec.policy.threshold == 0
    assert "id" not in spec.features and "unique per row" in text      # an identifier is not a feature
    binary = frame.assign(y=(frame["y"] > 0).astype(int))
    assert specs.loads(inference.infer(binary, "toy", "y", with_baseline=False)).primary_metric == "roc_auc"


@pytest.mark.parametrize(("frame", "target", "message"), [
    (pd.DataFrame({"a": [1, 2]}), "b", "no column 'b' in the data"),
    (pd.DataFrame({"a": [1, 2], "y": ["k", "k"]}), "y", "has a single value"),
    (pd.DataFrame({"y": [1.5, 2.5]}), "y", "no column besides the target"),
])
def test_data_that_cannot_give_a_spec_says_why(frame, target, message):
    with pytest.raises(inference.InferError, match=message):
        inference.infer(frame, "toy", target, with_baseline=False)


@pytest.mark.parametrize(("stem", "name"), [("Wine Quality-2024", "wine_quality_2024"), ("2024_sales", "sales"),
                                            ("données", "donn_es"), ("___", "dataset")])
def test_a_dataset_name_from_a_file_name(stem, name):
    assert inference.dataset_name(stem) == name and specs.check_dataset_name(name) == name


def test_spec_check_train_runs_the_first_batch_through_the_chain_offline(tmp_path):
    import subprocess
    import sys

    import yaml

    frame = wine_frame(400, seed=2)
    data = tmp_path / "wine.csv"
    frame.to_csv(data, index=False)
    raw = yaml.safe_load(inference.infer(frame, "wine", "cultivar", with_baseline=False))
    raw["policy"]["threshold"] = 0.5
    spec_path = tmp_path / "wine.yaml"
    spec_path.write_text(yaml.safe_dump(raw))

    def check() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tollgate", "spec", "check", str(spec_path), "--data",
                               str(data), "--train"], capture_output=True, text=True)
    served = check()
    assert served.returncode == 0 and "decision: promote: first model" in served.stdout, served.stdout
    assert "trained on 280 rows, evaluated on 120 held-out rows" in served.stdout
    assert "permutation importance" in served.stdout and "proline" in served.stdout   # what it learned
    raw["policy"]["threshold"] = 1.0   # unreachable: a person would have to decide
    spec_path.write_text(yaml.safe_dump(raw))
    reviewed = check()
    assert reviewed.returncode == 2 and "decision: review" in reviewed.stdout
