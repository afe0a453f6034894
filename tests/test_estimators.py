"""Every estimator family through training, evaluation (with the paired bootstrap on its primary metric) and the
predictor, on a multiclass dataset with integer labels and on a regression."""

from __future__ import annotations

import numpy as np
import pytest

from services.predictor import main as predictor
from tests.conftest import model_dir, wine_frame
from tests.test_predictor import config
from tollgate import evaluation, reports, training
from tollgate import spec as specs

FEATURES = ["alcohol", "malic_acid", "flavanoids", "color_intensity", "hue", "proline", "magnesium"]


def wine_spec(task: str, estimator: str, metric: str) -> specs.DatasetSpec:
    target = "cultivar" if task == "classification" else "od280_od315_of_diluted_wines"
    columns = {c: {"type": "float"} for c in FEATURES + ["od280_od315_of_diluted_wines"]}
    columns.update(magnesium={"type": "int", "min": 0, "max": 500}, vineyard={"type": "string"},
                   cultivar={"type": "int", "allowed": [0, 1, 2], "nullable": False})
    return specs.from_dict({
        "name": "wine", "task": task, "target": target, "columns": columns,
        "features": {"numeric": FEATURES, "categorical": ["vineyard"]},
        "model": {"estimator": estimator, "params": {"n_estimators": 20} if "forest" in estimator or
                  estimator == "gradient_boosting" else {}},
        "evaluation": {"primary_metric": metric, "bootstrap_resamples": 200}, "policy": {"threshold": 0.0},
    })


CASES = [("classification", e, m) for e in specs.ESTIMATORS for m in ("roc_auc", "log_loss")]
CASES += [("regression", e, "rmse") for e in specs.ESTIMATORS if e not in specs.ESTIMATOR_TASKS]


@pytest.mark.parametrize(("task", "estimator", "metric"), CASES)
def test_each_family_trains_is_evaluated_and_served(task, estimator, metric, tmp_path):
    spec = wine_spec(task, estimator, metric)
    frame = wine_frame(600, seed=1)
    train, holdout = frame.iloc[:450], frame.iloc[450:].reset_index(drop=True)
    challenger = training.fit(train, spec)
    champion = training.fit(train.iloc[:120], spec)       # the same family on less data: a weaker model
    x, y = training.features_frame(holdout, spec), training.target(holdout, spec)
    scored = [evaluation.score(m, x, task) for m in (challenger, champion)]
    result = evaluation.compare(holdout, y, scored[0], scored[1], spec)
    difference = result["difference"]
    assert difference["metric"] == metric and difference["low"] <= difference["improvement"] <= difference["high"]
    if task == "classification":
        assert set(result["challenger"]["metrics"]) == {"accuracy", "f1", "roc_auc", "log_loss"}
        assert result["challenger"]["metrics"]["accuracy"] > 0.8, result["challenger"]["metrics"]
        assert scored[0].classes == ["0", "1", "2"]
        html = reports.evaluation_html(result, y, scored[0], scored[1])
        assert "ROC one-vs-rest (challenger)" in html and "confusion matrix (champion)" in html
    else:
        assert result["challenger"]["metrics"]["r2"] > 0.2, result["challenger"]["metrics"]

    client = predictor.create_app(config("wine", 1, model_dir(challenger, spec, tmp_path / "m")),
                                  background=False).test_client()
    rows = [{k: (None if v != v else v) for k, v in row.items()}
            for row in holdout[list(spec.features)].head(25).to_dict("records")]
    body = client.post("/predict", json={"instances": rows}).json
    expected = challenger.predict(x.head(25))
    if task == "classification":
        assert body["predictions"] == [str(v) for v in expected] and body["classes"] == ["0", "1", "2"]
        np.testing.assert_allclose(body["probabilities"], challenger.predict_proba(x.head(25)), atol=1e-6)
    else:
        np.testing.assert_allclose(body["predictions"], expected, atol=1e-6)
    meta = client.get("/metadata").json
    assert meta["inference_path"] in ("prepared", "plain") and meta["model_version"] == 1


def test_multiclass_roc_auc_and_log_loss_in_the_bootstrap_equal_scikit_learns():
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 400)
    proba = rng.dirichlet([1, 1, 1], 400)
    proba[np.arange(400), y] += 0.5
    proba /= proba.sum(axis=1, keepdims=True)
    assert np.isclose(evaluation._auc(y, proba), skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert np.isclose(evaluation._log_loss(y, proba), skm.log_loss(y, proba, labels=[0, 1, 2]))
    weights = rng.integers(0, 3, 400).astype(float)
    assert np.isclose(evaluation._log_loss(y, proba, weights), skm.log_loss(y, proba, sample_weight=weights,
                                                                            labels=[0, 1, 2]))
