"""Evaluation (pure): both models on the same rows, slices, classification metrics and the HTML report."""

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

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


def _matrix_bootstrap(y, models, metric, resamples, seed):
    """The bootstrap as one (resamples, rows) index matrix: what the blocked one must reproduce."""
    idx = np.random.default_rng(seed).integers(0, len(y), size=(resamples, len(y)))
    scorer = {"f1": lambda t, p: skm.f1_score(t, p, average="macro"),
              "roc_auc": skm.roc_auc_score,
              "log_loss": lambda t, p: skm.log_loss(t, np.clip(p, 1e-15, 1 - 1e-15), labels=[0.0, 1.0])}
    if metric in scorer:
        return np.array([[scorer[metric](y[i], p[i]) for i in idx] for p in models])
    return np.stack([evaluation.metric_values(y[idx], p[idx], metric) for p in models])


@pytest.mark.parametrize("metric", ["r2", "rmse", "mae", "accuracy", "f1", "roc_auc", "log_loss"])
def test_the_blocked_bootstrap_draws_the_same_resamples_as_the_index_matrix(metric, monkeypatch):
    rng = np.random.default_rng(4)
    n = 601
    if metric in ("r2", "rmse", "mae"):
        y = rng.normal(loc=50, size=n)   # far from 0: the sums of squares must not cancel
        models = [y + rng.normal(scale=s, size=n) for s in (0.3, 0.6)]
    elif metric in ("accuracy", "f1"):
        y = rng.choice(list("abc"), size=n)
        models = [np.where(rng.random(n) < q, y, "a") for q in (0.7, 0.4)]
    else:
        y = (rng.random(n) < 0.4).astype(float)
        models = [np.clip(y * 0.5 + rng.random(n) * 0.5, 0, 1), rng.random(n)]
    monkeypatch.setattr(evaluation, "BLOCK_DRAWS", 5 * n)   # 5 resamples a block: 31 blocks, the last short
    blocked = evaluation.bootstrap_values(y, models, metric, 153, seed=7)
    assert blocked.shape == (2, 153)
    np.testing.assert_allclose(blocked, _matrix_bootstrap(y, models, metric, 153, 7), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- permutation importance

IMPORTANCE_SPEC = """\
name: signal
task: {task}
target: y
columns:
  y: {{type: {target}}}
  strong: {{type: float}}
  weak: {{type: float}}
  noise: {{type: float}}
  "$ band": {{type: string}}
features:
  numeric: [strong, weak, noise]
  categorical: ["$ band"]
evaluation:
  primary_metric: {metric}
  importance_rows: {rows}
policy:
  threshold: 0
"""


def signal_frame(task: str, n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"strong": rng.normal(size=n), "weak": rng.normal(size=n), "noise": rng.normal(size=n),
                          "$ band": rng.choice(["$0-$5", "$5-$10"], n)})
    value = 3 * frame["strong"] + 0.5 * frame["weak"] + (frame["$ band"] == "$5-$10") + 0.1 * rng.normal(size=n)
    frame["y"] = value if task == "regression" else np.where(value > 0.5, "high", "low")
    return frame


@pytest.mark.parametrize(("task", "metric"), [("regression", "r2"), ("regression", "rmse"),
                                              ("classification", "roc_auc"), ("classification", "log_loss")])
def test_importance_finds_what_the_model_relies_on_per_declared_feature(task, metric):
    spec = specs.loads(IMPORTANCE_SPEC.format(task=task, target="float" if task == "regression" else "string",
                                              metric=metric, rows=2000))
    frame = signal_frame(task)
    train, holdout = frame.iloc[:400], frame.iloc[400:].reset_index(drop=True)
    challenger, champion = training.fit(train, spec), training.fit(train.iloc[:100], spec)
    x, y = training.features_frame(holdout, spec), training.target(holdout, spec)
    found = evaluation.permutation_importance(challenger, champion, x, y, spec)
    features = {f["feature"]: f for f in found["features"]}
    assert set(features) == {"strong", "weak", "noise", "$ band"}   # one per declared column, one-hot or not
    assert found["features"][0]["feature"] == "strong" and found["rows"] == 200 and found["repeats"] == 5
    strong, noise = features["strong"]["challenger"], features["noise"]["challenger"]
    assert strong["low"] > 0 and strong["mean"] > 10 * abs(noise["mean"])   # an error metric's rise counts too
    assert strong["low"] <= strong["mean"] <= strong["high"] and strong["std"] > 0
    assert features["strong"]["champion"]["mean"] > 0   # the champion on the same rows and shuffles
    assert evaluation.permutation_importance(challenger, champion, x, y, spec) == found   # seeded


def test_importance_is_bounded_and_can_be_turned_off():
    spec = specs.loads(IMPORTANCE_SPEC.format(task="regression", target="float", metric="r2", rows=60))
    frame = signal_frame("regression")
    model = training.fit(frame.iloc[:400], spec)
    x, y = training.features_frame(frame.iloc[400:], spec), training.target(frame.iloc[400:], spec)
    found = evaluation.permutation_importance(model, None, x, y, spec)
    assert found["rows"] == 60 and all(f["champion"] is None for f in found["features"])
    off = specs.replace(spec, evaluation__importance_repeats=0)
    assert evaluation.permutation_importance(model, None, x, y, off) == {}


def test_the_evaluation_report_shows_the_importance_with_dollar_signs_as_written():
    spec = specs.loads(IMPORTANCE_SPEC.format(task="regression", target="float", metric="r2", rows=2000))
    frame = signal_frame("regression")
    model = training.fit(frame.iloc[:400], spec)
    holdout = frame.iloc[400:].reset_index(drop=True)
    x, y = training.features_frame(holdout, spec), training.target(holdout, spec)
    scored = evaluation.score(model, x, spec.task)
    result = evaluation.compare(holdout, y, scored, None, spec)
    result["importance"] = evaluation.permutation_importance(model, None, x, y, spec)
    page = reports.evaluation_html({"run_id": "r", "dataset": "signal", **result,
                                    "challenger": {**result["challenger"], "version": 1}}, y, scored)
    assert "Permutation importance (r2)" in page and "<td>$ band</td>" in page
    assert page.count("data:image/png;base64,") == 3   # importance, predicted vs actual, residuals
