"""Every function entry point, the functions-framework way: its app from ``create_app``, Pub/Sub push bodies
(tests/events/*.json, as the push subscription delivers them) through the test client, and the ack/retry
decision of ``runtime.handle_event``. Without a cloud, the adapters are replaced at their boundary
(``runtime.cloud``/``runtime.state``) by recorders; the emulator tier runs each function against the real
local cloud."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import functions_framework
import orjson
import pytest

from tollgate import events, runtime, topology
from tollgate.errors import StepFailed
from tollgate.topology import ROOT

EVENTS = Path(__file__).parent / "events"


def push(name: str, **changes: Any) -> dict[str, Any]:
    """A sample push body, with its message's data (a dict, JSON-encoded) or attributes changed."""
    body = copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))
    message = body["message"]
    if "data" in changes:
        data = changes.pop("data")
        message["data"] = base64.b64encode(data if isinstance(data, bytes) else json.dumps(data).encode()).decode()
    message["attributes"].update(changes.pop("attributes", {}))
    assert not changes
    return body


class Recorder:
    """Stands in for the Firestore adapter (runtime.state) where no cloud is running: records what is written."""

    def __init__(self) -> None:
        self.rejected: list[tuple[str, str, dict[str, Any]]] = []

    def record_rejected_event(self, message_id: str, reason: str, detail: dict[str, Any]) -> None:
        self.rejected.append((message_id, reason, detail))

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the function reached State.{name} where the test expects it not to")


class NoCloud:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the function reached Cloud.{name} where the test expects it not to")


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    state = Recorder()
    monkeypatch.setattr(runtime, "state", lambda: state)
    monkeypatch.setattr(runtime, "cloud", lambda: NoCloud())
    return state


@pytest.fixture
def client(monkeypatch):
    """A function's app as the local cloud runs it: its source, entry point and topology env."""
    def make(function: str):
        fn = topology.load().functions[function]
        for key, value in fn.env.items():
            monkeypatch.setenv(key, value)
        app = functions_framework.create_app(fn.entry_point, str(ROOT / fn.source / "main.py"),
                                             "http" if fn.http else "cloudevent")
        return app.test_client()
    return make


# -- the ack/retry decision -------------------------------------------------------------------------------------
def _raise(exc: BaseException):
    def handler(message: events.Message) -> str:
        raise exc
    return handler


@pytest.mark.parametrize(("handler", "outcome", "rejected"), [
    (lambda message: "done", "done", False),
    (_raise(events.MalformedEvent("no run_id")), "malformed", True),   # acknowledged: retrying cannot fix it
    (_raise(StepFailed("the batch does not match its hash")), "failed", False),   # acknowledged, logged
])
def test_handle_event_acknowledges_what_retrying_cannot_fix(recorder, handler, outcome, rejected):
    event = {"message": {"data": base64.b64encode(b"{}").decode(), "messageId": "42"}}
    assert runtime.handle_event(event, handler) == outcome
    assert recorder.rejected == ([("42", "malformed", {"error": "no run_id"})] if rejected else [])


def test_handle_event_lets_a_temporary_failure_come_back(recorder):
    """Any other exception propagates: the function answers 500 and Pub/Sub delivers the event again."""
    with pytest.raises(ConnectionError):
        runtime.handle_event({"message": {"data": "", "messageId": "43"}}, _raise(ConnectionError("Firestore")))
    assert recorder.rejected == []


def test_an_event_without_a_message_is_recorded_as_malformed(recorder):
    assert runtime.handle_event({"subscription": "x"}, lambda m: "never") == "malformed"
    assert recorder.rejected[0][1] == "malformed"


def test_log_lines_of_an_event_carry_its_id_and_the_requests_trace(recorder, capsys, monkeypatch, client):
    from tollgate import log

    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p")
    log.configure()
    response = client("decider").post("/", json=push("model-evaluated", data={"no": "run id"}),
                                      headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"})
    assert response.status_code == 200
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    [warning] = [line for line in lines if line["severity"] == "WARNING"]
    assert warning["event_id"] == "9002" and warning[log.TRACE_FIELD] == "projects/p/traces/" + "a" * 32


# -- each entry point, without a cloud ----------------------------------------------------------------------------
@pytest.mark.parametrize("function", ["launch-trainer", "launch-evaluator", "decider"])
def test_stage_functions_acknowledge_an_event_without_a_run_id(recorder, function, client):
    response = client(function).post("/", json=push("model-evaluated", data={"kind": "x"}))
    assert response.status_code == 200
    assert recorder.rejected == [("9002", "malformed", {"error": "the stage event has no run_id"})]


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]"])
def test_stage_functions_acknowledge_data_that_is_not_a_json_object(recorder, data, client):
    assert client("decider").post("/", json=push("model-evaluated", data=data)).status_code == 200
    assert recorder.rejected[0][1] == "malformed"


def test_ingest_ignores_objects_outside_incoming_and_other_event_types(recorder, client):
    ingest = client("ingest")
    outside = push("object-finalized", attributes={"objectId": "reports/run-1/validation.json"})
    assert ingest.post("/", json=outside).status_code == 200
    deleted = push("object-finalized", attributes={"eventType": "OBJECT_DELETE"})
    assert ingest.post("/", json=deleted).status_code == 200
    assert recorder.rejected == []


def test_ingest_records_a_notification_it_cannot_read(recorder, client):
    broken = push("object-finalized", attributes={"objectGeneration": "not-a-number"})
    assert client("ingest").post("/", json=broken).status_code == 200
    assert "is not a number" in recorder.rejected[0][2]["error"]


def test_a_temporary_failure_is_answered_500_so_the_event_comes_back(recorder, monkeypatch, client):
    from tollgate import chain

    def down(*args: Any) -> str:
        raise ConnectionError("Firestore is unreachable")

    monkeypatch.setattr(chain, "decide", down)
    assert client("decider").post("/", json=push("model-evaluated")).status_code == 500


def test_the_review_function_refuses_a_caller_without_a_verified_token(recorder, monkeypatch, client):
    from tollgate import identity

    issuer = identity.LocalIssuer.generate()
    monkeypatch.setenv("TOLLGATE_IDENTITY", "local")
    monkeypatch.setenv("TOLLGATE_LOCAL_ISSUER_KEYS", orjson.dumps(issuer.public_keys()).decode())
    review = client("review")
    response = review.get("/reviews", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401 and "not authenticated" in response.json["error"]
    signed = {"Authorization": f"Bearer {issuer.mint('ana', 'http://localhost')}"}
    assert review.get("/nowhere", headers=signed).status_code == 404


# -- each entry point against the local cloud ---------------------------------------------------------------------
@pytest.mark.emulator
def test_each_function_handles_a_real_event_on_the_local_cloud(local_cloud, cloud, state, unique, monkeypatch, client):
    monkeypatch.setattr(runtime, "cloud", lambda: cloud)
    monkeypatch.setattr(runtime, "state", lambda: state)
    dataset = f"nospec_{unique}"
    notification = push("object-finalized", attributes={"bucketId": cloud.settings.bucket,
                                                        "objectId": f"incoming/{dataset}/a.csv"})
    assert client("ingest").post("/", json=notification).status_code == 200
    run = state.get_run(events.run_id(cloud.settings.bucket, f"incoming/{dataset}/a.csv", 1732000000000001))
    assert run["status"] == "rejected" and run["reason"] == "unknown_dataset"

    unknown = push("model-evaluated", data={"run_id": f"run-{unique}", "dataset": dataset})
    for function in ("decider", "launch-trainer", "launch-evaluator"):   # nothing to do for a run that is not there
        assert client(function).post("/", json=unknown).status_code == 200, function
    assert client("reconciler").post("/", json=push("model-evaluated", data={})).status_code == 200
    assert client("review-expiry").post("/", json=push("model-evaluated", data={})).status_code == 200
    token = local_cloud.local_issuer().mint("tester", "http://localhost")   # the test client's URL
    listed = client("review").get("/reviews", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200 and isinstance(listed.json["reviews"], list)
