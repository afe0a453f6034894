"""`down` then `up` keeps runs, models and the serving version (Firestore exported through REST)."""

import json
import os

import pytest
import requests
import yaml

from tests.conftest import TAXI_SPEC, taxi_period, write_csv
from tests.test_chain_e2e import INSTANCE, drop, tollgate

pytestmark = pytest.mark.e2e


def test_down_and_up_keep_runs_models_and_serving_version(local_cloud, taxi, tmp_path, unique):
    dataset = f"taxi_restart_{unique}"
    spec = yaml.safe_load(TAXI_SPEC.read_text())
    spec["name"] = dataset
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    pushed = tollgate(local_cloud, "spec", "push", str(tmp_path / "spec.yaml"))
    assert pushed.returncode == 0, pushed.stderr
    code, run = drop(local_cloud, write_csv(taxi_period(taxi, "2015-01-01", "2015-07-01"), tmp_path / "b.csv"),
                     dataset=dataset)
    assert code == 0 and run["decision"] == "promote", run
    url = run["deployment"]["uri"]
    env_before = local_cloud.env()

    local_cloud.down()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/health", timeout=2)
    local_cloud.up()
    os.environ.update(local_cloud.env())
    assert local_cloud.env() == env_before          # the same ports are taken again while free

    shown = tollgate(local_cloud, "run", "show", run["run_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert '"status": "decided"' in shown.stdout
    # The restored revisions start on their first request, as Cloud Run scales from zero: this one waits
    # for the model to load (seconds), then gets its answer.
    response = requests.post(f"{url}/predict", json={"instances": [INSTANCE]}, timeout=180)
    assert response.status_code == 200, response.text
    assert response.headers["X-Serving-Revision"].endswith("-v1")
    assert response.json()["model_version"] == run["model_version"]

    # Lineage is listed, and an artifact altered after registration is refused by every loader.
    models = json.loads(tollgate(local_cloud, "models", dataset, "--json").stdout)
    assert [(m["version"], m["role"]) for m in models] == [(1, "champion")]
    assert models[0]["cv"]["metric"] == "r2" and models[0]["cv"]["folds"] == 3 and models[0]["cv"]["score"] > 0.5
    history = json.loads(tollgate(local_cloud, "history", dataset, "--json").stdout)
    assert [(h["verdict"], h["serving_after"]) for h in history] == [("promote", {"version": 1, "canary": None})]
    from tollgate import artifacts, lifecycle
    from tollgate.cloud import Cloud
    from tollgate.cloud.state import State
    from tollgate.jobs import common
    from tollgate.settings import Settings

    cloud = Cloud(Settings.from_env())
    name = f"models/{dataset}/1/model.skops"
    original = cloud.read_bytes(name)
    cloud.bucket.blob(name).upload_from_string(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(artifacts.ArtifactError, match="altered after registration"):
        common.load_model(cloud, State(cloud.firestore), dataset, 1)
    from services.predictor.config import PredictorConfig
    from services.predictor.main import create_app

    predictor = create_app(PredictorConfig.from_env(DATASET=dataset, MODEL_VERSION="1"),
                           background=False)   # loads, fails, and never turns ready
    ready = predictor.test_client().get("/v2/health/ready")
    assert ready.status_code == 503 and "altered after registration" in ready.json["error"], ready.json
    # the evaluator job refuses it too: the next batch's run fails at evaluation and says why
    code, failed = drop(local_cloud, write_csv(taxi_period(taxi, "2015-07-01", "2016-01-01"), tmp_path / "c.csv"),
                        dataset=dataset)
    assert code == 1 and failed["status"] == "failed", failed
    assert lifecycle.failed_step(failed["error"]) == "evaluator"
    assert "altered after registration" in failed["error"]["message"]
