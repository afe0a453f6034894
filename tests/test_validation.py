"""Reading and the data contract (pure): every bad-input kind gets a specific reason."""

import gzip

import numpy as np
import pandas as pd
import pytest

from tollgate import spec as specs
from tollgate import validation
from tollgate.validation import BatchRejected


@pytest.fixture
def batch(taxi):
    return taxi.head(400).copy()


def read(tmp_path, content: bytes, name="f.csv"):
    path = tmp_path / name
    path.write_bytes(content)
    return validation.read_table(path)


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty_file"),
    (b"   \n\n", "empty_file"),
    (b"fare,trip_miles\n", "no_rows"),
    (b"\x00\x01\x02garbage\xff" * 100, "not_a_table"),
    ("fare,company\n1.0,Café\n".encode("latin-1"), "bad_encoding"),
    (b"fare;trip_miles;company\n1;2;x\n", "wrong_delimiter"),
    (b"\x1f\x8b\x08\x00broken", "corrupt_gzip"),
    (b"PAR1 not really parquet", "unreadable_parquet"),
])
def test_unreadable_files_have_specific_reasons(tmp_path, content, reason):
    with pytest.raises(BatchRejected) as info:
        read(tmp_path, content)
    assert info.value.reason == reason
    assert info.value.message and "Traceback" not in info.value.message


def test_csv_with_bom_gzip_and_parquet_read_the_same(tmp_path, batch):
    text = batch.to_csv(index=False)
    plain = read(tmp_path, text.encode(), "a.csv")
    bom = read(tmp_path, b"\xef\xbb\xbf" + text.encode(), "b.csv")
    gz = read(tmp_path, gzip.compress(text.encode()), "c.csv.gz")
    batch.to_parquet(tmp_path / "d.parquet")
    pq = validation.read_table(tmp_path / "d.parquet")
    assert list(plain.columns) == list(bom.columns) == list(gz.columns) == list(pq.columns)
    assert len(plain) == len(bom) == len(gz) == len(pq) == 400


def test_valid_taxi_batch(batch, taxi_spec):
    result = validation.validate(batch.astype(str).replace("nan", np.nan), taxi_spec)
    assert result.status == "valid", result.message
    assert result.rows_out == 400 and result.data is not None
    assert result.data["trip_start_hour"].dtype == np.int64


def test_missing_and_unexpected_columns_reject(batch, taxi_spec):
    missing = validation.validate(batch.drop(columns=["fare"]), taxi_spec)
    assert (missing.status, missing.reason) == ("rejected", "missing_columns")
    assert "fare" in missing.message
    extra = validation.validate(batch.assign(surprise=1), taxi_spec)
    assert (extra.status, extra.reason) == ("rejected", "unexpected_columns")
    assert "surprise" in extra.message


def test_the_2016_outlier_is_caught_by_a_rule(taxi, taxi_spec):
    big = taxi[(taxi.fare > 600)]
    assert len(big) == 1                               # the $700.07, 0-mile fare
    result = validation.validate(pd.concat([taxi.head(300), big]), taxi_spec)
    assert result.status == "valid"
    assert result.rows_out == 300
    failed = {c.name: c for c in result.checks}
    assert failed["large_fare_needs_distance"].failed_rows == 1
    assert failed["large_fare_needs_distance"].examples[0]["fare"] == pytest.approx(700.07)


def test_drop_versus_reject_policy(batch, taxi_spec):
    bad_type = batch.astype({"trip_miles": object})
    bad_type.loc[:4, "trip_miles"] = "lots"           # trip_miles: on_fail drop
    result = validation.validate(bad_type, taxi_spec)
    assert result.status == "valid" and result.rows_dropped == 5
    bad_time = batch.copy()
    bad_time.loc[0, "trip_start_timestamp"] = -5      # trip_start_timestamp: on_fail reject
    rejected = validation.validate(bad_time, taxi_spec)
    assert (rejected.status, rejected.reason) == ("rejected", "rule_rejected")
    assert "trip_start_timestamp:min" in rejected.message


def test_too_many_dropped_rows_reject_the_batch(batch, taxi_spec):
    bad = batch.copy()
    bad.loc[: len(bad) // 2, "payment_type"] = "Bitcoin"
    result = validation.validate(bad, taxi_spec)
    assert (result.status, result.reason) == ("rejected", "too_many_dropped")
    assert "20%" in result.message


def test_too_few_rows(taxi, taxi_spec):
    result = validation.validate(taxi.head(10), taxi_spec)
    assert (result.status, result.reason) == ("rejected", "too_few_rows")


def test_parquet_bytes_are_deterministic(batch):
    assert validation.to_parquet_bytes(batch) == validation.to_parquet_bytes(batch.copy())


def test_spec_errors_name_the_field():
    with pytest.raises(specs.SpecError, match="policy"):
        specs.from_dict({"name": "x", "task": "regression", "target": "y", "columns": {"y": {}, "a": {}},
                         "features": {"numeric": ["a"]}})
    with pytest.raises(specs.SpecError, match="not declared"):
        specs.from_dict({"name": "x", "task": "regression", "target": "y", "columns": {"y": {}},
                         "features": {"numeric": ["a"]}, "policy": {"threshold": 1}})
