"""The predictor app: both serving contracts, every kind of bad input answered with the right 4xx,
readiness, metadata and metrics. The model is loaded from a model directory (AIP_STORAGE_URI)."""

from __future__ import annotations

import threading

import numpy as np
import orjson
import pytest

from services.predictor import main as predictor
from services.predictor.batching import MicroBatcher
from services.predictor.config import PredictorConfig
from tests.conftest import columns_of, model_dir, model_sha256
from tests.test_inputs import GOOD, tensor, v2_body
from tollgate import prepared


@pytest.fixture(scope="session")
def taxi_model_dir(taxi_model, taxi_spec, tmp_path_factory):
    return model_dir(taxi_model, taxi_spec, tmp_path_factory.mktemp("model"))


def config(dataset: str, version: int, folder=None, **overrides) -> PredictorConfig:
    """A revision's settings as a test gives them: the model from ``folder`` (AIP_STORAGE_URI, its hash pinned),
    no prediction log, nothing read from os.environ."""
    env = {"DATASET": dataset, "MODEL_VERSION": str(version), "TOLLGATE_PREDICTION_LOG": "off", **overrides}
    if folder is not None:
        env.update(AIP_STORAGE_URI=str(folder), TOLLGATE_MODEL_SHA256=model_sha256(folder))
    return PredictorConfig.from_env(env)


@pytest.fixture(scope="module")
def client(taxi_model_dir):
    return predictor.create_app(config("chicago_taxi", 3, taxi_model_dir), background=False).test_client()


def rows_of(df, spec):
    return [{name: (None if v != v else v) for name, v in row.items()}
            for row in df[list(spec.features)].to_dict("records")]


def test_vertex_predictions_equal_the_models(client, taxi_model, taxi_spec, taxi_clean):
    sample = taxi_clean.sample(300, random_state=1)
    response = client.post("/predict", data=orjson.dumps({"instances": rows_of(sample, taxi_spec)}),
                           headers={"X-Request-Id": "req-1"})
    assert response.status_code == 200, response.json
    # the id is the predictor's own, signed (feedback is accepted for it), never the caller's
    request_id = response.headers["X-Request-Id"]
    assert response.headers["X-Model-Version"] == "3" and request_id != "req-1" and len(request_id) == 65
    body = response.json
    expected = prepared.plain(taxi_model, taxi_spec)(columns_of(sample, taxi_spec)).predictions
    assert body["model_version"] == 3 and np.max(np.abs(np.asarray(body["predictions"]) - expected)) <= 1e-9


@pytest.mark.parametrize("route", ["/explain", "/predict:explain"])
def test_explanations_add_up_per_declared_feature_on_the_vertex_contract(client, taxi_spec, taxi_clean, route):
    sample = taxi_clean.sample(5, random_state=2)
    response = client.post(route, data=orjson.dumps({"instances": rows_of(sample, taxi_spec)}))
    assert response.status_code == 200, response.json
    body = response.json
    assert len(body["explanations"]) == 5 and len(body["predictions"]) == 5 and body["model_version"] == 3
    for explanation, predicted in zip(body["explanations"], body["predictions"]):
        [attribution] = explanation["attributions"]
        assert set(attribution["featureAttributions"]) == set(taxi_spec.features)
        assert attribution["instanceOutputValue"] == pytest.approx(predicted, abs=1e-9)
        assert abs(sum(attribution["featureAttributions"].values()) - (attribution["instanceOutputValue"]
                                                                        - attribution["baselineOutputValue"])) < 1e-6
    too_many = client.post("/explain", data=orjson.dumps({"instances": rows_of(taxi_clean.head(101), taxi_spec)}))
    assert too_many.status_code == 400 and "at most 100 instances" in too_many.json["error"]
    bad = client.post("/explain", data=orjson.dumps({"instances": [{"trip_miles": "far"}]}))
    assert bad.status_code == 400 and any("trip_miles" in p for p in bad.json["problems"])


def test_v2_infer_equals_vertex(client):
    rows = [GOOD, {**GOOD, "trip_miles": 12.0, "company": "Flash Cab"}]
    vertex = client.post("/predict", json={"instances": rows}).json["predictions"]
    response = client.post("/v2/models/chicago_taxi/infer", json={"id": "abc", **v2_body(rows)})
    assert response.status_code == 200, response.json
    [out] = response.json["outputs"]
    assert response.json["id"] == "abc" and response.json["model_version"] == "3"
    assert out["name"] == "predict" and out["shape"] == [2] and out["data"] == vertex
    same = client.post("/v2/models/chicago_taxi/versions/3/infer", json=v2_body(rows))
    assert same.status_code == 200 and same.json["outputs"][0]["data"] == vertex


@pytest.mark.parametrize("method, path, body, status, fragment", [
    ("post", "/predict", b"{not json", 400, "not valid JSON"),
    ("post", "/predict", b"", 400, "not valid JSON"),
    ("post", "/predict", orjson.dumps({"instances": [{**GOOD, "trip_miles": -1}]}), 400,
     "instances[0].trip_miles: -1.0 is below the minimum 0"),
    ("post", "/predict", orjson.dumps({"instances": [GOOD] * 1001}), 400, "more than the limit of 1000"),
    ("post", "/predict", b"[" + b"1," * (5 * 1024 * 1024) + b"1]", 413, "larger than"),
    ("get", "/predict", None, 405, "GET is not allowed"),
    ("post", "/nowhere", b"{}", 404, "no route POST /nowhere"),
    ("post", "/v2/models/other/infer", orjson.dumps(v2_body([GOOD])), 404, "'other' is not served here"),
    ("post", "/v2/models/chicago_taxi/versions/2/infer", orjson.dumps(v2_body([GOOD])), 404,
     "version 2 of chicago_taxi is not served here"),
    ("post", "/v2/models/chicago_taxi/infer", orjson.dumps({"inputs": []}), 400, "non-empty `inputs` list"),
    ("post", "/feedback", orjson.dumps({"labels": [{"request_id": "r1", "label": "cheap"}]}), 400,
     "labels[0].label: 'cheap' is not a finite number"),
    ("post", "/feedback", orjson.dumps({"request_id": "r1", "label": 12.5}), 400,
     "labels[0].request_id: 'r1' is not a request id this predictor issued"),
])
def test_bad_requests_get_the_right_4xx_with_a_message(client, method, path, body, status, fragment):
    response = getattr(client, method)(path, data=body)
    assert response.status_code == status, response.data[:300]
    payload = response.json
    assert any(fragment in text for text in [payload["error"], *payload.get("problems", [])]), payload
    assert response.headers["X-Model-Version"] == "3"
    assert client.post("/predict", json={"instances": [GOOD]}).status_code == 200   # the worker survives


def test_feedback_for_an_issued_id_travels_on_the_log_which_is_off_here(client):
    issued = client.post("/predict", json={"instances": [GOOD]}).headers["X-Request-Id"]
    response = client.post("/feedback", json={"request_id": issued, "label": 12.5})
    assert response.status_code == 503
    assert "drop a labels file under labels/<dataset>/ instead" in response.json["error"]


def test_metadata_health_and_openapi(client, taxi_spec):
    meta = client.get("/metadata").json
    assert meta["model_version"] == 3 and meta["inference_path"] == "prepared" and meta["trained_at"]
    assert [f["name"] for f in meta["features"]] == list(taxi_spec.features)
    assert {f["name"]: f["type"] for f in meta["features"]}["company"] == "string"
    assert client.get("/health").status_code == 200 and client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/health/live").json == {"live": True}
    assert client.get("/v2/models/chicago_taxi/ready").status_code == 200
    v2 = client.get("/v2/models/chicago_taxi").json
    assert v2["versions"] == ["3"] and [i["name"] for i in v2["inputs"]] == list(taxi_spec.features)
    doc = client.get("/openapi.json").json
    schema = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["instances"]["items"]["properties"]["trip_start_hour"]["maximum"] == 23
    explained = doc["paths"]["/predict:explain"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    attribution = explained["properties"]["explanations"]["items"]["properties"]["attributions"]["items"]
    assert set(attribution["properties"]["featureAttributions"]["properties"]) == set(taxi_spec.features)


def test_metrics_count_requests_errors_latency_and_batches(client):
    client.post("/predict", data=b"{oops")
    client.post("/predict", json={"instances": [GOOD, GOOD]})
    text = client.get("/metrics").data.decode()
    assert 'tollgate_predictor_requests_total{code="400",route="/predict"}' in text
    assert 'tollgate_predictor_errors_total{code="400"}' in text
    assert 'tollgate_predictor_request_seconds_bucket{le="0.005",route="/predict"}' in text
    assert "tollgate_predictor_batch_rows_count" in text and "tollgate_predictor_ready 1.0" in text
    assert 'tollgate_predictor_model_info{dataset="chicago_taxi",model_version="3",path="prepared"} 1.0' in text


def test_a_model_that_fails_to_load_never_turns_ready(taxi_model, taxi_spec, tmp_path):
    folder = model_dir(taxi_model, taxi_spec, tmp_path / "m")
    blob = bytearray((folder / "model.skops").read_bytes())
    blob[-100] ^= 0xFF   # altered after registration
    (folder / "model.skops").write_bytes(bytes(blob))
    client = predictor.create_app(config("chicago_taxi", 3, folder), background=False).test_client()
    for path in ("/health", "/v2/health/ready", "/metadata"):
        response = client.get(path)
        assert response.status_code == 503 and "failed to load" in response.json["error"]
        assert "hash" in response.json["error"]
    assert client.post("/predict", json={"instances": [GOOD]}).status_code == 503
    assert client.get("/v2/health/live").status_code == 200   # alive, not ready: the revision never serves


def test_classification_answers_labels_and_probabilities_on_both_contracts(tmp_path):
    from sklearn.datasets import load_breast_cancer

    from tollgate import spec as specs
    from tollgate import training
    from tollgate.topology import ROOT

    spec = specs.load(ROOT / "datasets" / "breast_cancer.yaml")
    data = load_breast_cancer(as_frame=True)
    frame = data.data.rename(columns=lambda c: c.replace(" ", "_"))
    frame["diagnosis"] = np.asarray(data.target_names)[data.target]
    model = training.fit(frame, spec)
    client = predictor.create_app(config("breast_cancer", 1, model_dir(model, spec, tmp_path / "m")),
                                  background=False).test_client()
    rows = frame.drop(columns="diagnosis").head(3).to_dict("records")
    body = client.post("/predict", json={"instances": rows}).json
    assert body["predictions"] == list(model.predict(frame.head(3)))   # a JSON list of labels, not its repr
    assert body["classes"] == ["benign", "malignant"] and len(body["probabilities"]) == 3
    inputs = [tensor(name, [row[name] for row in rows], "FP64") for name in spec.features]
    v2 = client.post("/v2/models/breast_cancer/infer", json={"inputs": inputs}).json
    assert v2["outputs"][0]["data"] == body["predictions"]


def test_before_the_first_model_the_service_is_healthy_and_says_what_to_do():
    """The revision terraform creates (DATASET, no MODEL_VERSION) passes its startup probe; nothing else."""
    client = predictor.create_app(PredictorConfig.from_env({"DATASET": "chicago_taxi",
                                                            "TOLLGATE_BUCKET": "acme-tollgate"})).test_client()
    assert client.get("/health").json == {"status": "awaiting-model", "dataset": "chicago_taxi",
                                          "model_version": None}
    assert client.get("/v2/health/live").status_code == 200
    for method, path in (("get", "/v2/health/ready"), ("post", "/predict"), ("post", "/feedback"),
                         ("post", "/v2/models/chicago_taxi/infer"), ("get", "/metadata"), ("get", "/")):
        response = getattr(client, method)(path, json={"instances": [GOOD]})
        assert response.status_code == 503, path
        assert "gs://acme-tollgate/incoming/chicago_taxi/" in response.json["error"]
    with pytest.raises(RuntimeError, match="DATASET must be set"):
        PredictorConfig.from_env({})


def test_micro_batcher_batches_concurrent_requests_and_returns_each_its_own(taxi_model, taxi_spec, taxi_clean):
    ready = prepared.prepare(taxi_model, taxi_spec)
    seen = []
    gate = threading.Event()

    def run(columns):
        gate.wait(5)   # hold the first batch so the others queue behind it
        return ready.predict(columns)

    batcher = MicroBatcher(run, max_rows=64, on_batch=lambda requests, rows: seen.append((requests, rows)))
    rows = [columns_of(taxi_clean.iloc[i * 3:i * 3 + 3], taxi_spec) for i in range(12)]
    results: dict[int, np.ndarray] = {}

    def one(i):
        batcher.arrive()
        results[i] = batcher.submit(rows[i]).predictions

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    threading.Timer(0.3, gate.set).start()
    for t in threads:
        t.join(10)
    assert len(results) == 12
    for i in range(12):
        np.testing.assert_array_equal(results[i], ready.predict(rows[i]).predictions)
    assert sum(r for r, _ in seen) == 12 and max(r for r, _ in seen) > 1   # some requests shared a call
    assert all(n <= 64 for _, n in seen)


def test_a_malformed_item_never_stops_the_prediction_log():
    """One record that cannot be serialised is dropped and counted; the thread goes on publishing."""
    import time

    from services.predictor.predlog import PredictionLog
    from tollgate.prepared import Columns, Outputs

    published, lost = [], []
    predlog = PredictionLog(lambda: (lambda data, attributes: published.append(orjson.loads(data))), "chicago_taxi",
                            3, (("trip_miles",), ("company",)), max_delay=0.05,
                            on_lost=lambda n, why: lost.append((n, why)))
    row = Columns(np.array([[1.5]]), [["Flash Cab"]])
    unwritable = Columns(np.array([[1.5]]), [[object()]])   # a feature value JSON cannot hold
    predlog.record("bad", time.time(), unwritable, Outputs(np.array([9.5])), 0.001)
    predlog.record("good", time.time(), row, Outputs(np.array([9.5])), 0.001)
    time.sleep(0.3)
    predlog.record("later", time.time(), row, Outputs(np.array([7.0])), 0.001)
    predlog.close()
    ids = [r["request_id"] for message in published for r in message["records"]]
    assert ids == ["good", "later"] and lost == [(1, "malformed")]
