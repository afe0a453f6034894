"""Trust boundaries on the local cloud, as an attacker or an unlucky operator would hit them: hostile and
misnamed specs refused at push and at ingest, a crafted model artifact with its correct sha256 refused by the
evaluator job and the predictor service with no code run, and the review webhook's secret URL kept out of
documents, logs and API answers."""

from __future__ import annotations

import io
import json
import time

import pytest
import requests
import yaml

from tests.conftest import review_auth, taxi_period, write_csv
from tests.hostile import crafted_artifact
from tests.test_chain_e2e import tollgate
from tollgate import artifacts, events, lifecycle, training, validation
from tollgate.cloud import run as cloudrun

pytestmark = pytest.mark.e2e


def wait_for_run(state, run_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = state.get_run(run_id)
        if run and run["status"] in lifecycle.TERMINAL:
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not end: {state.get_run(run_id)}")


def upload(cloud, name: str, data: bytes) -> str:
    """Write an object as someone with bucket access would (not through `tollgate`); returns the run id a
    notification for it makes."""
    blob = cloud.bucket.blob(name)
    blob.upload_from_string(data)
    return events.run_id(cloud.settings.bucket, name, blob.generation)


def test_hostile_and_misnamed_specs_are_refused_at_push_and_at_ingest(local_cloud, cloud, state, taxi, taxi_spec,
                                                                      tmp_path, unique):
    marker = tmp_path / "rule-ran"
    hostile = {**taxi_spec.raw, "name": f"hostile_{unique}", "rules": [
        {"name": "sneaky", "expr": f"fare.apply(lambda f: __import__('pathlib').Path('{marker}').touch()) == 1"}]}
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(hostile))
    pushed = tollgate(local_cloud, "spec", "push", str(path))
    assert pushed.returncode == 1 and "rules[0].expr" in pushed.stderr and "rule 'sneaky'" in pushed.stderr
    assert "not allowed in a rule" in pushed.stderr

    csv = write_csv(taxi_period(taxi, "2014-01-01", "2014-03-01"), tmp_path / "b.csv").read_bytes()
    # the same spec written straight to specs/ (by someone allowed to, by mistake): ingest refuses it
    upload(cloud, f"specs/{hostile['name']}.yaml", yaml.safe_dump(hostile).encode())
    run = wait_for_run(state, upload(cloud, f"incoming/{hostile['name']}/b.csv", csv))
    assert (run["status"], run["reason"]) == ("rejected", "bad_spec")
    assert "rule 'sneaky'" in run["message"] and "not allowed in a rule" in run["message"]
    # a spec filed under another dataset's name governs nothing
    upload(cloud, f"specs/impostor_{unique}.yaml", yaml.safe_dump({**taxi_spec.raw, "name": "chicago_taxi"}).encode())
    run = wait_for_run(state, upload(cloud, f"incoming/impostor_{unique}/b.csv", csv))
    assert (run["status"], run["reason"]) == ("rejected", "bad_spec")
    assert "is named 'chicago_taxi'" in run["message"] and "tollgate spec push" in run["message"]
    # a folder that no dataset can be named like
    run = wait_for_run(state, upload(cloud, f"incoming/Chicago.Taxi.{unique}/b.csv", csv))
    assert (run["status"], run["reason"]) == ("rejected", "bad_dataset_name") and "1 to 30 characters" in run["message"]
    assert not marker.exists()


def register_model(cloud, state, dataset: str, run_id: str, spec, model_bytes: bytes) -> int:
    """A version whose artifact is ``model_bytes``, registered as the trainer registers one (its sha256 right)."""
    version = state.reserve_version(dataset, run_id)
    cloud.write_once(artifacts.artifact_object(dataset, version), model_bytes)
    state.register_version(dataset, run_id, lambda v: {
        "artifact": f"gs://{cloud.settings.bucket}/{artifacts.artifact_object(dataset, v)}",
        "sha256": artifacts.sha256(model_bytes), "estimator": spec.model.estimator, "spec": spec.raw, "task": spec.task,
        "features": list(spec.features), "target": spec.target, "metrics": {}})
    return version


def trained_run(cloud, state, taxi, spec_raw: dict, unique: str, model_bytes: bytes | None = None) -> str:
    """A run in `trained`, as the trainer leaves one: a curated batch and a registered challenger (a real model
    of the batch, or ``model_bytes``). Its file sits outside incoming/, so no notification races the test."""
    from tollgate import spec as specs

    spec = specs.from_dict(spec_raw)
    clean = validation.validate(taxi_period(taxi, "2014-01-01", "2014-07-01"), spec).data
    buffer = io.BytesIO()
    clean.to_parquet(buffer, index=False)
    digest = artifacts.sha256(buffer.getvalue())
    name = f"curated/{spec.name}/{digest}.parquet"
    generation = cloud.write_once(name, buffer.getvalue())
    run_id = f"run-test-{unique}"
    state.create_run(run_id, {"dataset": spec.name, "spec": spec.raw, "spec_sha256": spec.sha256,
                              "source": {"bucket": cloud.settings.bucket, "object": f"direct/{unique}.csv",
                                         "generation": 1}})
    curated = {"object": name, "generation": generation, "sha256": digest, "rows": len(clean)}
    state.add_batch(spec.name, run_id, curated)
    model_bytes = model_bytes or artifacts.dumps(training.fit(clean, spec))
    version = register_model(cloud, state, spec.name, run_id, spec, model_bytes)
    assert state.transition(run_id, (lifecycle.RECEIVED,), lifecycle.TRAINED, curated=curated,
                            challenger_version=version)
    return run_id


def evaluated_run(cloud, state, taxi, taxi_spec, dataset: str, unique: str) -> str:
    """A run in `evaluated` with a first model that clears the threshold: the decider would promote it."""
    run_id = trained_run(cloud, state, taxi, {**taxi_spec.raw, "name": dataset}, unique)
    assert state.transition(run_id, (lifecycle.TRAINED,), lifecycle.EVALUATED, evaluated_against=None, evaluation={
        "metric": "r2", "challenger": {"metrics": {"r2": 0.93}, "version": 1}, "champion": None, "difference": None,
        "holdout_rows": 300})
    return run_id


def test_a_crafted_artifact_with_its_correct_hash_is_refused_by_the_evaluator_and_the_predictor(
        local_cloud, cloud, state, taxi, taxi_spec, tmp_path, unique):
    marker = tmp_path / "artifact-ran"
    dataset = f"crafted_{unique}"
    run_id = trained_run(cloud, state, taxi, {**taxi_spec.raw, "name": dataset}, unique, crafted_artifact(marker))
    record = state.get_version(dataset, 1)
    assert record["sha256"] == artifacts.sha256(cloud.read_bytes(artifacts.artifact_object(dataset, 1)))

    from tollgate import chain

    assert chain.launch(cloud, state, run_id, "evaluator") == "started"   # the evaluator job, as a process
    run = wait_for_run(state, run_id)
    assert run["status"] == lifecycle.FAILED and run["error"]["step"] == "evaluator"
    assert "outside Tollgate's allow-list" in run["error"]["message"] and "builtins.eval" in run["error"]["message"]
    assert run["error"]["attempt"] == 1   # permanent: failed at once, not retried

    with pytest.raises(Exception) as refused:   # a revision pinned to it never turns ready; traffic stays put
        cloudrun.set_traffic(cloud, dataset, [(1, 100)], {"GOOGLE_CLOUD_PROJECT": cloud.settings.project,
                                                          "TOLLGATE_BUCKET": cloud.settings.bucket})
    assert "outside Tollgate's allow-list" in str(refused.value)
    assert not marker.exists()


def test_the_webhook_url_never_reaches_documents_logs_or_answers(local_cloud, cloud, state, taxi, taxi_spec,
                                                                 monkeypatch, capsys, unique):
    from tollgate import log, promotion

    dataset = f"secret_{unique}"
    run_id = evaluated_run(cloud, state, taxi, taxi_spec, dataset, unique)
    outcome, entry = state.apply_decision(run_id, dataset, "review", "drift is severe", {}, None)
    assert outcome == "applied"
    token = f"T0KEN-{unique}"
    from tests.conftest import Webhook

    failing = Webhook()
    failing.status = 500   # answers 500, naming nothing
    log.configure(stream=None)
    for url in (f"http://127.0.0.1:9/services/{token}",                       # nothing listens: ConnectionError
                f"{failing.url}/services/{token}"):                            # an HTTP error
        monkeypatch.setenv(promotion.WEBHOOK_ENV, url)
        state.review_ref(run_id).update({"webhook": {}})
        payload = events.decided_event(entry)
        assert promotion.notify_webhook(state, state.get_review(run_id), payload) == "failed"
        recorded = state.get_review(run_id)["webhook"]
        assert recorded["status"] == "failed" and token not in json.dumps(recorded, default=str)
    assert recorded == {"status": "failed", "error": "HTTPError", "http_status": 500, "at": recorded["at"]}
    failing.server.shutdown()
    logged = capsys.readouterr().out
    assert "webhook failed" in logged and token not in logged
    answer = requests.get(f"{local_cloud.env()['TOLLGATE_REVIEW_URL']}/reviews", params={"status": "all"},
                          headers=review_auth(local_cloud), timeout=30)
    assert answer.status_code == 200 and run_id in answer.text and token not in answer.text


def test_a_version_folder_left_by_another_world_is_never_adopted(local_cloud, cloud, state, taxi, taxi_spec,
                                                                 tmp_path, unique):
    """A local cloud whose Firestore started over kept its bucket: `models/<dataset>/1/` holds a model no run of
    this registry wrote. The first training reserves v1, finds it taken, and registers past it; the old bytes are
    neither adopted nor touched, and what serves is what was trained."""
    from tests.test_chain_e2e import drop
    from tests.test_decisions_e2e import push_spec

    dataset = f"stale_world_{unique}"
    push_spec(local_cloud, taxi_spec, tmp_path, dataset)
    foreign = b"a model of a world this registry does not remember"
    cloud.write_once(artifacts.artifact_object(dataset, 1), foreign)      # written before: no run named in it
    code, run = drop(local_cloud, write_csv(taxi_period(taxi, "2014-01-01", "2014-04-01"), tmp_path / "b.csv"),
                     dataset=dataset)
    assert code == 0 and run["decision"] == "promote", run
    assert run["model_version"] == 2 and [v["version"] for v in state.list_versions(dataset)] == [2]
    assert cloud.read_bytes(artifacts.artifact_object(dataset, 1)) == foreign
    record = state.get_version(dataset, 2)
    assert artifacts.sha256(artifacts.read_verified(cloud, record)) == record["sha256"]
    blob = cloud.bucket.get_blob(artifacts.artifact_object(dataset, 2))
    assert blob.metadata == {"tollgate-run-id": run["run_id"]}   # the artifact names the run that wrote it
