"""Decisions taking effect, end to end through the local cloud as a user drives it: canary traffic
measured at the service URL, canary promote/abort and rollback from the CLI, human review through
the `review` HTTP function (CLI, token, webhook, expiry by the scheduled tick), the ledger and
`history --at`, and every `model-decided` event checked against its published schema."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import threading
import time
from importlib import resources

import jsonschema
import pytest
import requests
import yaml

from localcloud import services
from tests.conftest import review_auth, taxi_period, write_csv
from tests.test_chain_e2e import INSTANCE, drop, tollgate

pytestmark = pytest.mark.e2e

SCHEMA = json.loads(resources.files("tollgate").joinpath("schemas/model-decided.v1.json").read_text())


def push_spec(local_cloud, taxi_spec, tmp_path, name, **sections):
    raw = {**taxi_spec.raw, "name": name, "model": {**taxi_spec.raw["model"], "params": {"max_iter": 60}},
           **sections}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    done = tollgate(local_cloud, "spec", "push", str(path))
    assert done.returncode == 0, done.stderr


def dataset_status(local_cloud, dataset):
    status = json.loads(tollgate(local_cloud, "status", "--json").stdout)
    [entry] = [d for d in status["datasets"] if d["dataset"] == dataset]
    return entry


def predictor_url(local_cloud, dataset):
    return dataset_status(local_cloud, dataset)["predictor_url"]


def served_versions(url, n):
    """Send n predictions to the service URL; count the model version each response reports."""
    counts = collections.Counter()
    with requests.Session() as session:
        for _ in range(n):
            response = session.post(f"{url}/predict", json={"instances": [INSTANCE]}, timeout=30)
            assert response.status_code == 200, response.text
            assert response.json()["model_version"] == int(response.headers["X-Model-Version"])
            counts[response.json()["model_version"]] += 1
    return counts


class SteadyLoad:
    """Clients calling the service URL without pause while the serving revision changes under them:
    every answer must be a 2xx (a dropped connection counts as a failure too)."""

    def __init__(self, url, clients=2):
        self.url, self.codes, self.failures, self.versions = url, collections.Counter(), [], collections.Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self):
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    response = session.post(f"{self.url}/predict", json={"instances": [INSTANCE]}, timeout=30)
                except requests.RequestException as exc:
                    self.failures.append(repr(exc))
                    continue
                self.codes[response.status_code] += 1
                if response.ok:
                    self.versions[int(response.headers["X-Model-Version"])] += 1
                else:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
                time.sleep(0.05)   # steady, not saturating: the chain shares the two cores

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


class DecidedEvents:
    """A pull subscription on model-decided, as a user subscribing to the event chain has."""

    def __init__(self, cloud, name):
        from google.cloud import pubsub_v1

        self.subscriber = pubsub_v1.SubscriberClient()
        self.path = self.subscriber.subscription_path(cloud.settings.project, name)
        self.subscriber.create_subscription(name=self.path, topic=cloud.topic_path("model-decided"))
        self.seen: dict[str, dict] = {}

    def collect(self, dataset, count, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.subscriber.pull(subscription=self.path, max_messages=50, timeout=10)
            if response.received_messages:
                self.subscriber.acknowledge(subscription=self.path,
                                            ack_ids=[m.ack_id for m in response.received_messages])
            for message in response.received_messages:
                payload = json.loads(message.message.data)
                if payload["dataset"] == dataset:
                    self.seen[payload["ledger_id"]] = payload    # at-least-once: ledger_id de-duplicates
            if len(self.seen) >= count:
                break
        return sorted(self.seen.values(), key=lambda p: p["at"])


def ledger_events(local_cloud, dataset):
    return [(e["event"], e["actor"]) for e in json.loads(tollgate(local_cloud, "history", dataset, "--json").stdout)]


def test_canary_split_abort_promote_and_rollback(local_cloud, cloud, taxi, taxi_spec, tmp_path, unique):
    dataset = f"taxi_canary_{unique}"
    events = DecidedEvents(cloud, f"decided-{unique}")
    # margin -1: every challenger that clears the threshold is promoted, so the test controls the story
    push_spec(local_cloud, taxi_spec, tmp_path, dataset, deployment={"canary_percent": 10},
              policy={**taxi_spec.raw["policy"], "margin": -1.0})
    batches = [write_csv(taxi_period(taxi, start, end), tmp_path / f"{start}.csv")
               for start, end in (("2013-01-01", "2013-07-01"), ("2013-07-01", "2014-01-01"),
                                  ("2014-01-01", "2014-07-01"))]
    code, first = drop(local_cloud, batches[0], dataset=dataset)
    assert code == 0 and first["decision"] == "promote" and first["model_version"] == 1, first
    url = predictor_url(local_cloud, dataset)
    assert served_versions(url, 20) == {1: 20}                 # a first model takes all traffic

    with SteadyLoad(url) as load:   # the decider starts v2's revision and splits traffic under load
        code, second = drop(local_cloud, batches[1], dataset=dataset)
        time.sleep(1)
    assert code == 0 and second["decision"] == "promote" and second["challenger_version"] == 2, second
    assert not load.failures and set(load.codes) == {200} and load.codes[200] > 50, (load.codes, load.failures[:5])
    assert set(load.versions) == {1, 2}, load.versions
    assert second["model_version"] == 1                        # the champion still serves 90%
    split = served_versions(url, 1000)
    assert set(split) == {1, 2} and 70 <= split[2] <= 130, split   # 10% ± 3% of 1,000 requests
    models = json.loads(tollgate(local_cloud, "models", dataset, "--json").stdout)
    assert {m["version"]: m["role"] for m in models} == {1: "champion", 2: "canary"}

    aborted = tollgate(local_cloud, "canary", "abort", dataset, "--reason", "p99 too high", "--actor", "ana")
    assert aborted.returncode == 0, aborted.stderr
    assert served_versions(url, 200) == {1: 200}               # 0% after abort
    again = tollgate(local_cloud, "canary", "abort", dataset)
    assert again.returncode == 1 and "no canary is running" in again.stderr

    code, third = drop(local_cloud, batches[2], dataset=dataset)
    assert code == 0 and third["decision"] == "promote" and third["challenger_version"] == 3, third
    promoted = tollgate(local_cloud, "canary", "promote", dataset, "--actor", "ana")
    assert promoted.returncode == 0 and "v3" in promoted.stdout, promoted.stderr
    assert served_versions(url, 50) == {3: 50}
    before_rollback = dt.datetime.now(dt.timezone.utc)

    with SteadyLoad(url) as load:   # v3 drains while v1 takes every request again
        rolled = tollgate(local_cloud, "rollback", dataset, "--reason", "complaints", "--actor", "bo", "--json")
        time.sleep(1)
    assert rolled.returncode == 0, rolled.stderr
    assert not load.failures and load.codes[200] > 20, (load.codes, load.failures[:5])
    assert json.loads(rolled.stdout)["serving"] == {"version": 1, "canary": None}
    assert served_versions(url, 20) == {1: 20}                 # the previous champion answers again
    repeated = tollgate(local_cloud, "rollback", dataset, "--json")
    assert repeated.returncode == 0 and json.loads(repeated.stdout)["outcome"] == "unchanged"
    assert served_versions(url, 20) == {1: 20}
    forward = tollgate(local_cloud, "rollback", dataset, "--to", "3", "--reason", "fixed upstream")
    assert forward.returncode == 0, forward.stderr
    assert served_versions(url, 20) == {3: 20}
    missing = tollgate(local_cloud, "rollback", dataset, "--to", "42")
    assert missing.returncode == 1 and "no version 42" in missing.stderr

    # A deployment that fails half-way: v1's revision (drained and stopped by now) refuses to start
    # because its artifact was altered. The pointer moved, traffic did not; the same command finishes it.
    time.sleep(services.DRAIN_SECONDS + 1)
    artifact = cloud.bucket.blob(f"models/{dataset}/1/model.skops")
    original = artifact.download_as_bytes()
    artifact.upload_from_string(original[:-1] + bytes([original[-1] ^ 1]))
    broken = tollgate(local_cloud, "rollback", dataset, "--to", "1", "--actor", "ana")
    assert broken.returncode == 1 and "run the same command again" in broken.stderr, broken.stderr
    assert served_versions(url, 20) == {3: 20}                 # no request went to a revision that was not ready
    assert dataset_status(local_cloud, dataset)["deployment"]["status"] == "failed"
    artifact.upload_from_string(original)
    retried = tollgate(local_cloud, "rollback", dataset, "--to", "1", "--json")
    assert retried.returncode == 0 and json.loads(retried.stdout)["outcome"] == "unchanged", retried.stderr
    assert served_versions(url, 20) == {1: 20}
    assert dataset_status(local_cloud, dataset)["deployment"]["status"] == "done"

    assert ledger_events(local_cloud, dataset) == [
        ("promote", "auto"), ("promote", "auto"), ("canary-abort", "ana"), ("promote", "auto"),
        ("canary-promote", "ana"), ("rollback", "bo"), ("rollback", os_actor()), ("rollback", "ana")]
    at = json.loads(tollgate(local_cloud, "history", dataset, "--at", before_rollback.isoformat(),
                             "--json").stdout)
    assert at["serving"]["serving"] == {"version": 3, "canary": None}
    assert at["serving"]["since"]["event"] == "canary-promote" and at["serving"]["since"]["actor"] == "ana"
    shown = tollgate(local_cloud, "history", dataset, "--at", before_rollback.isoformat())
    assert shown.returncode == 0 and "was served by v3" in shown.stdout

    published = events.collect(dataset, 8)   # the rollback whose deployment failed: announced by its retry
    assert [p["event"] for p in published] == ["promote", "promote", "canary-abort", "promote", "canary-promote",
                                               "rollback", "rollback", "rollback"]
    assert published[-1]["actor"] == "ana" and published[-1]["serving"]["version"] == 1
    assert published[-1]["deployment"]["traffic"][0]["version"] == 1
    for payload in published:
        jsonschema.validate(payload, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert published[1]["serving"] == {"version": 1, "canary": {"version": 2, "percent": 10}}
    assert published[1]["evaluation"]["metric"] == "r2" and published[1]["deployment"]["traffic"] == [
        {"version": 1, "percent": 90, "revision": f"predictor-{dataset.replace('_', '-')}-v1"},
        {"version": 2, "percent": 10, "revision": f"predictor-{dataset.replace('_', '-')}-v2"}]


def os_actor():
    import getpass
    import os

    return os.environ.get("TOLLGATE_ACTOR") or getpass.getuser()


def test_human_review_approve_reject_and_expiry(local_cloud, cloud, state, webhook, taxi, taxi_spec, tmp_path,
                                                unique):
    dataset = f"taxi_review_{unique}"
    # a holdout can never be big enough here: every decision goes to a person
    push_spec(local_cloud, taxi_spec, tmp_path, dataset, policy={**taxi_spec.raw["policy"], "min_holdout_rows": 10**6})
    batches = [write_csv(taxi_period(taxi, start, end), tmp_path / f"{start}.csv")
               for start, end in (("2013-01-01", "2013-07-01"), ("2013-07-01", "2014-01-01"),
                                  ("2014-01-01", "2014-07-01"))]
    code, first = drop(local_cloud, batches[0], dataset=dataset)
    assert code == 2 and first["decision"] == "review" and first["review"]["status"] == "pending", first
    run_id = first["run_id"]

    posted = [b for b in webhook.received if b["tollgate"]["run_id"] == run_id]
    assert len(posted) == 1 and run_id in posted[0]["text"] and posted[0]["blocks"][0]["type"] == "section"
    assert posted[0]["tollgate"]["verdict"] == "review"

    review_url = local_cloud.env()["TOLLGATE_REVIEW_URL"]
    assert requests.get(f"{review_url}/reviews", timeout=10).status_code == 401
    wrong = requests.get(f"{review_url}/reviews", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and "not authenticated" in wrong.json()["error"]
    auth = review_auth(local_cloud, "ana")
    report = requests.get(f"{review_url}/reviews/{run_id}/report/validation", headers=auth, timeout=10)
    assert report.status_code == 200 and report.headers["Content-Type"].startswith("text/html")
    bad = requests.post(f"{review_url}/reviews/{run_id}/approve", headers=auth, data=b"{", timeout=10)
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    impostor = requests.post(f"{review_url}/reviews/{run_id}/approve", headers=auth,
                             json={"reviewer": "the-boss", "reason": "looks fine"}, timeout=10)
    assert impostor.status_code == 400 and "(ana)" in impostor.json()["error"]   # the token says who, not the body
    no_reason = requests.post(f"{review_url}/reviews/{run_id}/approve", headers=auth, json={}, timeout=10)
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["error"]

    listed = json.loads(tollgate(local_cloud, "review", "list", "--dataset", dataset, "--json").stdout)
    assert [r["run_id"] for r in listed] == [run_id]
    shown = json.loads(tollgate(local_cloud, "review", "show", run_id, "--json").stdout)
    evidence = shown["evidence"]
    assert evidence["metric"] == "r2" and evidence["challenger"]["r2"] > 0.7 and evidence["champion"] is None
    assert evidence["reports"]["evaluation"]["gs"].endswith(f"reports/{run_id}/evaluation.html")
    assert "min_holdout_rows" in shown["reason"] or "held-out rows" in shown["reason"]
    table = tollgate(local_cloud, "review", "show", run_id)
    assert table.returncode == 0 and "tollgate review approve" in table.stdout

    # The approval's deployment fails (the model was altered after registration, so its revision never
    # gets ready): the approval is recorded, the reviewer is told, and approving again finishes it.
    artifact = cloud.bucket.blob(f"models/{dataset}/1/model.skops")
    original = artifact.download_as_bytes()
    artifact.upload_from_string(original[:-1] + bytes([original[-1] ^ 1]))
    failed = tollgate(local_cloud, "review", "approve", run_id, "--reviewer", "ana",
                      "--reason", "cross-validated score is solid")
    assert failed.returncode == 1 and "502" in failed.stderr and "approve again" in failed.stderr, failed.stderr
    assert state.get_run(run_id)["deployment"]["status"] == "failed"
    artifact.upload_from_string(original)
    approved = tollgate(local_cloud, "review", "approve", run_id, "--reviewer", "ana",
                        "--reason", "cross-validated score is solid", "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["outcome"] == "approved"
    url = predictor_url(local_cloud, dataset)
    assert served_versions(url, 5) == {1: 5}                   # the approval deployed it, as a promotion does
    twice = tollgate(local_cloud, "review", "approve", run_id, "--reason", "again")
    assert twice.returncode == 1 and "409" in twice.stderr and "already approved" in twice.stderr
    run = state.get_run(run_id)
    assert run["decision"] == "promote" and run["decided_by"] == "ana" and run["deployment"]["status"] == "done"

    code, second = drop(local_cloud, batches[1], dataset=dataset)
    assert code == 2 and second["decision"] == "review" and second["champion_version"] == 1, second
    rejected = tollgate(local_cloud, "review", "reject", second["run_id"], "--reviewer", "bo",
                        "--reason", "wait for the full quarter")
    assert rejected.returncode == 0 and "rejected" in rejected.stdout, rejected.stderr
    assert state.get_dataset(dataset)["champion_version"] == 1

    # reviews expire after the spec's deadline, when the scheduled tick comes
    push_spec(local_cloud, taxi_spec, tmp_path, dataset, policy={**taxi_spec.raw["policy"], "min_holdout_rows": 10**6},
              review={"expire_after_hours": 1 / 3600})
    code, third = drop(local_cloud, batches[2], dataset=dataset)
    assert code == 2 and third["decision"] == "review", third
    lineage = state.get_version(dataset, third["challenger_version"])["training_window"]   # a manifest, by digest
    manifest = cloud.read_bytes(lineage["manifest"].split("/", 3)[3])
    assert hashlib.sha256(manifest).hexdigest() == lineage["sha256"] and lineage["batches"] == 2
    window = [b["sha256"] for b in json.loads(manifest)["batches"]]
    assert state.get_run(second["run_id"])["curated"]["sha256"] not in window     # the rejected batch stays out
    assert state.get_run(first["run_id"])["curated"]["sha256"] in window
    time.sleep(1.5)
    cloud.publish("review-tick", {"schedule": "review-expiry"})    # what Cloud Scheduler (and the local one) send
    deadline = time.monotonic() + 30
    while state.get_review(third["run_id"])["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert state.get_review(third["run_id"])["status"] == "expired"
    assert state.get_run(third["run_id"])["decision"] == "keep"

    assert ledger_events(local_cloud, dataset) == [
        ("review", "auto"), ("approved", "ana"), ("review", "auto"), ("rejected", "bo"), ("review", "auto"),
        ("expired", "auto")]
    assert served_versions(url, 5) == {1: 5}
