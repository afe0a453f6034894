"""Evaluation (pure): both models on the same rows, slices, classification metrics and the HTML report."""

import pandas as pd
import pytest

from examples.breast_cancer import make_batches
from tests.conftest import taxi_period
from tollgate import evaluation, reports, training, validation
from tollgate import spec as specs
from tollgate.topology import ROOT


@pytest.fixture(scope="module")
def taxi_models(taxi, taxi_spec):
    old = validation.validate(taxi_period(taxi, "2013-01-01", "2013-07-01"), taxi_spec).data
    new = validation.validate(taxi_period(taxi, "2013-07-01", "2014-01-01"), taxi_spec).data
    train_new, holdout = training.split_newest(new, taxi_spec)
    champion = training.fit(old, taxi_spec)
    challenger = training.fit(pd.concat([old, train_new]), taxi_spec)
    return holdout, challenger, champion


def test_regression_evidence_on_the_same_rows(taxi_models, taxi_spec):
    holdout, challenger, champion = taxi_models
    x, y = training.features_frame(holdout, taxi_spec), training.target(holdout, taxi_spec)
    a, b = evaluation.score(challenger, x, "regression"), evaluation.score(champion, x, "regression")
    result = evaluation.compare(holdout, y, a, b, taxi_spec)
    assert set(result["challenger"]["metrics"]) == {"r2", "rmse", "mae"}
    diff = result["difference"]
    assert diff["low"] <= diff["improvement"] <= diff["high"]
    assert diff["challenger"] == pytest.approx(result["challenger"]["metrics"]["r2"])
    slices = {(s["column"], s["slice"]): s for s in result["slices"]}
    assert ("payment_type", "Cash") in slices and slices[("payment_type", "Cash")]["rows"] > 10
    assert 2 <= sum(1 for c, _ in slices if c == "trip_miles") <= evaluation.QUANTILE_SLICES   # tied edges merge
    assert sum(s["rows"] for s in result["slices"] if s["column"] == "trip_miles") == len(holdout)
    page = reports.evaluation_html({"run_id": "r", "dataset": "chicago_taxi", **result,
                                    "challenger": {**result["challenger"], "version": 2},
                                    "champion": {**result["champion"], "version": 1}}, y, a, b)
    assert page.index("Summary") < page.index("Metrics") < page.index("Slices") < page.index("Plots")
    assert page.count("data:image/png;base64,") == 2        # predicted vs actual, residuals


@pytest.fixture(scope="module")
def cancer(tmp_path_factory):
    spec = specs.load(ROOT / "datasets" / "breast_cancer.yaml")
    first, second = make_batches(tmp_path_factory.mktemp("bc"))
    return spec, validation.validate(pd.read_csv(first), spec).data, validation.validate(pd.read_csv(second), spec).data


def test_a_classification_dataset_trains_and_is_judged_with_probabilities(cancer):
    spec, first, second = cancer
    train_new, holdout = training.split_newest(second, spec)
    champion = training.fit(first, spec)
    challenger = training.fit(pd.concat([first, train_new]), spec)
    x, y = training.features_frame(holdout, spec), training.target(holdout, spec)
    a, b = evaluation.score(challenger, x, spec.task), evaluation.score(champion, x, spec.task)
    assert set(a.classes) == {"benign", "malignant"} and a.proba.shape == (len(holdout), 2)
    result = evaluation.compare(holdout, y, a, b, spec)
    metrics = result["challenger"]["metrics"]
    assert set(metrics) == {"accuracy", "f1", "roc_auc", "log_loss"} and metrics["roc_auc"] > 0.9
    assert result["difference"]["metric"] == "roc_auc"
    assert -1 <= result["difference"]["low"] <= result["difference"]["high"] <= 1
    page = reports.evaluation_html({"run_id": "r", "dataset": spec.name, **result,
                                    "challenger": {**result["challenger"], "version": 2},
                                    "champion": {**result["champion"], "version": 1}}, y, a, b)
    assert "confusion matrix (challenger)" in page and "ROC" in page


def test_the_same_window_gives_byte_identical_classifier_outputs(cancer):
    spec, first, _ = cancer
    x = training.features_frame(first, spec)
    one, two = training.fit(first, spec), training.fit(first, spec)
    assert one.predict_proba(x).tobytes() == two.predict_proba(x).tobytes()
