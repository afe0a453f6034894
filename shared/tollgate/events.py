"""Events: parse Pub/Sub CloudEvents into plain values, derive run ids, and make the payloads Tollgate publishes
(each step's event from one function, :func:`step_event`; the schemas are in ``tollgate/schemas``). Pure."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import uuid
from typing import Any

import orjson

from tollgate import lifecycle
from tollgate.jsonable import iso

SCHEMA_VERSION = "1"


class MalformedEvent(ValueError):
    """The event cannot be processed whatever we retry: log, record and acknowledge it."""


@dataclasses.dataclass(frozen=True)
class Event:
    """A message for ``topic``: a JSON payload and string attributes (``id``: its outbox document)."""
    topic: str
    payload: dict[str, Any]
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)


@dataclasses.dataclass(frozen=True)
class Message:
    message_id: str
    attributes: dict[str, str]
    data: bytes

    def json(self) -> dict[str, Any]:
        try:
            payload = orjson.loads(self.data)
        except orjson.JSONDecodeError as exc:
            raise MalformedEvent(f"message data is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise MalformedEvent("message data is not a JSON object")
        return payload


@dataclasses.dataclass(frozen=True)
class ObjectFinalized:
    bucket: str
    name: str
    generation: int

    @property
    def run_id(self) -> str:
        return run_id(self.bucket, self.name, self.generation)

    @property
    def dataset(self) -> str | None:
        """``incoming/<dataset>/<file>`` → dataset; None for any other object."""
        parts = self.name.split("/")
        if len(parts) >= 3 and parts[0] == "incoming" and parts[1] and parts[-1]:
            return parts[1]
        return None


def run_id(bucket: str, name: str, generation: int | str) -> str:
    """A run per (bucket, object, generation): the same upload always maps to the same run."""
    digest = hashlib.sha256(f"gs://{bucket}/{name}#{generation}".encode()).hexdigest()
    return f"run-{digest[:20]}"


def pubsub_message(cloud_event: Any) -> Message:
    """The Pub/Sub message inside a ``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent."""
    data = cloud_event.data if hasattr(cloud_event, "data") else cloud_event
    if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
        raise MalformedEvent("the event carries no Pub/Sub message")
    message = data["message"]
    try:
        body = base64.b64decode(message.get("data") or b"", validate=False)
    except (ValueError, TypeError) as exc:
        raise MalformedEvent(f"message data is not base64: {exc}") from exc
    message_id = str(message.get("messageId") or message.get("message_id") or "")
    return Message(message_id=message_id, attributes=dict(message.get("attributes") or {}), data=body)


def object_finalized(message: Message) -> ObjectFinalized | None:
    """A GCS notification for a finalized object; None for other event types (to acknowledge)."""
    attrs = message.attributes
    if attrs.get("eventType") not in (None, "OBJECT_FINALIZE"):
        return None
    bucket, name, generation = attrs.get("bucketId"), attrs.get("objectId"), attrs.get("objectGeneration")
    if not (bucket and name and generation):
        payload = message.json()
        bucket = bucket or payload.get("bucket")
        name = name or payload.get("name")
        generation = generation or payload.get("generation")
    if not (bucket and name and generation):
        raise MalformedEvent("the notification lacks bucketId, objectId or objectGeneration")
    try:
        return ObjectFinalized(bucket=str(bucket), name=str(name), generation=int(generation))
    except ValueError as exc:
        raise MalformedEvent(f"objectGeneration {generation!r} is not a number") from exc


def stage_payload(message: Message) -> dict[str, Any]:
    """The JSON payload of a stage event (data-validated, model-trained, model-evaluated)."""
    payload = message.json()
    if not isinstance(payload.get("run_id"), str) or not payload["run_id"]:
        raise MalformedEvent("the stage event has no run_id")
    return payload


def envelope(kind: str, **fields: Any) -> dict[str, Any]:
    """A versioned event payload; ``schema_version`` changes only when a field changes meaning."""
    return {"schema_version": SCHEMA_VERSION, "kind": kind, **fields}


STEP_TOPICS = {lifecycle.VALIDATED: "data-validated", lifecycle.TRAINED: "model-trained",
               lifecycle.EVALUATED: "model-evaluated"}   # a run's status → the event that starts its next step


def step_event(record: dict[str, Any], status: str) -> Event | None:
    """The event that moves a run on from ``status`` (what its next step's function listens to), made from the run
    record as it stands in that status (schemas/<topic>.v1.json); None when nothing follows ``status``. The one
    place these events are made: the step that reaches ``status`` (with the fields its transition writes), the job
    that finds its work done already, the reconciler, the next training and the re-evaluation all call it."""
    run_id, dataset = record["run_id"], record.get("dataset")
    if status == lifecycle.RECEIVED:   # as Cloud Storage notifies a finalized object
        source = record.get("source") or {}
        if not source.get("object"):
            return None
        generation = str(source["generation"])
        return Event("data-arrived", {"bucket": source["bucket"], "name": source["object"], "generation": generation},
                     {"bucketId": source["bucket"], "objectId": source["object"], "objectGeneration": generation,
                      "eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1"})
    topic = STEP_TOPICS.get(status)
    if topic is None:
        return None
    fields: dict[str, Any] = {"run_id": run_id, "dataset": dataset}
    if status == lifecycle.VALIDATED:
        fields.update(curated=record.get("curated"), drift=(record.get("drift") or {}).get("verdict", "none"))
    elif status == lifecycle.TRAINED:
        fields.update(version=record.get("challenger_version"))
    return Event(topic, envelope(topic, **fields))


def decided_event(entry: dict[str, Any], deployment: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``model-decided`` payload for a ledger entry (schema_version 1: schemas/model-decided.v1.json)."""
    evaluation = entry.get("evaluation") or {}
    metric = evaluation.get("metric")
    scores = None
    if metric:
        champion = evaluation.get("champion")
        scores = {"metric": metric,
                  "challenger": ((evaluation.get("challenger") or {}).get("metrics") or {}).get(metric),
                  "champion": (champion.get("metrics") or {}).get(metric) if champion else None,
                  "difference": evaluation.get("difference"), "holdout_rows": evaluation.get("holdout_rows")}
    return {
        "schema_version": SCHEMA_VERSION, "kind": "model-decided",
        "event": entry["event"], "ledger_id": entry["ledger_id"], "dataset": entry["dataset"],
        "run_id": entry.get("run_id"), "verdict": entry["verdict"], "actor": entry["actor"],
        "reason": entry["reason"], "at": iso(entry["at"]),
        "challenger_version": entry.get("challenger_version"), "champion_before": entry.get("champion_before"),
        "champion_after": entry.get("champion_after"), "serving": entry["serving_after"],
        "evaluation": scores, "drift": (entry.get("drift") or {}).get("verdict"),
        "deployment": {"traffic": deployment["traffic"], "uri": deployment["uri"]} if deployment else None,
    }
