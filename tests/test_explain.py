"""Exact attributions: TreeSHAP against every coalition, and per declared feature summing to the output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from examples.breast_cancer import make_batches
from tests.conftest import taxi_period
from tollgate import explain, inputs, prepared, training, treeshap, validation
from tollgate import spec as specs
from tollgate.topology import ROOT


def flat(model):
    forest = prepared.Forest(model)
    nodes = [p.nodes for iteration in model._predictors for p in iteration]
    depth = treeshap.max_depth(forest.feature, forest.left, forest.right, forest.roots)
    assert depth == int(max(int(n["depth"].max()) for n in nodes))   # what scikit-learn records, from the structure
    assert forest.count.sum() == sum(float(n["count"].sum()) for n in nodes)
    return forest, forest.count, depth


@pytest.mark.parametrize("kind", ["regression", "multiclass"])
def test_tree_shap_is_the_shapley_value_of_every_coalition(kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    x[rng.random(x.shape) < 0.1] = np.nan       # missing values take each node's learned side
    signal = np.nan_to_num(x[:, 0]) * 2 + np.nan_to_num(x[:, 1]) ** 2 + (x[:, 2] > 0)
    if kind == "regression":
        model = HistGradientBoostingRegressor(max_iter=15, max_depth=4, random_state=0).fit(x, signal)
    else:
        model = HistGradientBoostingClassifier(max_iter=8, max_depth=3, random_state=0).fit(
            x, np.digitize(signal, [0.5, 2.0]))
    forest, count, depth = flat(model)
    rows = np.ascontiguousarray(x[:6])
    phi = np.zeros((6, forest.k, 4))
    treeshap.shap_values(rows, forest.feature, forest.threshold, forest.missing_left, forest.left, forest.right,
                         forest.value, count, forest.roots, forest.k, depth, phi)
    exact = treeshap.brute_force(rows, forest.feature, forest.threshold, forest.missing_left, forest.left,
                                 forest.right, forest.value, count, forest.roots, forest.k, 4)
    assert np.abs(phi - exact).max() < 1e-9
    expected = treeshap.expected_value(forest.feature, forest.left, forest.right, forest.value, count, forest.roots,
                                       forest.k) + forest.baseline
    assert np.abs(phi.sum(axis=2) + expected - forest.raw(rows)).max() < 1e-9   # efficiency


def columns_of(frame: pd.DataFrame, spec) -> prepared.Columns:
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")   # as a request sends them
    return inputs.Checker(spec).instances({"instances": records})


@pytest.fixture(scope="module")
def taxi_fit(taxi, taxi_spec):
    data = validation.validate(taxi_period(taxi, "2013-01-01", "2014-01-01"), taxi_spec).data
    return data, training.fit(data, taxi_spec)


def test_a_fare_is_explained_per_declared_feature_and_adds_up(taxi_fit, taxi_spec):
    data, model = taxi_fit
    explainer = explain.Explainer(model, taxi_spec)
    rows = data.head(20)
    answers = explainer.explain(columns_of(training.features_frame(rows, taxi_spec), taxi_spec))
    predictions = model.predict(training.features_frame(rows, taxi_spec))
    for answer, predicted in zip(answers, predictions):
        assert set(answer["featureAttributions"]) == set(taxi_spec.features)
        assert answer["instanceOutputValue"] == pytest.approx(predicted, abs=1e-9)   # squared error: raw = value
        total = sum(answer["featureAttributions"].values())
        assert abs(total - (answer["instanceOutputValue"] - answer["baselineOutputValue"])) < 1e-6
    # the baseline is the mean fare the trees learned; a long trip's distance pushes its fare up
    long = max(answers, key=lambda a: a["instanceOutputValue"])
    assert long["featureAttributions"]["trip_miles"] > 0 or long["featureAttributions"]["trip_seconds"] > 0


@pytest.mark.parametrize("estimator", ["hist_gradient_boosting", "linear"])
def test_a_diagnosis_is_explained_in_log_odds_of_the_positive_class(tmp_path, estimator):
    spec = specs.load(ROOT / "datasets" / "breast_cancer.yaml")
    spec = specs.replace(spec, model__estimator=estimator, model__params={})
    first, _ = make_batches(tmp_path)
    data = validation.validate(pd.read_csv(first), spec).data
    model = training.fit(data, spec)
    frame = training.features_frame(data.head(10), spec)
    answers = explain.Explainer(model, spec).explain(columns_of(frame, spec))
    proba = model.predict_proba(frame)[:, 1]
    for answer, p in zip(answers, proba):
        assert answer["outputDisplayName"] == str(model.classes_[1]) and answer["outputSpace"] == "log-odds"
        assert answer["instanceOutputValue"] == pytest.approx(np.log(p / (1 - p)), abs=1e-6)
        total = sum(answer["featureAttributions"].values())
        assert abs(total - (answer["instanceOutputValue"] - answer["baselineOutputValue"])) < 1e-6


def test_families_without_an_exact_method_say_so(taxi_fit, taxi_spec):
    data, _ = taxi_fit
    spec = specs.replace(taxi_spec, model__estimator="random_forest", model__params={"n_estimators": 5})
    model = training.fit(data.head(500), spec)
    with pytest.raises(explain.Unexplainable, match="random_forest has no exact attribution method"):
        explain.Explainer(model, spec)
    summary = explain.summarise(model, spec, data.head(100), rows=50)   # the monitor's and trainer's summary
    assert summary["method"] is None and "random_forest" in summary["reason"] and "mean_abs" not in summary


def test_a_summary_is_the_mean_absolute_attribution_of_a_seeded_sample(taxi_fit, taxi_spec):
    data, model = taxi_fit
    summary = explain.summarise(model, taxi_spec, data, rows=200, seed=3)
    assert summary == explain.summarise(model, taxi_spec, data, rows=200, seed=3)
    assert summary["method"] == "tree_shap" and summary["rows"] == 200
    rows = data.sample(200, random_state=3)
    each = [a["featureAttributions"] for a in
            explain.Explainer(model, taxi_spec).explain(columns_of(rows[list(taxi_spec.features)], taxi_spec))]
    for name in taxi_spec.features:
        assert summary["mean_abs"][name] == pytest.approx(np.mean([abs(a[name]) for a in each]), rel=1e-9)
    assert explain.summarise(model, taxi_spec, data.head(0), rows=200)["reason"] == "no rows to explain"


@pytest.mark.parametrize("kind", ["regression", "binary", "multiclass"])
def test_tree_shap_agrees_with_the_shap_package(kind):
    """The reference implementation (the `shap` package's tree explainer, test-only) on the same trees, with
    missing values: the same attributions and the same expected value, for each output Tollgate explains."""
    import shap

    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 5))
    x[rng.random(x.shape) < 0.1] = np.nan
    signal = np.nan_to_num(x[:, 0]) * np.nan_to_num(x[:, 1]) + np.nan_to_num(x[:, 2])
    if kind == "regression":
        model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(x, signal)
    else:
        y = (signal > 0).astype(int) if kind == "binary" else np.digitize(signal, [-0.5, 0.5])
        model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(x, y)
    forest, count, depth = flat(model)
    rows = np.ascontiguousarray(x[:40])
    ours = np.zeros((len(rows), forest.k, x.shape[1]))
    treeshap.shap_values(rows, forest.feature, forest.threshold, forest.missing_left, forest.left, forest.right,
                         forest.value, count, forest.roots, forest.k, depth, ours)
    expected = treeshap.expected_value(forest.feature, forest.left, forest.right, forest.value, count, forest.roots,
                                       forest.k) + forest.baseline
    reference = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
    theirs = np.asarray(reference.shap_values(rows, check_additivity=False), dtype="float64")
    theirs = theirs.reshape(len(rows), x.shape[1], -1).transpose(0, 2, 1)   # (rows, outputs, features)
    assert theirs.shape == ours.shape
    assert np.abs(theirs - ours).max() < 1e-9
    assert np.abs(np.atleast_1d(reference.expected_value) - expected).max() < 1e-9
