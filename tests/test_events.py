"""Event parsing and run ids (pure)."""

import base64

import orjson
import pytest

from tollgate import events


def cloud_event(attributes=None, data=b"{}", message_id="1"):
    return {"message": {"attributes": attributes or {}, "data": base64.b64encode(data).decode(),
                        "messageId": message_id}}


GCS = {"bucketId": "b", "objectId": "incoming/chicago_taxi/2015.csv", "objectGeneration": "17",
       "eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1"}


def test_run_id_derives_from_bucket_object_generation():
    a = events.run_id("b", "incoming/x/f.csv", 1)
    assert a == events.run_id("b", "incoming/x/f.csv", "1")
    assert a != events.run_id("b", "incoming/x/f.csv", 2)
    assert a != events.run_id("c", "incoming/x/f.csv", 1)


def test_gcs_notification_is_parsed():
    obj = events.object_finalized(events.pubsub_message(cloud_event(GCS)))
    assert (obj.bucket, obj.name, obj.generation, obj.dataset) == ("b", GCS["objectId"], 17, "chicago_taxi")
    assert obj.run_id == events.run_id("b", GCS["objectId"], 17)


def test_falls_back_to_the_json_payload():
    payload = orjson.dumps({"bucket": "b", "name": "incoming/d/f.csv", "generation": "5"})
    obj = events.object_finalized(events.pubsub_message(cloud_event({}, payload)))
    assert obj.generation == 5 and obj.dataset == "d"


@pytest.mark.parametrize("name", ["curated/d/x.parquet", "incoming/", "incoming/d/", "incoming/file.csv"])
def test_objects_outside_incoming_dataset_have_no_dataset(name):
    obj = events.ObjectFinalized("b", name, 1)
    assert obj.dataset is None


def test_other_event_types_are_ignored():
    assert events.object_finalized(events.pubsub_message(cloud_event({**GCS, "eventType": "OBJECT_DELETE"}))) is None


@pytest.mark.parametrize("event", [
    {"nothing": 1},
    cloud_event({"eventType": "OBJECT_FINALIZE"}, b"not json"),
    cloud_event({**GCS, "objectGeneration": "abc"}),
])
def test_malformed_events_raise(event):
    with pytest.raises(events.MalformedEvent):
        events.object_finalized(events.pubsub_message(event))


def test_stage_payload_needs_a_run_id():
    with pytest.raises(events.MalformedEvent):
        events.stage_payload(events.pubsub_message(cloud_event({}, b'{"dataset": "d"}')))
    assert events.stage_payload(events.pubsub_message(cloud_event({}, b'{"run_id": "r"}')))["run_id"] == "r"


# -- the step events: one builder, each payload what its schema names ---------------------------------------------
RUN = {"run_id": "run-1", "dataset": "chicago_taxi", "status": "evaluated",
       "source": {"bucket": "b", "object": "incoming/chicago_taxi/2015.csv", "generation": 17},
       "curated": {"object": "curated/chicago_taxi/" + "a" * 64 + ".parquet", "generation": 5, "sha256": "a" * 64,
                   "rows": 250, "object_sha256": "b" * 64, "time_min": 1.0e9, "time_max": 1.1e9},
       "drift": {"verdict": "warn", "message": "trip_miles shifted"}, "challenger_version": 3}


def _schema(topic):
    import json
    from importlib import resources

    return json.loads(resources.files("tollgate").joinpath(f"schemas/{topic}.v1.json").read_text())


@pytest.mark.parametrize("status", sorted(events.STEP_TOPICS))
def test_each_step_event_carries_every_field_its_schema_names(status):
    import jsonschema

    event = events.step_event(RUN, status)
    schema = _schema(event.topic)
    jsonschema.validate(event.payload, schema)
    assert set(schema["required"]) <= set(event.payload)
    assert set(event.payload) <= set(schema["properties"])   # nothing published that the schema does not document
    assert event.payload["kind"] == event.topic == events.STEP_TOPICS[status]


def test_a_step_event_keeps_the_fields_of_the_record_it_is_made_from():
    """The job that finds its work done re-publishes the same event the step did (it used to drop curated, drift
    and version), and a record without those fields makes an event the schema refuses."""
    import jsonschema

    validated = events.step_event(RUN, "validated").payload
    assert (validated["curated"], validated["drift"]) == (RUN["curated"], "warn")
    assert events.step_event(RUN, "trained").payload["version"] == 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(events.step_event({"run_id": "r", "dataset": "d"}, "validated").payload,
                            _schema("data-validated"))


def test_the_received_event_is_a_storage_notification_and_other_statuses_have_none():
    arrived = events.step_event(RUN, "received")
    assert arrived.topic == "data-arrived" and arrived.attributes["objectGeneration"] == "17"
    parsed = events.object_finalized(events.Message("1", arrived.attributes, orjson.dumps(arrived.payload)))
    assert parsed.run_id == events.run_id("b", RUN["source"]["object"], 17)
    assert events.step_event({**RUN, "source": {"kind": "retrain"}}, "received") is None
    assert all(events.step_event(RUN, s) is None for s in ("validating", "training", "decided", "failed"))


def test_step_events_are_made_only_by_events_step_event():
    """No module builds a step event by hand (they drifted apart when seven places did)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    topics = set(events.STEP_TOPICS.values()) | {"data-arrived"}
    offenders = []
    for path in [*root.joinpath("shared").rglob("*.py"), *root.joinpath("functions").rglob("*.py"),
                 *root.joinpath("services").rglob("*.py"), *root.joinpath("localcloud").rglob("*.py")]:
        if path.name == "events.py" and path.parent.name == "tollgate":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and node.args[0].value in topics \
                    and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("Event", "envelope"):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders, offenders
