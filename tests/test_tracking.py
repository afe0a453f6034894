"""The MLflow mirror's pure parts: where a dataset is mirrored, what a run becomes, what a failure records."""

from __future__ import annotations

import pytest

from tollgate import spec as specs
from tollgate import tracking


def spec_with(taxi_spec, **mlflow):
    return specs.from_dict({**taxi_spec.raw, "tracking": {"mlflow": mlflow}})


def test_a_dataset_is_mirrored_where_its_spec_or_the_deployment_says(taxi_spec):
    assert tracking.target(taxi_spec, env={}) is None   # off by default
    deployed = tracking.target(taxi_spec, env={tracking.URI_ENV: "https://u:t@mlflow.example.com/"})
    assert deployed == tracking.Target("https://u:t@mlflow.example.com", "tollgate/chicago_taxi",
                                       "tollgate-chicago_taxi")
    own = tracking.target(spec_with(taxi_spec, uri="http://10.0.0.5:5000", experiment="fares",
                                    registered_model="fare-model"), env={tracking.URI_ENV: "https://other"})
    assert own == tracking.Target("http://10.0.0.5:5000", "fares", "fare-model")
    assert tracking.target(spec_with(taxi_spec, enabled=False), env={tracking.URI_ENV: "https://x"}) is None


@pytest.mark.parametrize(("uri", "problem"), [
    ("https://user:secret@mlflow.example.com", "credentials do not belong in a spec"),
    ("file:///etc/passwd", "not an http(s) URL"),
    ("databricks", "not an http(s) URL"),
])
def test_a_spec_names_only_an_http_server_and_never_its_credentials(taxi_spec, uri, problem):
    with pytest.raises(specs.SpecError) as err:
        spec_with(taxi_spec, uri=uri)
    assert "tracking.mlflow.uri" in str(err.value) and problem in str(err.value)


def test_a_failure_records_its_type_and_code_never_its_text():
    class MlflowException(Exception):
        error_code = "INTERNAL_ERROR"

    recorded = tracking._error(MlflowException("API request to https://u:token@mlflow.example.com failed"))
    assert recorded == "MlflowException (INTERNAL_ERROR)" and "token" not in recorded
    assert tracking._error(ConnectionError("http://u:token@host")) == "ConnectionError"


def test_a_run_becomes_params_and_metrics_with_names_mlflow_accepts(taxi_spec):
    record = {
        "spec": taxi_spec.raw, "validation": {"rows_in": 100, "rows_out": 98},
        "evaluation": {"metric": "r2", "holdout_rows": 30,
                       "challenger": {"version": 2, "metrics": {"r2": 0.9, "rmse": 1.5}},
                       "champion": {"version": 1, "metrics": {"r2": 0.8}},
                       "difference": {"difference": 0.1, "low": 0.02, "high": 0.2},
                       "slices": [{"column": "trip_miles", "slice": "(-0.001, 0.265]", "challenger": 0.7},
                                  {"column": "payment_type", "slice": "No Charge", "challenger": None}],
                       "importance": {"metric": "r2", "features": [
                           {"feature": "trip_miles", "challenger": {"mean": 0.4, "std": 0.02}, "champion": None},
                           {"feature": "$ band", "challenger": {"mean": 0.0, "std": 0.0}, "champion": None}]}},
    }
    version = {"estimator": "hist_gradient_boosting", "params": {"max_iter": 60, "learning_rate": 0.1},
               "train_rows": 70, "metrics": {"cv": {"metric": "r2", "score": 0.85, "std": 0.01}}}
    metrics = tracking.Mirror._metrics(record, version)
    assert metrics == {"holdout.rows": 30, "validation.rows_in": 100, "validation.rows_out": 98, "train.rows": 70,
                       "holdout.r2": 0.9, "holdout.rmse": 1.5, "champion.holdout.r2": 0.8, "gain": 0.1,
                       "gain.low": 0.02, "gain.high": 0.2, "cv.r2": 0.85, "cv.r2.std": 0.01,
                       "slice.trip_miles.-0.001_ 0.265": 0.7,   # a slice without a score is left out
                       "importance.trip_miles": 0.4, "importance.trip_miles.std": 0.02,
                       "importance. band": 0.0, "importance. band.std": 0.0}
    params = tracking.Mirror._params(record, version)
    assert params["estimator"] == "hist_gradient_boosting" and params["model.max_iter"] == "60"
    assert params["primary_metric"] == "r2" and params["policy.threshold"] == str(taxi_spec.policy.threshold)
    assert all(isinstance(v, str) for v in params.values())
