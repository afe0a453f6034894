"""Training and evaluation (pure): deterministic holdout, byte-identical predictions, paired bootstrap."""

import numpy as np
import pandas as pd
import pytest

from tests.conftest import taxi_period
from tollgate import artifacts, evaluation, training, validation
from tollgate import spec as specs


@pytest.fixture(scope="module")
def clean_2013(taxi, taxi_spec):
    return validation.validate(taxi_period(taxi, "2013-01-01", "2014-01-01"), taxi_spec).data


def test_holdout_is_deterministic_and_sized():
    a = training.holdout_mask(1000, 0.3, 42)
    assert a.sum() == 300
    assert np.array_equal(a, training.holdout_mask(1000, 0.3, 42))
    assert not np.array_equal(a, training.holdout_mask(1000, 0.3, 43))


def test_same_window_gives_byte_identical_predictions(clean_2013, taxi_spec):
    train, holdout = training.split_newest(clean_2013, taxi_spec)
    a = training.fit(train, taxi_spec)
    b = training.fit(train, taxi_spec)
    x = training.features_frame(holdout, taxi_spec)
    assert a.predict(x).tobytes() == b.predict(x).tobytes()


def test_artifact_roundtrip_and_tamper_refusal(clean_2013, taxi_spec):
    model = training.fit(clean_2013, taxi_spec)
    blob = artifacts.dumps(model)
    digest = artifacts.sha256(blob)
    loaded = artifacts.loads(blob, digest)
    x = training.features_frame(clean_2013.head(50), taxi_spec)
    assert np.array_equal(loaded.predict(x), model.predict(x))
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(artifacts.ArtifactError, match="altered"):
        artifacts.loads(tampered, digest)


def test_paired_bootstrap_sees_a_real_difference_and_not_noise():
    rng = np.random.default_rng(0)
    y = rng.normal(size=2000)
    good = y + rng.normal(scale=0.3, size=y.size)
    bad = y + rng.normal(scale=0.6, size=y.size)
    real = evaluation.paired_bootstrap(y, good, bad, "r2", 500, 0.95, seed=1)
    assert real.low > 0 and real.improvement > 0
    same = evaluation.paired_bootstrap(y, good, good + rng.normal(scale=1e-3, size=y.size), "r2", 500, 0.95, 1)
    assert same.low < 0 < same.high
    rmse = evaluation.paired_bootstrap(y, good, bad, "rmse", 500, 0.95, seed=1)
    assert rmse.improvement > 0 and rmse.difference < 0   # lower RMSE is the improvement


def test_regression_metrics_match_scikit_learn():
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(3)
    y, p = rng.normal(size=300), rng.normal(size=300)
    m = evaluation.regression_metrics(y, p)
    assert m["r2"] == pytest.approx(r2_score(y, p))
    assert m["rmse"] == pytest.approx(mean_squared_error(y, p) ** 0.5)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, p))


def test_search_candidates_and_cross_validation_are_deterministic(clean_2013, taxi_spec):
    from tollgate import spec as specs

    raw = {**taxi_spec.raw, "model": {"estimator": "hist_gradient_boosting", "params": {"max_iter": 30},
                                      "search": {"tasks": 2, "folds": 2, "grid": {"max_leaf_nodes": [7, 15],
                                                                                  "learning_rate": [0.1]}}}}
    spec = specs.from_dict(raw)
    assert training.candidates(spec) == [{"max_iter": 30, "learning_rate": 0.1, "max_leaf_nodes": 7},
                                         {"max_iter": 30, "learning_rate": 0.1, "max_leaf_nodes": 15}]
    first = training.cross_validate(clean_2013, spec, training.candidates(spec)[0])
    again = training.cross_validate(clean_2013, spec, training.candidates(spec)[0])
    assert first == again and len(first["folds"]) == 2 and first["scorer"] == "r2"
    with pytest.raises(specs.SpecError, match="folds"):
        specs.from_dict({**raw, "model": {"search": {"folds": 1, "grid": {"max_iter": [1]}}}})


def test_a_window_larger_than_max_rows_is_sampled_batch_by_batch_and_the_same_every_time(taxi_spec):

    from tollgate.jobs.trainer import training_rows

    rng = np.random.default_rng(0)
    sizes = (4000, 3000, 2000)
    batches = {f"{i:064x}": pd.DataFrame({"x": rng.normal(size=n), "batch": i}) for i, n in enumerate(sizes)}
    window = [{"sha256": sha, "rows": len(frame)} for sha, frame in batches.items()]
    read = []

    def load(batch):
        read.append(batch["sha256"])
        return batches[batch["sha256"]]

    spec = specs.replace(taxi_spec, training__max_rows=3_000)
    train, holdout, sampling = training_rows(load, spec, window)
    assert read == [window[-1]["sha256"], window[0]["sha256"], window[1]["sha256"]]   # one batch at a time
    assert len(holdout) == 600 and sampling["rows_available"] == 4000 + 3000 + 1400
    assert sampling["sampled"] and abs(len(train) - 3000) < 200                       # about max_rows
    assert train["batch"].value_counts().sort_index().tolist() == pytest.approx([1428, 1071, 500], rel=0.15)
    again, _, _ = training_rows(load, spec, window)
    pd.testing.assert_frame_equal(train, again)                                         # seeded
    assert not set(holdout["x"]) & set(train["x"])                                     # held-out rows stay out
    everything, _, unsampled = training_rows(load, specs.replace(taxi_spec, training__max_rows=10**6), window)
    assert len(everything) == 8400 and not unsampled["sampled"]


def test_max_rows_is_a_positive_whole_number(taxi_spec):
    assert specs.from_dict({**taxi_spec.raw, "training": {"max_rows": 500}}).training.max_rows == 500
    assert taxi_spec.training.max_rows == 2_000_000
    with pytest.raises(specs.SpecError, match=r"training.max_rows: Input should be greater than 0"):
        specs.from_dict({**taxi_spec.raw, "training": {"max_rows": 0}})


def test_the_window_from_one_warehouse_query_is_the_window_read_batch_by_batch(taxi_spec, tmp_path):
    """Batches stored with the warehouse's columns (as the validator stores them) come back from one DuckDB query
    in window order: unsampled, exactly the rows and order of the batch-by-batch read; sampled, seeded and near
    max_rows, the newest batch's held-out rows never among them."""
    import pyarrow.fs as pafs

    from tollgate.jobs.trainer import training_rows
    from tollgate.warehouse import curated, engines

    rng = np.random.default_rng(1)
    window, frames = [], {}
    for i, n in enumerate((4000, 3000, 2000)):
        frame = pd.DataFrame({"x": rng.normal(size=n), "batch": i, "n": pd.array(range(n), dtype="Int64")})
        sha = f"{i:064x}"
        plain, stored = tmp_path / f"{sha}.plain.parquet", tmp_path / "curated" / f"{sha}.parquet"
        stored.parent.mkdir(exist_ok=True)
        frame.to_parquet(plain)
        curated.add_columns(plain, stored, sha)
        frames[sha] = frame
        window.append({"sha256": sha, "rows": n, "object": f"curated/{sha}.parquet", "object_sha256": "x"})
    warehouse = engines.DuckDB(pafs.LocalFileSystem(), str(tmp_path))

    def load(batch):
        return frames[batch["sha256"]]

    whole = specs.replace(taxi_spec, training__max_rows=10**6)
    queried, holdout, how = training_rows(load, whole, window, warehouse)
    read, _, _ = training_rows(load, whole, window)
    assert how["read"] == "warehouse query"
    pd.testing.assert_frame_equal(queried, read)                          # same rows, order and types
    spec = specs.replace(taxi_spec, training__max_rows=3_000)
    sampled, holdout, how = training_rows(load, spec, window, warehouse)
    assert how["sampled"] and abs(len(sampled) - 3000) < 200
    assert sampled["batch"].value_counts().sort_index().tolist() == pytest.approx([1428, 1071, 500], rel=0.15)
    pd.testing.assert_frame_equal(sampled, training_rows(load, spec, window, warehouse)[0])   # seeded
    assert not set(holdout["x"]) & set(sampled["x"])
    # a batch curated before the warehouse's columns sends the window back to the batch-by-batch read
    legacy = [{**b, "object_sha256": None} if i == 0 else b for i, b in enumerate(window)]
    assert training_rows(load, whole, legacy, warehouse)[2]["read"] == "batch by batch"


def test_curated_objects_gain_the_batch_and_row_columns_in_bounded_groups(tmp_path):
    import pyarrow.parquet as pq

    from tollgate.warehouse import curated

    frame = pd.DataFrame({"a": range(10), "s": list("abcdefghij")})
    frame.to_parquet(tmp_path / "plain.parquet")
    curated.add_columns(tmp_path / "plain.parquet", tmp_path / "stored.parquet", "f" * 64, rows_per_group=3)
    table = pq.read_table(tmp_path / "stored.parquet")
    assert table.column("_row").to_pylist() == list(range(10)) and set(table.column("_batch").to_pylist()) == {"f" * 64}
    assert pd.read_parquet(tmp_path / "stored.parquet").drop(columns=["_batch", "_row"]).equals(frame)
