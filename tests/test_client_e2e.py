"""The Python client against the test session's local cloud, as a notebook would use it: drop and follow a
run, list runs and models, load the champion through the allow-list, predict a DataFrame, ask the ledger what
served when, download a verified model."""

from __future__ import annotations

import datetime as dt
import os

import orjson
import pytest

from tests.conftest import wine_frame
from tests.test_chain_e2e import tollgate
from tollgate import artifacts, inference

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(local_cloud, monkeypatch):
    from tollgate import Client

    for key, value in {**local_cloud.env(), "TOLLGATE_HOME": str(local_cloud.home)}.items():
        monkeypatch.setenv(key, value)
    return Client()


def test_the_python_client_does_what_the_cli_does(client, local_cloud, tmp_path):
    from tollgate import ClientError

    frame = wine_frame(500, seed=11)
    spec = tmp_path / "sommelier.yaml"
    spec.write_text(inference.infer(frame, "sommelier", "cultivar", with_baseline=False))
    assert tollgate(local_cloud, "spec", "push", str(spec)).returncode == 0
    data = tmp_path / "sommelier.csv"
    frame.iloc[:400].to_csv(data, index=False)

    run = client.drop(data, "sommelier")
    assert run["status"] == "decided" and run["decision"] == "promote", run
    assert client.local and client.runs("sommelier")[0]["run_id"] == run["run_id"]
    assert client.run(run["run_id"])["validation"]["rows_in"] == 400
    [model] = client.models("sommelier")
    assert model["role"] == "champion" and model["version"] == run["model_version"]
    assert client.model("sommelier")["sha256"] == model["sha256"]

    pipeline = client.load_model("sommelier")
    rows = frame.iloc[400:]
    predicted = client.predict("sommelier", rows)
    assert list(predicted["prediction"]) == [str(p) for p in pipeline.predict(rows.drop(columns="cultivar"))]
    assert {"probability_0", "probability_1", "probability_2"} <= set(predicted.columns)

    served = client.history("sommelier", at=dt.datetime.now(dt.timezone.utc))
    assert served["serving"]["serving"]["version"] == model["version"] and served["entries"][-1]["event"] == "promote"
    assert client.history("sommelier")[-1]["run_id"] == run["run_id"]

    written = client.download("sommelier", directory=tmp_path / "models")
    record = orjson.loads(written["record"].read_bytes())
    assert artifacts.loads(written["model"].read_bytes(), record["sha256"]) is not None
    assert written["model"].parent.name == f"sommelier-v{model['version']}" and written["profile"].exists()
    downloaded = tollgate(local_cloud, "model", "download", "sommelier", "-o", str(tmp_path / "cli"))
    assert downloaded.returncode == 0 and (tmp_path / "cli" / f"sommelier-v{model['version']}" / "model.skops").exists()

    with pytest.raises(ClientError, match="no run nope"):
        client.run("nope")
    with pytest.raises(ClientError, match="has no registered models"):
        client.models("nobody")
    with pytest.raises(ClientError, match="missing feature column"):
        client.predict("sommelier", rows[["alcohol"]])
    assert os.environ["TOLLGATE_HOME"] == str(local_cloud.home)
