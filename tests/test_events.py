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
