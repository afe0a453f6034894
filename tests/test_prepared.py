"""The prepared inference path gives the registered model's predictions, and refuses to serve when it would not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import columns_of
from tollgate import prepared, training
from tollgate import spec as specs
from tollgate.topology import ROOT


def test_taxi_predictions_are_the_registered_models(taxi_model, taxi_spec, taxi_clean):
    ready = prepared.prepare(taxi_model, taxi_spec)
    assert ready.path == "prepared", ready.reason
    rows = columns_of(taxi_clean, taxi_spec)
    expected = prepared.plain(taxi_model, taxi_spec)(rows).predictions
    actual = ready.predict(rows).predictions
    assert np.max(np.abs(expected - actual)) <= 1e-9
    for i in (0, 17, 4242):   # one row at a time as well as all at once
        one = prepared.Columns(rows.numeric[i:i + 1], [c[i:i + 1] for c in rows.categorical])
        assert abs(ready.predict(one).predictions[0] - expected[i]) <= 1e-9


def test_unknown_and_missing_categories_map_as_the_encoder_maps_them(taxi_model, taxi_spec, taxi_clean):
    ready = prepared.prepare(taxi_model, taxi_spec)
    rows = taxi_clean.head(50).copy()
    rows["company"] = ["a company never seen"] * 25 + [None] * 25
    rows.loc[rows.index[:10], "trip_seconds"] = np.nan
    cols = columns_of(rows, taxi_spec)
    assert prepared.agree(prepared.plain(taxi_model, taxi_spec)(cols), ready.predict(cols), "regression") is None


@pytest.mark.parametrize("estimator", ["linear", "random_forest"])
def test_other_estimators_skip_the_column_transformer_with_the_same_predictions(estimator, taxi_spec,
                                                                                  taxi_clean):
    spec = specs.replace(taxi_spec, model__estimator=estimator,
                         model__params={"n_estimators": 10} if estimator == "random_forest" else {})
    model = training.fit(taxi_clean.head(3000), spec)
    ready = prepared.prepare(model, spec)
    assert ready.path == "prepared", ready.reason
    rows = columns_of(taxi_clean.tail(500), spec)
    assert prepared.agree(prepared.plain(model, spec)(rows), ready.predict(rows), "regression") is None


def test_classification_labels_identical_and_probabilities_within_tolerance():
    from sklearn.datasets import load_breast_cancer

    spec = specs.load(ROOT / "datasets" / "breast_cancer.yaml")
    data = load_breast_cancer(as_frame=True)
    frame = data.data.rename(columns=lambda c: c.replace(" ", "_"))
    frame["diagnosis"] = np.asarray(data.target_names)[data.target]
    model = training.fit(frame, spec)
    ready = prepared.prepare(model, spec)
    assert ready.path == "prepared", ready.reason
    rows = columns_of(frame, spec)
    expected, actual = prepared.plain(model, spec)(rows), ready.predict(rows)
    assert np.array_equal(expected.predictions, actual.predictions)
    assert np.max(np.abs(expected.probabilities - actual.probabilities)) <= 1e-9


def test_a_prepared_path_that_disagrees_is_not_used(taxi_model, taxi_spec, monkeypatch):
    """The load-time check can fail: a forest off by a hair makes the predictor keep plain predict."""
    honest = prepared.Forest.raw
    monkeypatch.setattr(prepared.Forest, "raw", lambda self, x: honest(self, x) + 1e-6)
    ready = prepared.prepare(taxi_model, taxi_spec)
    assert ready.path == "plain" and "disagrees" in ready.reason and "1e-06" in ready.reason


def test_a_pipeline_it_does_not_know_keeps_plain_predict(taxi_spec, taxi_clean):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, OrdinalEncoder

    pre = ColumnTransformer([("numeric", MinMaxScaler(), list(taxi_spec.feature_lists.numeric)),
                             ("categorical", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                                            encoded_missing_value=-2),
                              list(taxi_spec.feature_lists.categorical))])
    model = Pipeline([("preprocess", pre), ("model", Ridge())])
    data = taxi_clean.head(2000)
    x = training.features_frame(data, taxi_spec).fillna({n: 0.0 for n in taxi_spec.feature_lists.numeric})
    model.fit(x, training.target(data, taxi_spec))
    ready = prepared.prepare(model, taxi_spec)
    assert ready.path == "plain" and "not prepared" in ready.reason
    rows = columns_of(x.assign(**{taxi_spec.target: 0}).head(20), taxi_spec)
    assert len(ready.predict(rows).predictions) == 20   # plain predict still serves


def test_columns_concat_and_frame(taxi_spec, taxi_clean):
    a, b = columns_of(taxi_clean.head(3), taxi_spec), columns_of(taxi_clean.iloc[3:5], taxi_spec)
    both = prepared.Columns.concat([a, b])
    assert len(both) == 5 and both.categorical[0][3] == b.categorical[0][0]
    frame = both.frame(taxi_spec)
    assert list(frame.columns) == list(taxi_spec.features) and frame["company"].dtype == object
    pd.testing.assert_frame_equal(frame, training.features_frame(taxi_clean.head(5), taxi_spec), check_dtype=False)
