"""The validator job against the emulators: every bad-input kind is quarantined with its reason,
the dropped object is never changed, valid batches are curated once, and drift is judged against the
champion's stored profile. The job runs in-process on a run created as ingest creates it."""

from __future__ import annotations

import gzip
import io
import json

import orjson
import pandas as pd
import pytest

from tests.conftest import taxi_period
from tollgate import drift, events, lifecycle
from tollgate.jobs import validator

pytestmark = pytest.mark.emulator

HEADER = ("pickup_community_area,fare,trip_start_month,trip_start_hour,trip_start_day,trip_start_timestamp,"
          "pickup_latitude,pickup_longitude,dropoff_latitude,dropoff_longitude,trip_miles,pickup_census_tract,"
          "dropoff_census_tract,payment_type,company,trip_seconds,dropoff_community_area,tips")


@pytest.fixture
def dataset(taxi_spec, unique):
    """The taxi spec under a dataset name of its own, so tests never share champions or batches."""
    return {**taxi_spec.raw, "name": f"taxi_{unique}"}


def start_run(cloud, state, spec_raw: dict, name: str, content: bytes) -> str:
    # Outside incoming/: the job is started by hand here, so the bucket notification must not start
    # the chain too (its ingest would race this test to create the run).
    obj = f"direct/{spec_raw['name']}/{name}"
    blob = cloud.bucket.blob(obj)
    blob.upload_from_string(content)
    run_id = events.run_id(cloud.settings.bucket, obj, blob.generation)
    state.create_run(run_id, {"dataset": spec_raw["name"], "spec": spec_raw,
                              "source": {"bucket": cloud.settings.bucket, "object": obj,
                                         "generation": blob.generation}})
    assert state.transition(run_id, (lifecycle.RECEIVED,), lifecycle.VALIDATING)
    return run_id


def csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


BAD_FILES = {
    "empty_file": lambda taxi: b"",
    "no_rows": lambda taxi: (HEADER + "\n").encode(),
    "not_a_table": lambda taxi: bytes(range(256)) * 40,
    "bad_encoding": lambda taxi: csv_bytes(taxi.head(300)).replace(b"Cash", b"Esp\xe8ces"),
    "wrong_delimiter": lambda taxi: taxi.head(300).to_csv(index=False, sep=";").encode(),
    "corrupt_gzip": lambda taxi: gzip.compress(csv_bytes(taxi.head(300)))[:-400],
    "unreadable_parquet": lambda taxi: parquet_bytes(taxi.head(300))[:-100] + b"PAR1",
    "missing_columns": lambda taxi: csv_bytes(taxi.head(300).drop(columns=["fare"])),
    "unexpected_columns": lambda taxi: csv_bytes(taxi.head(300).assign(driver_name="x")),
    "rule_rejected": lambda taxi: csv_bytes(taxi.head(300).assign(trip_start_timestamp=-1)),
    "too_many_dropped": lambda taxi: csv_bytes(taxi.head(300).assign(payment_type="Bitcoin")),
    "too_few_rows": lambda taxi: csv_bytes(taxi.head(20)),
}


@pytest.mark.parametrize("reason", sorted(BAD_FILES))
def test_each_bad_input_is_quarantined_with_its_reason(cloud, state, dataset, taxi, reason):
    content = BAD_FILES[reason](taxi)
    run_id = start_run(cloud, state, dataset, f"{reason}.csv", content)
    before = cloud.bucket.get_blob(f"direct/{dataset['name']}/{reason}.csv")

    assert validator.run(cloud, state, run_id) == "rejected"

    run = state.get_run(run_id)
    assert (run["status"], run["reason"]) == ("rejected", reason)
    assert run["message"] and "Traceback" not in run["message"]
    after = cloud.bucket.get_blob(before.name)       # the dropped object is never modified or deleted
    assert (after.generation, after.md5_hash, after.updated) == (before.generation, before.md5_hash, before.updated)
    assert after.download_as_bytes() == content
    quarantine = f"quarantine/{dataset['name']}/{run_id}/"
    assert run["quarantine"] == quarantine
    assert cloud.read_bytes(quarantine + f"{reason}.csv") == content
    why = json.loads(cloud.read_bytes(quarantine + "reason.json"))
    assert why["reason"] == reason and why["message"] == run["message"]
    report = json.loads(cloud.read_bytes(f"reports/{run_id}/validation.json"))
    assert report["status"] == "rejected" and report["reason"] == reason
    assert b"<h2>Summary</h2>" in cloud.read_bytes(f"reports/{run_id}/validation.html")
    assert not [n for n in cloud.list_names(f"curated/{dataset['name']}/")]


def test_a_valid_batch_is_curated_once_with_its_counts_and_hash(cloud, state, dataset, taxi):
    df = pd.concat([taxi.head(500), taxi[taxi.fare > 600]])           # the 2016 $700 fare: dropped by a rule
    content = gzip.compress(csv_bytes(df))
    run_id = start_run(cloud, state, dataset, "trips.csv.gz", content)

    assert validator.run(cloud, state, run_id) == "validated"

    run = state.get_run(run_id)
    curated = run["curated"]
    assert curated["object"] == f"curated/{dataset['name']}/{curated['sha256']}.parquet"
    data = cloud.read_bytes(curated["object"], generation=curated["generation"])
    import hashlib
    assert hashlib.sha256(data).hexdigest() == curated["object_sha256"]   # the object as stored
    frame = pd.read_parquet(io.BytesIO(data))
    assert len(frame) == curated["rows"] == run["validation"]["rows_out"] == 500
    # with the warehouse's columns: the batch's identity (the sha256 of its data) and each row's place
    assert set(frame["_batch"]) == {curated["sha256"]} and list(frame["_row"]) == list(range(500))
    assert [b["object_sha256"] for b in state.list_batches(dataset["name"])] == [curated["object_sha256"]]
    assert run["validation"]["rows_in"] == 501
    assert {c["name"]: c["failed_rows"] for c in run["validation"]["checks"]}["large_fare_needs_distance"] == 1
    assert run["drift"]["verdict"] == "none"                          # no champion yet
    assert curated["time_min"] <= curated["time_max"]
    # the job retried after it finished re-publishes and writes nothing new
    assert validator.run(cloud, state, run_id) == "skipped"
    assert cloud.list_names(f"curated/{dataset['name']}/") == [curated["object"]]


def with_champion(cloud, state, spec_raw: dict, reference: pd.DataFrame, spec) -> None:
    """A champion whose training data was ``reference``: its profile where the trainer stores it."""
    cloud.write_json_once(f"models/{spec_raw['name']}/1/profile.json", drift.profile(reference, spec))
    state.dataset_ref(spec_raw["name"]).set({"champion_version": 1}, merge=True)


@pytest.mark.parametrize(("period", "expected"), [(("2015-01-01", "2016-01-01"), "severe"), (None, "none")])
def test_drift_is_judged_against_the_champion_profile(cloud, state, dataset, taxi, taxi_spec, period, expected):
    year = taxi_period(taxi, "2013-01-01", "2014-01-01").sample(frac=1.0, random_state=3)
    with_champion(cloud, state, dataset, year.iloc[: len(year) // 2], taxi_spec)
    batch = taxi_period(taxi, *period) if period else year.iloc[len(year) // 2:]
    run_id = start_run(cloud, state, dataset, "batch.parquet", parquet_bytes(batch))

    assert validator.run(cloud, state, run_id) == "validated"

    run = state.get_run(run_id)
    assert run["drift"]["verdict"] == expected
    report = orjson.loads(cloud.read_bytes(f"reports/{run_id}/validation.json"))
    assert report["drift"]["verdict"] == expected and report["reference"] == {"champion_version": 1}
    scores = {f["feature"]: f for f in report["drift"]["features"]}
    assert set(scores) == (set(taxi_spec.features) | {taxi_spec.target}) - set(taxi_spec.drift.exclude)
    if expected == "severe":
        assert scores["trip_miles"]["status"] == "severe"
    html = cloud.read_bytes(f"reports/{run_id}/validation.html").decode()
    assert "Drift against the champion" in html and html.count("data:image/png") >= len(scores)


def test_a_missing_object_is_the_domain_not_found_whatever_the_client_library_raises(cloud):
    """The core tells a missing object by tollgate.errors.NotFound (ingest rejects an unknown dataset with it, the
    review function answers 404), never by importing a Google client's exception."""
    from tollgate.errors import NotFound

    with pytest.raises(NotFound, match="gs://.*/specs/no_such_dataset.yaml does not exist"):
        cloud.read_bytes("specs/no_such_dataset.yaml")
    with pytest.raises(NotFound):
        cloud.open_read("incoming/nothing/here.csv", generation=1)
    assert cloud.read_json("reports/none/validation.json") is None
