"""The MLflow mirror against a real `mlflow server` (SQLite, local artifact root) and the test session's local
cloud: a decided run with its metrics, artifacts and registered version under alias `champion`; MLflow down
while a file arrives (the chain still decides, the sync is owed, and `tollgate reconcile` completes it when
MLflow is back); canary promote and rollback move the aliases."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from examples.wine import wine_frame
from localcloud.cloud import MLFLOW_SERVER, free_port
from tests.test_chain_e2e import tollgate
from tollgate import egress, inference, tracking

pytestmark = pytest.mark.e2e


class MlflowServer:
    """`mlflow server` on a free port; stop() and start() again keep its database and artifacts."""

    def __init__(self, home: Path) -> None:
        if not MLFLOW_SERVER.exists():
            pytest.fail(f"MLflow's server is not installed ({MLFLOW_SERVER}): run `make mlflow` (`make test` does)")
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(MLFLOW_SERVER), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.home / 'mlflow.db'}",
             "--artifacts-destination", str(self.home / "artifacts")],
            stdout=(self.home / "server.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            assert self.proc.poll() is None, (self.home / "server.log").read_text()[-2000:]
            time.sleep(0.2)
        raise AssertionError("mlflow server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server
    server.stop()


def eventually(check, timeout: float = 90, what: str = ""):
    """``check()``'s first truthy value, polled: the tracking function mirrors after the decision's event."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:   # MLflow's client raises until the thing exists
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def aliases(client, name: str) -> dict[str, str]:
    return dict(client.get_registered_model(name).aliases)


def test_runs_versions_and_aliases_are_mirrored_and_survive_mlflow_down(local_cloud, cloud, state, mlflow_server,
                                                                        tmp_path, unique):
    from mlflow.tracking import MlflowClient

    dataset = f"cellar_{unique}"
    frame = wine_frame(900, seed=5)
    spec = yaml.safe_load(inference.infer(frame, dataset, "cultivar", with_baseline=False))
    spec["policy"]["margin"] = -1.0                 # every challenger is promoted: the aliases must move
    spec["deployment"] = {"canary_percent": 25}     # the second version starts as a canary
    spec["tracking"] = {"mlflow": {"uri": mlflow_server.url}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert tollgate(local_cloud, "spec", "push", str(tmp_path / "spec.yaml")).returncode == 0
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    model_name, experiment = f"tollgate-{dataset}", f"tollgate/{dataset}"

    # 1. MLflow up: the first run, its metrics, reports, model and registered version, alias champion → v1
    first = tmp_path / "first.csv"
    frame.iloc[:450].to_csv(first, index=False)
    done = tollgate(local_cloud, "drop", str(first), "--dataset", dataset, "--wait", "--json")
    assert done.returncode == 0, done.stderr
    run_id = yaml.safe_load(done.stdout)["run_id"]
    eventually(lambda: aliases(client, model_name).get("champion") == "1", what="alias champion on v1")
    exp = client.get_experiment_by_name(experiment)
    [mirrored] = client.search_runs([exp.experiment_id], filter_string=f"tags.`tollgate.run_id` = '{run_id}'")
    record = state.get_run(run_id)
    tags, metrics, params = mirrored.data.tags, mirrored.data.metrics, mirrored.data.params
    assert tags["tollgate.decision"] == "promote" and tags["tollgate.dataset"] == dataset
    assert tags["tollgate.data.sha256"] == record["curated"]["sha256"]
    assert tags["tollgate.source.generation"] == str(record["source"]["generation"])
    assert tags["tollgate.code_version"] == local_cloud.code_version and tags["tollgate.version"] == "1"
    assert mirrored.info.status == "FINISHED" and mirrored.info.run_name == run_id
    metric = record["evaluation"]["metric"]
    assert metrics[f"holdout.{metric}"] == pytest.approx(record["evaluation"]["challenger"]["metrics"][metric])
    assert metrics["holdout.rows"] == record["evaluation"]["holdout_rows"] and "cv.std" not in metrics
    assert any(k.startswith("slice.") for k in metrics) or not spec["evaluation"].get("slices")
    registered = state.get_version(dataset, 1)
    assert params["estimator"] == registered["estimator"] and params["policy.margin"] == "-1.0"
    files = {a.path for a in client.list_artifacts(mirrored.info.run_id, "reports")} | \
        {a.path for a in client.list_artifacts(mirrored.info.run_id, "model")}
    assert {"reports/validation.html", "reports/validation.json", "model/model.skops", "model/record.json"} <= files
    assert any(f.startswith("reports/evaluation") for f in files)
    version = client.get_model_version(model_name, "1")
    assert version.tags["sha256"] == registered["sha256"] and version.run_id == mirrored.info.run_id
    skops = Path(client.download_artifacts(mirrored.info.run_id, "model/model.skops", str(tmp_path)))
    assert hashlib.sha256(skops.read_bytes()).hexdigest() == registered["sha256"]

    # 2. MLflow down: the chain still decides; the mirror is owed and completed by the reconciler once it is back
    mlflow_server.stop()
    second = tmp_path / "second.csv"
    frame.iloc[450:].to_csv(second, index=False)
    done = tollgate(local_cloud, "drop", str(second), "--dataset", dataset, "--wait", "--json")
    assert done.returncode == 0 and yaml.safe_load(done.stdout)["decision"] == "promote", done.stdout + done.stderr
    second_run = yaml.safe_load(done.stdout)["run_id"]
    owed = eventually(lambda: (state.get_mirror(dataset) or {}).get("pending") and state.get_mirror(dataset),
                      what="the mirror recorded as owed")
    assert second_run in owed["runs"] and owed["error"] and str(mlflow_server.port) not in owed["error"], owed
    mlflow_server.start()
    fixed = tollgate(local_cloud, "reconcile")
    assert fixed.returncode == 0 and f"dataset {dataset}: MLflow mirror synced" in fixed.stdout, fixed.stdout
    assert state.get_mirror(dataset)["pending"] is False
    assert aliases(client, model_name) == {"champion": "1", "canary": "2"}
    assert client.get_model_version(model_name, "2").tags["tollgate.version"] == "2"

    # 3. canary promote and rollback move the aliases (the promotion path's model-decided events)
    assert tollgate(local_cloud, "canary", "promote", dataset, "--actor", "ana").returncode == 0
    eventually(lambda: aliases(client, model_name) == {"champion": "2"}, what="champion on v2, no canary")
    assert tollgate(local_cloud, "rollback", dataset, "--reason", "test", "--actor", "ana").returncode == 0
    eventually(lambda: aliases(client, model_name) == {"champion": "1"}, what="champion back on v1")
    # nothing was mirrored twice; a duplicate made by two syncs racing is deleted by the next sync
    assert len(client.search_runs([exp.experiment_id])) == 2
    assert len(client.search_model_versions(f"name = '{model_name}'")) == 2
    client.create_run(exp.experiment_id, run_name=run_id, tags={"tollgate.run_id": run_id})
    mirror = tracking.Mirror(tracking.Target(mlflow_server.url, experiment, model_name), cloud, state, dataset)
    assert mirror.run(run_id) == mirrored.info.run_id
    assert [r.info.run_id for r in client.search_runs([exp.experiment_id],
                                                      f"tags.`tollgate.run_id` = '{run_id}'")] == [mirrored.info.run_id]

    # 4. a server that names where artifacts go (file://, another bucket) gets no artifact: only its proxied API
    elsewhere = tmp_path / "server-chosen"
    hostile = f"hostile-{unique}"
    client.create_experiment(hostile, artifact_location=elsewhere.as_uri())
    mirror = tracking.Mirror(tracking.Target(mlflow_server.url, hostile, f"other-{unique}"), cloud, state, dataset)
    with pytest.raises(egress.EgressRefused, match="proxied artifact API"):
        mirror.run(run_id)
    assert not elsewhere.exists()
