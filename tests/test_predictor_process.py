"""The predictor as it runs on Cloud Run: a gunicorn process. Standard clients (tritonclient.http,
curl) get correct predictions; schemathesis checks every operation of the OpenAPI document it
publishes; readiness is 503 until the model is loaded; SIGTERM lets requests in flight finish; the
prediction log reaches the `predictions` topic of the Pub/Sub emulator, and a Pub/Sub that is down
costs no request, only a counted loss."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from localcloud.cloud import free_port
from tests.conftest import columns_of, model_sha256
from tests.test_inputs import GOOD
from tests.test_predictor import rows_of, taxi_model_dir  # noqa: F401 - the shared model directory fixture
from tollgate import prepared
from tollgate.topology import ROOT

BIN = Path(sys.executable).parent


@contextlib.contextmanager
def serve(model_folder, **env):
    port = free_port()
    environment = {**os.environ, "AIP_STORAGE_URI": str(model_folder), "DATASET": "chicago_taxi",
                   "TOLLGATE_MODEL_SHA256": model_sha256(model_folder), "MODEL_VERSION": "3", "PORT": str(port),
                   "HOST": "127.0.0.1", "TOLLGATE_PREDICTION_LOG": "off",
                   **env}
    proc = subprocess.Popen([str(BIN / "gunicorn"), "--config", "services/predictor/gunicorn.conf.py",
                             "services.predictor.main:create_app()"], cwd=ROOT, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    statuses = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                statuses.append(requests.get(f"{url}/health", timeout=2).status_code)
                if statuses[-1] == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        assert statuses and statuses[-1] == 200, f"not ready: {statuses[-5:]}"
        yield url, proc, statuses
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_a_model_that_fails_to_load_ends_the_process(taxi_model_dir, tmp_path):  # noqa: F811
    """gunicorn exits with 3 ("failed to boot") so Cloud Run fails the revision instead of waiting on probes."""
    broken = tmp_path / "model"
    broken.mkdir()
    blob = (taxi_model_dir / "model.skops").read_bytes()
    (broken / "model.skops").write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    (broken / "record.json").write_text((taxi_model_dir / "record.json").read_text())
    proc = subprocess.Popen([str(BIN / "gunicorn"), "--config", "services/predictor/gunicorn.conf.py",
                             "services.predictor.main:create_app()"], cwd=ROOT,
                            env={**os.environ, "AIP_STORAGE_URI": str(broken), "DATASET": "chicago_taxi",
                                 "TOLLGATE_MODEL_SHA256": model_sha256(broken), "MODEL_VERSION": "3",
                                 "PORT": str(free_port()), "HOST": "127.0.0.1",
                                 "TOLLGATE_PREDICTION_LOG": "off"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, output[-2000:]
    assert "could not be loaded" in output and "altered after registration" in output, output[-2000:]


@pytest.fixture(scope="module")
def server(taxi_model_dir):  # noqa: F811
    with serve(taxi_model_dir) as running:
        yield running


def test_readiness_is_503_until_the_model_is_loaded(server):
    _, _, statuses = server
    assert set(statuses) <= {200, 503} and statuses[-1] == 200
    assert 503 in statuses   # the process answered before the model was in


def test_tritonclient_gets_the_models_predictions(server, taxi_model, taxi_spec, taxi_clean):
    import tritonclient.http as triton

    url, _, _ = server
    client = triton.InferenceServerClient(url=url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("chicago_taxi")
    meta = client.get_model_metadata("chicago_taxi")
    assert meta["versions"] == ["3"] and len(meta["inputs"]) == len(taxi_spec.features)
    sample = taxi_clean.sample(50, random_state=3).reset_index(drop=True)
    sample["company"] = sample["company"].fillna("Unknown company")
    expected = prepared.plain(taxi_model, taxi_spec)(columns_of(sample, taxi_spec)).predictions
    for binary in (False, True):   # JSON tensors, and the binary tensor extension tritonclient uses by default
        inputs = []
        for name in taxi_spec.features:
            if name in taxi_spec.feature_lists.numeric:
                data, kind = sample[name].to_numpy(dtype="float64").reshape(-1, 1), "FP64"
            else:
                data, kind = sample[name].to_numpy(dtype=object).reshape(-1, 1), "BYTES"
            tensor = triton.InferInput(name, list(data.shape), kind)
            tensor.set_data_from_numpy(data, binary_data=binary)
            inputs.append(tensor)
        result = client.infer("chicago_taxi", inputs, outputs=[triton.InferRequestedOutput("predict",
                                                                                          binary_data=False)])
        assert np.max(np.abs(result.as_numpy("predict") - expected)) <= 1e-9


def test_curl_gets_predictions(server, tmp_path):
    url, _, _ = server
    (tmp_path / "request.json").write_text(json.dumps({"instances": [GOOD, {**GOOD, "trip_miles": 12.0}]}))
    done = subprocess.run(["curl", "-sS", "-X", "POST", f"{url}/predict", "-H", "Content-Type: application/json",
                           "-d", f"@{tmp_path / 'request.json'}", "-D", str(tmp_path / "headers"),
                           "-o", str(tmp_path / "body")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    head, body = (tmp_path / "headers").read_text(), (tmp_path / "body").read_text()
    assert " 200 " in head.splitlines()[0] and "X-Model-Version: 3" in head
    predictions = json.loads(body)["predictions"]
    assert len(predictions) == 2 and predictions[1] > predictions[0] > 0


def test_schemathesis_finds_no_contract_violation(server, tmp_path):
    """Every operation, every check. v2 tensors must also agree with each other (one per feature, equal
    lengths), which OpenAPI cannot say: for that operation a schema-valid request may be refused (400).
    This server runs without the prediction log, so valid feedback is answered with the documented 503
    (invalid feedback still has to get a 400)."""
    url, _, _ = server
    infer, feedback = "/v2/models/{name}/infer", "/feedback"
    for selection in (["--exclude-path", infer, "--exclude-path", feedback],
                      ["--include-path", infer, "--exclude-checks", "positive_data_acceptance"],
                      ["--include-path", feedback, "--exclude-checks", "not_a_server_error,positive_data_acceptance"]):
        done = subprocess.run([str(BIN / "schemathesis"), "run", f"{url}/openapi.json", "--checks", "all",
                               *selection, "--max-examples", "40", "--seed", "7", "--no-color"],
                              capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert "generated" in done.stdout
    assert requests.post(f"{url}/predict", json={"instances": [GOOD]}, timeout=10).status_code == 200


def test_sigterm_lets_the_request_in_flight_finish(taxi_model_dir):  # noqa: F811
    with serve(taxi_model_dir) as (url, proc, _):
        body = json.dumps({"instances": [GOOD] * 50}).encode()
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:100])
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)   # Cloud Run stopping the instance mid-request
            time.sleep(0.5)
            sock.sendall(body[100:])
            answer = b""
            while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < 20:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert proc.wait(20) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/health", timeout=2)


@pytest.mark.emulator
def test_predictions_are_logged_to_the_predictions_topic(local_cloud, cloud, taxi_model_dir, unique):  # noqa: F811
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(cloud.settings.project, f"predictions-{unique}")
    subscriber.create_subscription(name=path, topic=cloud.topic_path("predictions"))
    with serve(taxi_model_dir, TOLLGATE_PREDICTION_LOG="on") as (url, _, _):
        ids = []
        for n in (1, 2, 1):
            response = requests.post(f"{url}/predict", json={"instances": [GOOD] * n}, timeout=10)
            assert response.status_code == 200
            ids.append(response.headers["X-Request-Id"])
        records, deadline = [], time.monotonic() + 30
        while len(records) < 4 and time.monotonic() < deadline:
            pulled = subscriber.pull(subscription=path, max_messages=10, timeout=5)
            for message in pulled.received_messages:
                payload = json.loads(message.message.data)
                assert payload["schema"] == "tollgate.predictions/v2" and message.message.attributes["dataset"]
                records += payload["records"]
            if pulled.received_messages:
                subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in pulled.received_messages])
        metrics = requests.get(f"{url}/metrics", timeout=5).text
    assert sorted({r["request_id"] for r in records}) == sorted(ids) and len(records) == 4
    record = records[0]
    features = json.loads(record["features"])   # JSON text: a column of the warehouse's predictions table
    assert record["model_version"] == 3 and features["trip_miles"] == 2.5
    assert features["company"] is None and float(record["prediction"]) > 0 and record["latency_ms"] > 0
    assert "tollgate_prediction_log_published_total 4.0" in metrics


def test_a_pubsub_outage_costs_no_request_and_is_counted(taxi_model_dir):  # noqa: F811
    dead = free_port()   # nothing listens here
    with serve(taxi_model_dir, TOLLGATE_PREDICTION_LOG="on", GOOGLE_CLOUD_PROJECT="p",
               PUBSUB_EMULATOR_HOST=f"127.0.0.1:{dead}", TOLLGATE_PREDICTION_LOG_TIMEOUT="2") as (url, _, _):
        for _ in range(5):
            assert requests.post(f"{url}/predict", json={"instances": [GOOD]}, timeout=10).status_code == 200
        lost, deadline = "", time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = requests.get(f"{url}/metrics", timeout=5).text
            lost = [line for line in metrics.splitlines() if line.startswith("tollgate_prediction_log_lost_total")]
            if lost and sum(float(line.split()[-1]) for line in lost) >= 5:
                break
            time.sleep(0.5)
    assert lost and sum(float(line.split()[-1]) for line in lost) == 5, lost


def _usage(pids: list[int]) -> tuple[float, float]:
    """(CPU seconds, resident MiB) of the processes, read from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = rss = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu += (int(fields[11]) + int(fields[12])) / ticks
        rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return cpu, rss


def test_a_body_of_700000_unknown_keys_costs_little_even_eight_at_a_time(taxi_model_dir):  # noqa: F811
    """7 MB, under the size limit: refused by its bytes before it is parsed. Eight at once (four threads of each
    worker busy) cost each a fraction of the ~1.5 s and 200 MiB that building and scanning its keys did."""
    from concurrent.futures import ThreadPoolExecutor

    body = b'{"instances": [{' + b",".join(b'"%x":1' % i for i in range(700_000)) + b"}]}"
    with serve(taxi_model_dir) as (url, proc, _):
        pids = [proc.pid, *map(int, Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split())]
        cpu_before, rss_before = _usage(pids)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: requests.post(f"{url}/predict", data=body, timeout=60,
                                                            headers={"Content-Type": "application/json"}),
                                    range(16)))
        cpu_after, rss_after = _usage(pids)
    assert {a.status_code for a in answers} == {413} and "split it" in answers[0].json()["error"]
    assert (cpu_after - cpu_before) / len(answers) < 0.3      # per refused request, against ~1.5 s before
    assert rss_after - rss_before < 150                       # eight 7 MB bodies in flight, nothing built
