"""Profiles and drift (pure): a known shift is found, no shift is not, and every raw score is published."""

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import taxi_period
from tollgate import drift, reports, validation
from tollgate import spec as specs


@pytest.fixture(scope="module")
def reference(taxi, taxi_spec):
    return drift.profile(taxi_period(taxi, "2013-01-01", "2014-01-01"), taxi_spec)


def batch_drift(df, spec, reference):
    return validation.validate(df, spec, reference=reference).drift


def test_the_profile_format(reference, taxi_spec):
    assert reference["format"] == drift.FORMAT
    assert set(reference["columns"]) == set(taxi_spec.features) | {taxi_spec.target}
    miles = reference["columns"]["trip_miles"]
    assert miles["kind"] == "numeric"
    assert len(miles["counts"]) == len(miles["edges"]) + 1
    assert sum(miles["counts"]) == miles["count"]
    assert 0 < len(miles["sample"]) <= drift.REFERENCE_SAMPLE
    assert "Cash" in reference["columns"]["payment_type"]["counts"]
    json.dumps(reference)                              # stored as JSON beside the model


def test_2015_trips_drift_severely_from_2013(taxi, taxi_spec, reference):
    result = batch_drift(taxi_period(taxi, "2015-01-01", "2016-01-01"), taxi_spec, reference)
    assert result["verdict"] == "severe"
    by = {f["feature"]: f for f in result["features"]}
    assert by["trip_miles"]["status"] == "severe"      # mean 2.3 → 3.7 miles
    assert by["trip_miles"]["q_value"] < 1e-6 and by["trip_miles"]["score"] >= 0.25
    for f in result["features"]:                       # every raw score is published
        assert {"statistic", "p_value", "q_value", "score", "status"} <= set(f)
    assert "trip_start_month" not in by                # excluded in the spec: calendar batches shift by design


def test_a_batch_from_the_same_distribution_does_not_drift(taxi, taxi_spec):
    year = taxi_period(taxi, "2013-01-01", "2014-01-01").sample(frac=1.0, random_state=7)
    half = len(year) // 2
    result = batch_drift(year.iloc[half:], taxi_spec, drift.profile(year.iloc[:half], taxi_spec))
    assert result["verdict"] == "none", result["message"]
    assert all(f["status"] == "none" for f in result["features"])


def test_significance_accounts_for_sample_size(taxi, taxi_spec, reference):
    later = taxi_period(taxi, "2015-01-01", "2016-01-01")
    small = batch_drift(later.head(40), specs.replace(taxi_spec, drift__min_rows=10), reference)
    miles = {f["feature"]: f for f in small["features"]}["trip_miles"]
    big = {f["feature"]: f for f in batch_drift(later, taxi_spec, reference)["features"]}["trip_miles"]
    assert miles["q_value"] > big["q_value"]            # the same shift is less certain on 40 rows
    assert small["verdict"] in ("none", "warn", "severe")


def test_benjamini_hochberg_adjusts_every_p_value(taxi, taxi_spec, reference):
    result = batch_drift(taxi_period(taxi, "2014-01-01", "2014-07-01"), taxi_spec, reference)
    p = np.array([f["p_value"] for f in result["features"]])
    q = np.array([f["q_value"] for f in result["features"]])
    assert np.all(q >= p - 1e-15) and np.all(q <= 1)


def test_new_categories_are_counted(taxi, taxi_spec, reference):
    df = taxi_period(taxi, "2013-01-01", "2014-01-01").copy()
    df.loc[df.index[:500], "company"] = "Brand New Cab Co"
    result = batch_drift(df, taxi_spec, reference)
    company = {f["feature"]: f for f in result["features"]}["company"]
    assert company["new_categories"] == ["Brand New Cab Co"] and company["new_category_rows"] == 500
    assert company["status"] != "none"


def test_no_reference_means_no_verdict_yet(taxi, taxi_spec):
    result = batch_drift(taxi.head(500), taxi_spec, None)
    assert (result["verdict"], result["reason"]) == ("none", "no_reference")


def test_the_html_report_puts_the_summary_first_and_plots_each_feature(taxi, taxi_spec, reference):
    result = validation.validate(pd.concat([taxi_period(taxi, "2015-01-01", "2016-01-01"), taxi[taxi.fare > 600]]),
                                 taxi_spec, reference=reference)
    page = reports.validation_html({"run_id": "run-x", "dataset": "chicago_taxi", **result.summary()}, reference)
    assert page.index("Summary") < page.index("Checks that found something") < page.index("Drift against")
    assert "large_fare_needs_distance" in page and "severe" in page
    assert page.count("data:image/png;base64,") == len(result.profile["columns"])


def test_a_handful_of_rows_gets_no_verdict_never_an_alert(taxi, taxi_spec, reference):
    """Two requests of 20 rows raised `drift critical` and retrained the model: below drift.min_rows there is no
    verdict, only "not enough data"."""
    later = taxi_period(taxi, "2015-01-01", "2016-01-01")
    few = batch_drift(later.head(40), taxi_spec, reference)
    assert (few["verdict"], few["reason"]) == ("none", "not_enough_data") and "fewer than the 200" in few["message"]
    assert batch_drift(later.head(400), taxi_spec, reference)["reason"] is None
