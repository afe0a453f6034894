"""The Python client against the test session's local cloud, as a notebook would use it: drop and follow a
run, list runs and models, load the champion through the allow-list, predict a DataFrame, ask the ledger what
served when, download a verified model."""

from __future__ import annotations

import datetime as dt
import os
import time

import orjson
import pytest

from tests.conftest import wine_frame
from tests.test_chain_e2e import tollgate
from tollgate import artifacts, inference, tracing

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(local_cloud, monkeypatch):
    from tollgate import Client

    for key, value in {**local_cloud.env(), "TOLLGATE_HOME": str(local_cloud.home)}.items():
        monkeypatch.setenv(key, value)
    return Client()


def follow_the_trace(client, local_cloud, run_id: str) -> None:
    """One trace for the run, from the notification to the decision (and its MLflow mirror): each step's span is
    the child of the span that published its event or started its job, across processes."""
    chain = ["ingest", "validator", "launch-trainer", "trainer", "launch-evaluator", "evaluator", "decider",
             "tracking"]
    deadline = time.monotonic() + 60
    while True:   # each process exports its spans as its step ends; the tracking function runs after the decision
        found = client.trace(run_id)
        names = [s["name"] for s in found["spans"]]
        if set(chain) <= set(names) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert found["trace_id"] == tracing.trace_id(run_id) and set(chain) <= set(names), names
    spans = {s["name"]: s for s in found["spans"]}
    assert spans["ingest"]["parent_span_id"] is None and spans["ingest"]["attributes"]["tollgate.run_id"] == run_id
    for parent, child in zip(chain, chain[1:]):
        assert spans[child]["parent_span_id"] == spans[parent]["span_id"], (parent, child)
        assert spans[child]["start_ns"] >= spans[parent]["start_ns"]
    assert {s["service"] for s in found["spans"]} >= {"ingest", "validator", "trainer", "decider"}
    shown = tollgate(local_cloud, "trace", run_id)
    assert shown.returncode == 0 and found["trace_id"] in shown.stdout and "      evaluator" in shown.stdout, \
        shown.stdout
    assert f"trace {found['trace_id']}" in tollgate(local_cloud, "run", "show", run_id).stdout


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
    follow_the_trace(client, local_cloud, run["run_id"])
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
    explained = client.explain("sommelier", rows.head(5))   # why: exact attributions per declared feature
    named = [c for c in explained.columns if c.startswith("attribution_")
             and c not in ("attribution_baseline", "attribution_output", "attribution_class")]
    assert "attribution_alcohol" in named and len(named) >= 5
    gap = explained[named].sum(axis=1) - (explained["attribution_output"] - explained["attribution_baseline"])
    assert gap.abs().max() < 1e-6
    assert list(explained["attribution_class"]) == list(explained["prediction"].astype(str))   # the predicted class
    rows.head(3).to_csv(tmp_path / "three.csv", index=False)
    shown = tollgate(local_cloud, "predict", "sommelier", str(tmp_path / "three.csv"), "--explain")
    assert shown.returncode == 0 and "attribution_alcohol" in shown.stdout.splitlines()[0], shown.stderr

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
