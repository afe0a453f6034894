"""The whole chain through the local cloud, driven as a user drives it: the CLI, gcloud and HTTP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import requests

from tests.conftest import taxi_period, write_csv
from tollgate import events
from tollgate import spec as specs
from tollgate.jobs.common import window_batches

pytestmark = pytest.mark.e2e

TOLLGATE = str(Path(sys.executable).parent / "tollgate")
INSTANCE = {"trip_miles": 3.2, "trip_seconds": 900, "trip_start_hour": 14, "trip_start_day": 3,
            "trip_start_month": 6, "pickup_community_area": 8, "dropoff_community_area": 32,
            "pickup_latitude": 41.89, "pickup_longitude": -87.63, "dropoff_latitude": 41.88,
            "dropoff_longitude": -87.62, "payment_type": "Cash", "company": None}


def tollgate(local_cloud, *args: str, timeout: float = 600, input_text: str | None = None,
             ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **local_cloud.env(), "TOLLGATE_HOME": str(local_cloud.home), "COLUMNS": "200"}
    return subprocess.run([TOLLGATE, *args], capture_output=True, text=True, env=env, timeout=timeout,
                          input=input_text)


def drop(local_cloud, path: Path, dataset="chicago_taxi", name=None) -> tuple[int, dict]:
    args = ["drop", str(path), "--dataset", dataset, "--wait", "--json"] + (["--name", name] if name else [])
    done = tollgate(local_cloud, *args)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.fixture(scope="module")
def first_run(local_cloud, taxi, tmp_path_factory):
    path = write_csv(taxi_period(taxi, "2013-01-01", "2013-07-01"), tmp_path_factory.mktemp("b") / "2013h1.csv")
    return drop(local_cloud, path)


def test_first_batch_is_promoted_and_served(first_run, local_cloud):
    code, run = first_run
    assert code == 0, run
    assert run["status"] == "decided" and run["decision"] == "promote", run
    assert run["model_version"] == 1 and run["challenger_metric"] > 0.7
    assert run["deployment"]["status"] == "done"
    status = json.loads(tollgate(local_cloud, "status", "--json").stdout)
    [taxi_status] = [d for d in status["datasets"] if d["dataset"] == "chicago_taxi"]
    url = taxi_status["predictor_url"]
    assert url and status["bucket"] == f"gs://{local_cloud.bucket}"
    assert taxi_status["champion"]["version"] == 1
    response = requests.post(f"{url}/predict", json={"instances": [INSTANCE, {**INSTANCE, "trip_miles": 12.0}]},
                             timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == 1 and response.headers["X-Model-Version"] == "1"
    assert len(body["predictions"]) == 2 and body["predictions"][1] > body["predictions"][0] > 0
    bad = requests.post(f"{url}/predict", json={"instances": [{"trip_miles": "far"}]}, timeout=10)
    assert bad.status_code == 400 and any("trip_miles" in p for p in bad.json()["problems"])
    meta = requests.get(f"{url}/metadata", timeout=10)   # the registry's record, as Firestore returns it
    assert meta.status_code == 200, meta.text
    assert meta.json()["model_version"] == 1 and meta.json()["trained_at"].startswith("20")
    assert meta.json()["inference_path"] == "prepared" and meta.json()["metrics"]


def test_second_batch_is_judged_against_the_champion(first_run, local_cloud, cloud, state, taxi, tmp_path):
    path = write_csv(taxi_period(taxi, "2013-07-01", "2014-01-01"), tmp_path / "2013h2.csv")
    code, run = drop(local_cloud, path)
    assert code == 0, run
    assert run["decision"] in ("promote", "keep") and run["champion_version"] == 1
    assert run["challenger_version"] == 2
    diff = run["difference"]
    assert diff["low"] <= diff["improvement"] <= diff["high"] and diff["resamples"] == 1000
    assert run["drift"] in ("none", "warn")            # judged against the champion's training profile
    refit = state.get_run(run["run_id"])["evaluation"]["refit"]   # read off both versions' window manifests
    assert refit["refit"] is True and refit["why"] == "a refit on the champion's 1 batch and 1 newer", refit
    record = state.get_version("chicago_taxi", 2)
    assert len(window_batches(cloud, "chicago_taxi", 2, record)) == 2
    tampered = {**record, "training_window": {**record["training_window"], "sha256": "0" * 64}}
    assert window_batches(cloud, "chicago_taxi", 2, tampered) == []   # a manifest that is not the record's: unread
    shown = tollgate(local_cloud, "run", "show", run["run_id"])
    assert shown.returncode == 0 and "drift:" in shown.stdout and "trip_miles" in shown.stdout
    assert "permutation importance" in shown.stdout
    detail = json.loads(tollgate(local_cloud, "run", "show", run["run_id"], "--json").stdout)
    importance = detail["evaluation"]["importance"]   # both models, one number per declared feature
    spec = specs.from_dict(state.get_run(run["run_id"])["spec"])
    assert sorted(f["feature"] for f in importance["features"]) == sorted(spec.features)
    top = importance["features"][0]
    assert top["challenger"]["low"] > 0 and top["champion"]["mean"] > 0 and importance["metric"] == "r2"
    report = tmp_path / "report.html"
    written = tollgate(local_cloud, "report", run["run_id"], "-o", str(report))
    assert written.returncode == 0, written.stderr
    assert "Drift against the champion" in report.read_text()
    evaluated = tmp_path / "evaluation.html"
    assert tollgate(local_cloud, "report", run["run_id"], "--kind", "evaluation", "-o", str(evaluated)).returncode == 0
    assert "Permutation importance (r2)" in evaluated.read_text()


def test_corrupted_batch_is_quarantined_and_incoming_untouched(first_run, local_cloud, cloud, tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("fare;trip_miles;company\n12.5;3.1;Flash Cab\n")
    code, run = drop(local_cloud, path)
    assert code == 1
    assert run["status"] == "rejected" and run["reason"] == "wrong_delimiter"
    assert "semicolons" in run["message"]
    incoming = cloud.bucket.get_blob(run["source"]["object"])
    assert incoming.generation == run["source"]["generation"]          # never modified
    assert incoming.download_as_bytes() == path.read_bytes()
    quarantined = cloud.bucket.get_blob(f"{run['quarantine']}broken.csv")
    assert quarantined.download_as_bytes() == path.read_bytes()
    reason = json.loads(cloud.read_bytes(f"{run['quarantine']}reason.json"))
    assert reason["reason"] == "wrong_delimiter"
    shown = tollgate(local_cloud, "run", "show", run["run_id"])
    assert shown.returncode == 0 and "wrong_delimiter" in shown.stdout


def test_unknown_dataset_is_rejected_with_a_hint(first_run, local_cloud, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    code, run = drop(local_cloud, path, dataset="no_such_dataset")
    assert code == 1 and run["reason"] == "unknown_dataset" and "tollgate spec push" in run["message"]


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud CLI not installed")
def test_gcloud_storage_cp_starts_a_run(first_run, local_cloud, state, taxi, tmp_path):
    path = write_csv(taxi_period(taxi, "2014-01-01", "2014-04-01"), tmp_path / "2014q1.csv")
    env = {**os.environ, **local_cloud.gcloud_env(), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")}
    target = f"gs://{local_cloud.bucket}/incoming/chicago_taxi/gcloud-2014q1.csv"
    done = subprocess.run(["gcloud", "storage", "cp", str(path), target], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    blob = local_cloud_blob(local_cloud, "incoming/chicago_taxi/gcloud-2014q1.csv")
    run_id = events.run_id(local_cloud.bucket, blob.name, blob.generation)
    run = wait_for(state, run_id, lambda r: r["status"] in ("decided", "rejected", "failed"))
    assert run["status"] == "decided", run


def local_cloud_blob(local_cloud, name):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project=local_cloud.project, credentials=AnonymousCredentials()).bucket(
        local_cloud.bucket).get_blob(name)


def wait_for(state, run_id, done, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = state.get_run(run_id)
        if run and done(run):
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not finish: {state.get_run(run_id)}")


def test_the_same_notification_three_times_makes_one_run(first_run, local_cloud, cloud, state, taxi, tmp_path):
    """Same (bucket, object, generation), at once and later: one run, one execution per job, one decision."""
    path = write_csv(taxi_period(taxi, "2014-04-01", "2014-07-01"), tmp_path / "2014q2.csv")
    # The upload publishes the first notification; three copies at once and a late one follow.
    name = "incoming/chicago_taxi/replayed-2014q2.csv"
    blob = cloud.bucket.blob(name)
    blob.upload_from_filename(str(path))   # this upload's own notification is the first delivery
    attributes = {"bucketId": local_cloud.bucket, "objectId": name, "objectGeneration": str(blob.generation),
                  "eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1"}
    data = json.dumps({"bucket": local_cloud.bucket, "name": name, "generation": str(blob.generation)}).encode()
    topic = cloud.topic_path("data-arrived")
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: cloud.publisher.publish(topic, data, **attributes).result(), range(3)))
    run_id = events.run_id(local_cloud.bucket, name, blob.generation)
    run = wait_for(state, run_id, lambda r: r["status"] == "decided")
    cloud.publisher.publish(topic, data, **attributes).result()          # a late duplicate
    time.sleep(3)
    run = state.get_run(run_id)
    assert run["status"] == "decided"
    statuses = [h["status"] for h in run["history"]]
    assert statuses.count("validating") == 1 and statuses.count("decided") == 1, statuses
    for job in ("validator", "trainer", "evaluator"):
        executions = cloud.executions.list_executions(parent=f"{cloud.location}/jobs/{job}")
        mine = [e for e in executions
                if {v.name: v.value for v in e.template.containers[0].env}.get("RUN_ID") == run_id]
        assert len(mine) == 1, (job, [e.name for e in mine])
    decisions = [e for e in state.ledger("chicago_taxi") if e["run_id"] == run_id]
    assert len(decisions) == 1


def test_a_malformed_message_is_recorded_and_acknowledged(first_run, local_cloud, cloud, state):
    future = cloud.publisher.publish(cloud.topic_path("model-evaluated"), b"this is not json")
    message_id = future.result()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        snap = state.db.collection("rejected_events").document(message_id).get()
        if snap.exists:
            break
        time.sleep(0.3)
    assert snap.exists and snap.get("reason") == "malformed"
    time.sleep(3)   # acknowledged: no redelivery every second
    log = Path(local_cloud.home / "logs" / "function-decider.log").read_text()
    assert log.count(f'"event_id":"{message_id}"') == 1


def test_a_classification_dataset_runs_the_same_chain(first_run, local_cloud, cloud, tmp_path):
    from examples.breast_cancer import make_batches
    from tollgate.cloud import run as cloudrun

    first, second = make_batches(tmp_path)
    # `up` made the service before any model, as terraform does on GCP: healthy, refusing with a hint
    url = cloudrun.get_service(cloud, "breast_cancer").uri
    assert requests.get(f"{url}/health", timeout=10).json()["status"] == "awaiting-model"
    instance = pd.read_csv(first).drop(columns="diagnosis").iloc[0].to_dict()
    early = requests.post(f"{url}/predict", json={"instances": [instance]}, timeout=10)
    assert early.status_code == 503 and "incoming/breast_cancer/" in early.json()["error"]

    code, run = drop(local_cloud, first, dataset="breast_cancer")
    assert code == 0 and run["decision"] == "promote" and run["metric"] == "roc_auc", run
    served = requests.post(f"{url}/predict", json={"instances": [instance]}, timeout=10)   # the same URL
    assert served.status_code == 200 and served.json()["model_version"] == 1, served.text
    assert served.json()["predictions"][0] in ("malignant", "benign"), served.text
    code, run = drop(local_cloud, second, dataset="breast_cancer")
    assert code == (2 if run["decision"] == "review" else 0) and run["decision"] in ("promote", "keep", "review"), run
    assert run["champion_version"] == 1 and run["difference"]["metric"] == "roc_auc"
    report = tmp_path / "evaluation.html"
    written = tollgate(local_cloud, "report", run["run_id"], "--kind", "evaluation", "-o", str(report))
    assert written.returncode == 0, written.stderr
    page = report.read_text()
    assert "confusion matrix (challenger)" in page and "paired-bootstrap interval" in page


def test_a_hyperparameter_search_is_spread_over_the_trainer_tasks(first_run, local_cloud, cloud, state, taxi,
                                                                  taxi_spec, tmp_path, unique):
    import yaml

    raw = {**taxi_spec.raw, "name": f"taxi_search_{unique}",
           "model": {**taxi_spec.raw["model"], "params": {"max_iter": 50},
                     "search": {"tasks": 2, "folds": 2, "grid": {"learning_rate": [0.05, 0.2],
                                                                 "max_leaf_nodes": [7, 31]}}}}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    assert tollgate(local_cloud, "spec", "push", str(spec_file)).returncode == 0
    code, run = drop(local_cloud, write_csv(taxi_period(taxi, "2013-01-01", "2013-07-01"), tmp_path / "b.csv"),
                     dataset=raw["name"])
    assert code == 0, run
    record = state.get_version(raw["name"], run["challenger_version"])
    search = record["search"]
    assert search["tasks"] == 2 and [c["candidate"] for c in search["candidates"]] == [0, 1, 2, 3]
    best = max(search["candidates"], key=lambda c: c["score"])
    assert record["params"] == best["params"] and search["best"] == best["candidate"]
    for task in (0, 1):                               # each task scored its own share: candidates task, task+2
        part = json.loads(cloud.read_bytes(f"reports/{run['run_id']}/search/task-{task}.json"))
        assert [r["candidate"] for r in part["results"]] == [task, task + 2]
    [execution] = [e for e in cloud.executions.list_executions(parent=f"{cloud.location}/jobs/trainer")
                   if {v.name: v.value for v in e.template.containers[0].env}.get("RUN_ID") == run["run_id"]]
    assert execution.task_count == 2 and execution.succeeded_count == 2
