"""The monitoring loop on the local cloud: the predictor's log drained into the warehouse and counted once
even when redelivered, late labels joined (files and POST /feedback, unknown ids counted), a window with no
traffic, decay alerts with a retraining cool-down, canaries the monitor rolls back or promotes
on live evidence, recorded in `tollgate history`, and a monitor-tick message running the monitor job."""

from __future__ import annotations

import datetime as dt
import json
import time

import numpy as np
import pandas as pd
import pytest
import requests

from examples.demo import labels_csv, replay
from tests.conftest import taxi_period, write_csv
from tests.test_chain_e2e import drop, tollgate
from tests.test_decisions_e2e import predictor_url, push_spec

pytestmark = pytest.mark.e2e

MONITORING = {"window_minutes": 30, "canary_min_requests": 30, "min_labels": 50, "canary_max_metric_drop": 0.05}


def trips(taxi, spec, start: str, end: str, n: int, seed: int) -> pd.DataFrame:
    """n valid trips of a later period (as a client would send them: invalid rows get a 400)."""
    from tollgate import validation

    valid = validation.validate(taxi_period(taxi, start, end), spec).data
    return valid.sample(n, random_state=seed).reset_index(drop=True)


def upload_labels(cloud, dataset: str, name: str, labels, scale: float = 1.0) -> None:
    cloud.bucket.blob(f"labels/{dataset}/{name}.csv").upload_from_string(labels_csv(labels, scale))


def monitor_run(local_cloud, dataset: str, cloud=None, state=None) -> dict:
    """One tick for ``dataset``: through the CLI (`tollgate monitor run --json`), or in this process
    when given the cloud and state (the same function, without a CLI start-up per tick)."""
    time.sleep(2.5)   # the predictor publishes its log every second
    if cloud is not None:
        from tollgate.jobs import monitor

        return monitor.run(cloud, state, [dataset])
    done = tollgate(local_cloud, "monitor", "run", "--dataset", dataset, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_canaries_are_decided_on_live_evidence(local_cloud, cloud, state, taxi, taxi_spec, tmp_path, unique):
    dataset = f"taxi_monitor_{unique}"
    # every challenger is promoted as a 50% canary; the monitor decides what happens next. Each model
    # learns from its own batch only, so the one trained on shuffled fares has learned nothing.
    push_spec(local_cloud, taxi_spec, tmp_path, dataset, deployment={"canary_percent": 50},
              training={**taxi_spec.raw.get("training", {}), "window": "last_n", "last_n": 1},
              policy={**taxi_spec.raw["policy"], "threshold": -100.0, "margin": -100.0}, monitoring=MONITORING)
    first = taxi_period(taxi, "2014-01-01", "2015-01-01")
    code, run = drop(local_cloud, write_csv(first, tmp_path / "first.csv"), dataset=dataset)
    assert code == 0 and run["decision"] == "promote" and run["model_version"] == 1, run
    url = predictor_url(local_cloud, dataset)

    # A window with no traffic: recorded, nothing to judge, nothing raised
    quiet = monitor_run(local_cloud, dataset)["datasets"][dataset]
    assert quiet["requests"] == 0 and quiet["versions"] == {} and quiet["actions"]["alerts"] == []

    # v2 is trained on shuffled fares: a model that learned nothing, promoted as a canary by this policy
    rng = np.random.default_rng(0)
    broken = taxi_period(taxi, "2015-01-01", "2015-04-01")
    broken = broken.assign(fare=rng.permutation(broken["fare"].to_numpy()))
    code, run = drop(local_cloud, write_csv(broken, tmp_path / "broken.csv"), dataset=dataset)
    assert code == 0 and run["decision"] == "promote" and run["challenger_version"] == 2, run
    traffic = trips(taxi, taxi_spec, "2015-07-01", "2016-01-01", 800, seed=1)
    labels = replay(url, traffic, taxi_spec.features)
    upload_labels(cloud, dataset, "first-half", labels[:600])
    for request_id, row, fare in labels[600:]:   # the rest through the predictor's feedback route
        sent = requests.post(f"{url}/feedback", json={"request_id": request_id, "row": row, "label": fare}, timeout=10)
        assert sent.status_code == 202, sent.text
    upload_labels(cloud, dataset, "strangers", [("never-predicted", 0, 10.0), ("never-predicted", 1, 11.0)])

    ticks = [monitor_run(local_cloud, dataset, cloud, state)["datasets"][dataset]]
    if ticks[-1]["actions"]["canary"]["verdict"] == "wait":
        ticks.append(monitor_run(local_cloud, dataset, cloud, state)["datasets"][dataset])
    tick = ticks[-1]
    assert tick["actions"]["canary"]["verdict"] == "rollback", tick["actions"]
    assert "realised r2 worse" in tick["actions"]["canary"]["reason"]
    assert tick["unmatched_labels"] == 2
    v1, v2 = tick["versions"]["1"], tick["versions"]["2"]
    assert v1["requests"] + v2["requests"] == 80 and v1["labels"] + v2["labels"] == 800
    assert v1["realised"]["value"] > 0.7 > v2["realised"]["value"]
    # what each version relies on: its model explained the window's rows, against its training rows (the profile
    # the trainer stored); trips of the kind it was trained on: nothing moved
    explained = [v for v in (v1, v2) if v["rows"] >= taxi_spec.drift.min_rows]
    assert explained and all(v["attribution_drift"]["reason"] is None and v["attribution_drift"]["method"] ==
                             "tree_shap" and v["attribution_drift"]["verdict"] == "none" for v in explained), \
        [v["attribution_drift"] for v in (v1, v2)]
    served = {requests.post(f"{url}/predict", json={"instances": [traffic[list(taxi_spec.features)].iloc[0]
                                                                  .where(traffic.iloc[0].notna(), None).to_dict()]},
                            timeout=10).headers["X-Model-Version"] for _ in range(10)}
    assert served == {"1"}

    # v3 is trained on real fares: promoted as a canary, then to 100% by the monitor
    code, run = drop(local_cloud, write_csv(taxi_period(taxi, "2015-04-01", "2015-07-01"), tmp_path / "good.csv"),
                     dataset=dataset)
    assert code == 0 and run["decision"] == "promote" and run["challenger_version"] == 3, run
    labels = replay(url, traffic, taxi_spec.features)
    upload_labels(cloud, dataset, "second", labels)
    ticks = [monitor_run(local_cloud, dataset, cloud, state)["datasets"][dataset]]
    if ticks[-1]["actions"]["canary"]["verdict"] == "wait":
        ticks.append(monitor_run(local_cloud, dataset, cloud, state)["datasets"][dataset])
    assert ticks[-1]["actions"]["canary"]["verdict"] == "promote", ticks[-1]["actions"]["canary"]["reason"]

    history = json.loads(tollgate(local_cloud, "history", dataset, "--json").stdout)
    assert [(h["event"], h["actor"]) for h in history] == [
        ("promote", "auto"), ("promote", "auto"), ("canary-abort", "monitor"), ("promote", "auto"),
        ("canary-promote", "monitor")]
    assert "worse than the champion" in history[2]["reason"] and "not worse" in history[4]["reason"]
    shown = tollgate(local_cloud, "monitor", dataset)
    assert shown.returncode == 0 and "v3" in shown.stdout and "canary promote" in shown.stdout, shown.stdout
    report = cloud.bucket.blob(f"reports/monitoring/{dataset}/latest.html").download_as_text()
    assert "<img" in report and "realised r2" in report and "what the model relies on" in report


def test_a_redelivered_log_counts_once_and_decay_retrains_once(local_cloud, cloud, state, taxi, taxi_spec, tmp_path,
                                                       unique):
    from google.cloud import pubsub_v1

    from tollgate.jobs import monitor

    dataset = f"taxi_decay_{unique}"
    push_spec(local_cloud, taxi_spec, tmp_path, dataset, monitoring=MONITORING)
    code, run = drop(local_cloud, write_csv(taxi_period(taxi, "2014-01-01", "2015-01-01"), tmp_path / "a.csv"),
                     dataset=dataset)
    assert code == 0 and run["decision"] == "promote", run
    url = predictor_url(local_cloud, dataset)
    traffic = trips(taxi, taxi_spec, "2015-07-01", "2016-01-01", 300, seed=2)
    labels = replay(url, traffic, taxi_spec.features)
    time.sleep(2.5)

    # A tick that stored the log and crashed before acknowledging: the messages come back with the same
    # ids (nacked here); the next drain writes them again, never reading what is stored, and the
    # warehouse's queries count each once.
    from tollgate.warehouse import queries, tables

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(cloud.settings.project, monitor.SUBSCRIPTION)
    received = subscriber.pull(subscription=path, max_messages=1000, timeout=10).received_messages
    ours = [m for m in received if json.loads(m.message.data)["dataset"] == dataset]
    assert ours
    pull = tables.Pull()
    for m in ours:
        pull.add(json.loads(m.message.data), m.message.message_id, m.message.publish_time)
    stored = sum(cloud.write_once(tables.ROOT + name, data) > 0 for name, _, data, _ in pull.files())
    subscriber.modify_ack_deadline(subscription=path, ack_ids=[m.ack_id for m in received], ack_deadline_seconds=0)
    subscriber.close()

    # fares rose 60% since training: the realised R² falls under the threshold
    upload_labels(cloud, dataset, "late", labels, scale=1.6)
    subscriber = pubsub_v1.SubscriberClient()
    listener = subscriber.subscription_path(cloud.settings.project, f"alerts-{unique}")
    subscriber.create_subscription(name=listener, topic=cloud.topic_path("alerts"))
    tick = monitor_run(local_cloud, dataset, cloud, state)
    now = dt.datetime.now(dt.timezone.utc)
    rows = cloud.warehouse.query(queries.TRAFFIC, dataset=dataset, since=now - dt.timedelta(hours=1),
                                 until=now, start=now - dt.timedelta(hours=1), end=now).to_pylist()
    assert stored > 0 and tick["drained"]["predictions"] >= 300   # written by the crashed tick and again …
    assert [int(r["ok_rows"]) for r in rows] == [300], rows         # … counted once

    window = tick["datasets"][dataset]
    kinds = [a["kind"] for a in window["actions"]["alerts"]]
    assert "decay" in kinds, window["actions"]
    retrain = window["actions"]["retraining"]
    assert retrain and retrain.startswith("retrain-")
    alerts = json.loads(tollgate(local_cloud, "alerts", "--dataset", dataset, "--json").stdout)
    assert [a["kind"] for a in alerts if a["kind"] == "decay"] == ["decay"]
    published = [json.loads(m.message.data) for m in
                 subscriber.pull(subscription=listener, max_messages=100, timeout=10).received_messages]
    decay = [p for p in published if p["alert"]["dataset"] == dataset and p["alert"]["kind"] == "decay"]
    assert len(decay) == 1 and decay[0]["kind"] == "alert" and "realised r2" in decay[0]["alert"]["message"]
    subscriber.close()

    # the problem persists: no second training
    again = monitor_run(local_cloud, dataset, cloud, state)["datasets"][dataset]
    assert again["actions"]["retraining"] is None and again["actions"]["alerts"] == []
    retrain_run = state.get_run(retrain)
    assert retrain_run["source"]["kind"] == "retrain" and "realised r2" in retrain_run["source"]["reason"]
    deadline = time.monotonic() + 180
    while state.get_run(retrain)["status"] not in ("decided", "failed") and time.monotonic() < deadline:
        time.sleep(1)
    assert state.get_run(retrain)["status"] == "decided", state.get_run(retrain)

    # What the scheduler does every 5 minutes (paused in tests): a message on monitor-tick starts the
    # launch-monitor function, which starts the monitor job, which records another window.
    from tollgate.events import envelope

    before = len(state.windows(dataset))
    cloud.publish("monitor-tick", envelope("monitor-tick", schedule="monitor", datasets=[dataset],
                                           at=dt.datetime.now(dt.timezone.utc).isoformat()))
    deadline = time.monotonic() + 180
    while len(state.windows(dataset)) == before and time.monotonic() < deadline:
        time.sleep(1)
    assert len(state.windows(dataset)) == before + 1, "the scheduled tick did not run the monitor job"
    assert "expired" in tick and tick["expired"] == {}   # no retention_days: the tables' expiry only

    # retention_days: a tick deletes the dataset's log older than it, and only that
    old = tables.Pull()
    old.add({"schema": tables.PREDICTIONS_SCHEMA, "dataset": dataset,
             "records": [{"request_id": "old", "row": 0, "time": "2026-01-01T00:00:00+00:00", "model_version": 1,
                          "status": 200, "latency_ms": 1.0, "prediction": 1.0, "features": {}}]},
            "old-message", now - dt.timedelta(days=10))
    [(name, _, data, _)] = old.files()
    cloud.write_once(tables.ROOT + name, data)
    push_spec(local_cloud, taxi_spec, tmp_path, dataset, monitoring={**MONITORING, "retention_days": 8})
    shown = tollgate(local_cloud, "monitor", "run", "--dataset", dataset)
    assert shown.returncode == 0, shown.stderr
    assert f"{dataset}: past its retention_days, deleted 1 file(s) of predictions and 0 file(s) of labels" \
        in " ".join(shown.stdout.split()), shown.stdout
    assert not cloud.bucket.blob(tables.ROOT + name).exists()
    recent = cloud.warehouse.query(queries.TRAFFIC, dataset=dataset, since=now - dt.timedelta(hours=1),
                                   until=now, start=now - dt.timedelta(hours=1), end=now).to_pylist()
    assert [int(r["ok_rows"]) for r in recent] == [300]
