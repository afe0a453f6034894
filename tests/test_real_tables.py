"""Real, untidy tables through `spec infer` and `spec check --data` (the property: for any table, the spec
inferred from a file accepts that file), on samples of the five public tables in examples/data/tables/ and on
generated messy frames: identifiers kept but never features, ISO and Unix timestamps as datetimes, rows without a
target dropped as unlabelled rather than rejecting the file, wide categories bounded."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollgate import baseline, contract, inference, training, validation
from tollgate import spec as specs
from tollgate.topology import ROOT

TABLES = ROOT / "examples" / "data" / "tables"
TARGETS = {"gss_wages": "realrinc", "hours_worked": "whrswk", "movielens": "rating", "movies": "rating",
           "weather": "temp"}
SAMPLE = 4_000


def sample_of(table: str, tmp_path: Path) -> Path:
    """Every tenth row of a table (its whole span, as a file a user would drop), as a CSV."""
    with gzip.open(TABLES / f"{table}.csv.gz", "rb") as fh:
        frame = pd.read_csv(fh)
    path = tmp_path / f"{table}.csv"
    frame.iloc[::max(1, len(frame) // SAMPLE)].to_csv(path, index=False)
    return path


def check(path: Path, spec: specs.DatasetSpec, tmp_path: Path) -> contract.ValidationResult:
    """What `tollgate spec check SPEC --data FILE` does."""
    with path.open("rb") as fh:
        return validation.validate_file(fh, spec, tmp_path / "curated.parquet", size=path.stat().st_size)


@pytest.mark.parametrize("table", sorted(TARGETS))
def test_the_spec_inferred_from_a_real_table_accepts_it(table, tmp_path):
    path = sample_of(table, tmp_path)
    text = inference.infer(inference.read_sample(str(path)), table, TARGETS[table], with_baseline=False,
                           source=path.name)
    spec = specs.loads(text)
    result = check(path, spec, tmp_path)
    assert result.status == "valid", (result.reason, result.message)
    assert not {c for c in spec.features if spec.columns[c].role != "data"}


def test_what_each_real_table_holds_is_described_as_it_is(tmp_path):
    specs_of = {t: specs.loads(inference.infer(inference.read_sample(str(sample_of(t, tmp_path))), t, TARGETS[t],
                                               with_baseline=False)) for t in TARGETS}
    weather, movielens, movies, gss = specs_of["weather"], specs_of["movielens"], specs_of["movies"], \
        specs_of["gss_wages"]
    assert weather.columns["time_hour"].type == "datetime" and "time_hour" in weather.feature_lists.datetime
    assert movielens.columns["timestamp"].type == "datetime" and movielens.columns["timestamp"].unit == "s"
    assert movies.columns["title"].role == "id" and "title" not in movies.features   # unique per film
    assert movielens.columns["genres"].encoding == "target"                          # ~900 pipe-joined lists
    assert gss.columns["realrinc"].type == "float" and gss.columns["realrinc"].nullable is False
    # the weather file is one airport's year after another's: not one stream of time, so no time-ordered folds
    assert not baseline.arrives_in_time_order(contract.datetime_seconds(
        pd.read_csv(sample_of("weather", tmp_path))["time_hour"], None)[0])


def test_rows_without_a_target_are_unlabelled_never_a_rejection(tmp_path):
    """gss_wages has no income in ~38% of its rows: infer declared the target not nullable and on_fail reject
    from the labelled rows alone, and the validator rejected both drops."""
    path = sample_of("gss_wages", tmp_path)
    spec = specs.loads(inference.infer(inference.read_sample(str(path)), "gss", "realrinc", with_baseline=False))
    result = check(path, spec, tmp_path)
    frame = pd.read_csv(path)
    unlabelled = int(frame["realrinc"].isna().sum())
    assert unlabelled > 0.3 * len(frame) and result.status == "valid"
    [check_] = [c for c in result.checks if c.name == "realrinc:unlabelled"]
    assert check_.failed_rows == unlabelled and check_.action == "drop" and "unlabelled" in result.message


def test_a_decimal_in_an_integer_looking_column_is_a_float_and_a_bad_value_never_raises(tmp_path):
    """A target written as 151.0 was typed int, and 151.5 in a later file crashed `spec check` (pyarrow's
    truncation error) and failed the run."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "y": np.round(rng.uniform(25, 346, 200))})
    path = tmp_path / "first.csv"
    frame.to_csv(path, index=False, float_format="%.1f")
    spec = specs.loads(inference.infer(inference.read_sample(str(path)), "diabetes", "y", with_baseline=False))
    assert spec.columns["y"].type == "float"
    later = tmp_path / "later.csv"
    frame.assign(y=frame["y"] + 0.5).to_csv(later, index=False)
    assert check(later, spec, tmp_path).status == "valid"
    as_int = specs.replace(spec, columns__y__type="int")   # a spec written by hand: the check names the rows
    result = check(later, as_int, tmp_path)
    assert any(c.name == "y:type" and c.failed_rows == 200 for c in result.checks), result.checks


def test_a_semicolon_file_is_named_as_such(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("a;b;y\n1;2;3\n4;5;6\n")
    with pytest.raises(inference.InferError, match="separated by semicolons"):
        inference.read_sample(str(path))


def test_text_that_pandas_reads_as_missing_is_text_to_infer_as_to_the_validator(tmp_path):
    """Found by the property below: infer read "N/A" as missing (pandas' default), typed an otherwise empty column
    float, and the validator, for which only an empty cell is missing, dropped the "N/A" rows as not numbers —
    with the unlabelled rows, more than max_dropped, so the spec rejected its own file."""
    rng = np.random.default_rng(3)
    y = rng.normal(size=60)
    y[:9] = np.nan
    frame = pd.DataFrame({"y": y, "x": rng.integers(-5, 50, 60), "note": [None] * 49 + ["N/A"] * 9 + ["null"] * 2})
    path = tmp_path / "na.csv"
    frame.to_csv(path, index=False)
    spec = specs.loads(inference.infer(inference.read_sample(str(path)), "na", "y", with_baseline=False))
    assert spec.columns["note"].type == "string" and tuple(spec.columns["note"].allowed) == ("N/A", "null")
    result = check(path, spec, tmp_path)
    assert result.status == "valid" and result.rows_out == 51, (result.reason, result.message)


def test_datetimes_train_and_predict_through_their_parts(tmp_path):
    path = sample_of("weather", tmp_path)
    spec = specs.loads(inference.infer(inference.read_sample(str(path)), "weather", "temp", with_baseline=False))
    curated = validation.validate(pd.read_csv(path), spec).data
    model = training.fit(curated, spec)
    names = list(model[0].get_feature_names_out())
    assert {"time_hour_month", "time_hour_hour", "time_hour_day_of_week"} <= set(names)
    assert model.score(training.features_frame(curated, spec), training.target(curated, spec)) > 0.9


# ---------------------------------------------------------------- generated messy tables

ODD_TEXT = st.sampled_from(["", "$5-$10", "$\\x$", "naïve", "東京", "\u202eevil", "😀", "N/A", "a,b", 'q"uote', "  "])


@st.composite
def messy_frames(draw):
    n = draw(st.integers(min_value=30, max_value=120))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    columns: dict[str, object] = {"y": rng.normal(size=n)}
    if draw(st.booleans()):
        columns["y"][rng.random(n) < draw(st.floats(0, 0.6))] = np.nan      # an empty target in many rows
    kinds = draw(st.lists(st.sampled_from(["int", "float", "nan_float", "text", "odd", "wide", "id", "iso", "unix",
                                           "bool", "empty", "constant", "counter"]), min_size=1, max_size=8))
    for i, kind in enumerate(kinds):
        name = f"{kind}_{i}" if kind not in ("unix",) else f"created_at_{i}"
        if kind == "int":
            columns[name] = rng.integers(-5, 50, n)
        elif kind == "float":
            columns[name] = rng.normal(100, 50, n)
        elif kind == "nan_float":
            values = rng.normal(size=n)
            values[rng.random(n) < 0.5] = np.nan
            columns[name] = values
        elif kind == "text":
            columns[name] = rng.choice(["red", "green", "blue", None], n)
        elif kind == "odd":
            columns[name] = [draw(ODD_TEXT) or None for _ in range(n)]
        elif kind == "wide":
            columns[name] = [f"cat-{v}" for v in rng.integers(0, n, n)]
        elif kind == "id":
            columns[name] = [f"row-{j:05d}" for j in range(n)]
        elif kind == "iso":
            stamps = pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s")
            columns[name] = [t.isoformat() if rng.random() > 0.1 else None for t in stamps]
        elif kind == "unix":
            columns[name] = 1_600_000_000 + rng.integers(0, 10**7, n)
        elif kind == "bool":
            columns[name] = rng.choice([True, False], n)
        elif kind == "empty":
            columns[name] = [None] * n
        elif kind == "constant":
            columns[name] = [7] * n
        elif kind == "counter":
            columns[name] = np.arange(n)
    return pd.DataFrame(columns)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(messy_frames())
def test_for_any_table_the_inferred_spec_accepts_the_file_it_came_from(tmp_path, frame):
    path = tmp_path / "messy.csv"
    frame.to_csv(path, index=False)
    try:
        text = inference.infer(inference.read_sample(str(path)), "messy", "y", with_baseline=False)
    except inference.InferError as exc:   # only for a table that cannot give a spec, and it says why
        assert "no column besides the target" in str(exc) or "has no values" in str(exc), exc
        return
    spec = specs.loads(text)
    result = check(path, spec, tmp_path)
    assert result.status == "valid", (result.reason, result.message, text)


def test_the_baseline_is_bounded_in_time_and_says_what_it_did(tmp_path):
    path = sample_of("hours_worked", tmp_path)
    said: list[str] = []
    text = inference.infer(inference.read_sample(str(path)), "hours", "whrswk", seconds=2, progress=said.append)
    assert said and said[0].startswith("cross-validating hist_gradient_boosting")
    spec = specs.loads(text)
    assert spec.model.estimator in baseline.CANDIDATES and 0 < spec.policy.threshold < 1
    assert "not tried in the time" in text or len(said) == len(baseline.CANDIDATES)

