"""Model artifacts: the exact allow-list of skops nodes, pinned by fitting every supported estimator family, and
a crafted artifact that runs code under the old prefix check refused before anything is built."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.hostile import OLD_PREFIXES, crafted_artifact
from tollgate import artifacts, training
from tollgate import spec as specs

RAW = {
    "name": "tiny", "task": "regression", "target": "y",
    "columns": {"y": {"type": "float"}, "a": {"type": "float"}, "b": {"type": "float"}, "c": {"type": "string"}},
    "features": {"numeric": ["a", "b"], "categorical": ["c"]},
    "policy": {"threshold": 0.0},
}


def frame(n: int = 240, classes: int = 0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    a[::17] = np.nan   # missing values reach the imputers
    out = pd.DataFrame({"a": a, "b": b, "c": rng.choice(["x", "y", "z", None], size=n)})
    y = np.nan_to_num(a) * 2 + b
    out["y"] = np.abs(y) + 0.1 if not classes else np.asarray([f"k{i}" for i in range(classes)])[
        np.digitize(y, np.quantile(y, np.linspace(0, 1, classes + 1)[1:-1]))]
    return out


def tiny(task: str = "regression", estimator: str = "hist_gradient_boosting", **params) -> specs.DatasetSpec:
    raw = {**RAW, "task": task, "model": {"estimator": estimator, "params": params}}
    if task == "classification":
        raw["columns"] = {**RAW["columns"], "y": {"type": "string"}}
        raw["evaluation"] = {"primary_metric": "accuracy"}
    return specs.from_dict(raw)


# Every family the trainer supports, for each task, and the params that change what a model holds (the
# losses gradient boosting can be told to use, a search candidate's params).
CASES = [(task, estimator, {}) for task in ("regression", "binary", "multiclass") for estimator in specs.ESTIMATORS
         if (task == "regression") <= ("regression" in specs.ESTIMATOR_TASKS.get(estimator, specs.TASKS))]
CASES += [("regression", "hist_gradient_boosting", {"loss": loss})
          for loss in ("absolute_error", "poisson", "gamma")]
CASES += [("regression", "hist_gradient_boosting", {"loss": "quantile", "quantile": 0.9})]
CASES += [("regression", "random_forest", {"n_estimators": 5, "max_depth": 3, "criterion": "absolute_error"}),
          ("multiclass", "hist_gradient_boosting", {"max_iter": 20, "learning_rate": 0.3, "class_weight": "balanced"}),
          ("binary", "linear", {"C": 0.5})]


@pytest.mark.parametrize(("task", "estimator", "params"), CASES)
def test_what_the_trainer_produces_is_exactly_allow_listed(task, estimator, params):
    classes = {"regression": 0, "binary": 2, "multiclass": 3}[task]
    spec = tiny("regression" if not classes else "classification", estimator, **params)
    model = training.fit(frame(classes=classes), spec)
    blob = artifacts.dumps(model)
    assert artifacts.nodes(blob) <= artifacts.ALLOWED_NODES
    import skops.io as sio

    assert set(sio.get_untrusted_types(data=blob)) <= artifacts.TRUSTED_TYPES
    loaded = artifacts.loads(blob, artifacts.sha256(blob))
    sample = training.features_frame(frame(classes=classes, seed=1), spec)
    assert (loaded.predict(sample) == model.predict(sample)).all()


def test_the_allow_list_names_types_exactly_never_by_prefix():
    assert all(not t.endswith(".") and "*" not in t for t, _ in artifacts.ALLOWED_NODES)
    assert not {loader for _, loader in artifacts.ALLOWED_NODES} & {"FunctionNode", "MethodNode", "PartialNode"}
    builtins_ = {t for t, _ in artifacts.ALLOWED_NODES if t.startswith("builtins.")}
    assert builtins_ <= {"builtins.dict", "builtins.list", "builtins.tuple", "builtins.slice", "builtins.str",
                         "builtins.int", "builtins.float", "builtins.bool", "builtins.NoneType"}


def test_a_crafted_artifact_passed_the_old_check_and_ran_code(tmp_path):
    """The attack is real: with the old prefix trust, loading and predicting runs the payload."""
    import skops.io as sio

    marker = tmp_path / "pwned"
    blob = crafted_artifact(marker)
    untrusted = sio.get_untrusted_types(data=blob)
    assert untrusted and all(t.startswith(OLD_PREFIXES) for t in untrusted)
    model = sio.loads(blob, trusted=untrusted)
    with pytest.raises(Exception):
        model.predict(np.zeros((2, 2)))
    assert marker.exists()


def test_a_crafted_artifact_with_its_correct_hash_is_refused_and_no_code_runs(tmp_path):
    marker = tmp_path / "pwned"
    blob = crafted_artifact(marker)
    with pytest.raises(artifacts.ArtifactError) as refused:
        artifacts.loads(blob, artifacts.sha256(blob))
    assert "builtins.eval" in str(refused.value) and "builtins.str (MethodNode)" in str(refused.value)
    assert "allow-list" in str(refused.value) and not marker.exists()


def test_tampered_or_foreign_bytes_are_refused():
    model = training.fit(frame(), tiny())
    blob = artifacts.dumps(model)
    with pytest.raises(artifacts.ArtifactError, match="hash to"):
        artifacts.loads(blob + b"x", artifacts.sha256(blob))
    with pytest.raises(artifacts.ArtifactError, match="not a skops model file"):
        artifacts.loads(b"not a zip", artifacts.sha256(b"not a zip"))


def test_a_model_the_loaders_would_refuse_is_caught_by_the_check_the_trainer_runs():
    """The trainer runs artifacts.check before it registers: a family outside the allow-list never becomes a
    version that fails only at the evaluator."""
    from sklearn.linear_model import Lasso

    spec = tiny(estimator="linear")
    pipeline = training.build_pipeline(spec)
    pipeline.steps[-1] = ("model", Lasso())
    pipeline.fit(training.features_frame(frame(), spec), frame()["y"])
    with pytest.raises(artifacts.ArtifactError, match="sklearn.linear_model._coordinate_descent.Lasso"):
        artifacts.check(artifacts.dumps(pipeline))

