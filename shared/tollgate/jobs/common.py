"""What the chain's jobs share: opening the run a job was started for, reading curated batches and registered
models (hash-checked, allow-listed), and writing a version's artifacts once."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pandas as pd

from tollgate import artifacts, events, lifecycle, log
from tollgate.cloud import Cloud
from tollgate.cloud.state import State
from tollgate.errors import NotFound, StepFailed


def open_run(cloud: Cloud, state: State, run_id: str, step: str) -> dict[str, Any] | None:
    """The run, if ``step`` holds it (its status is the step's running status); otherwise None, after
    re-publishing the step's event when its work is already done (a crash between "state written" and "event
    published" heals; consumers are idempotent)."""
    run = state.get_run(run_id)
    if run is None:
        raise StepFailed(f"run {run_id} does not exist")
    _, running, finished, _ = lifecycle.CLAIM[step]
    if run["status"] == running:
        return run
    if lifecycle.done(run["status"], step):
        event = events.step_event(run, finished)   # the run as the step left it: every field the event carries
        cloud.publish(event.topic, event.payload, **event.attributes)   # type: ignore[union-attr]
        log.info("step already done; event re-published", run_id=run_id, topic=event.topic)   # type: ignore[union-attr]
    else:
        log.info("not this job's turn; nothing to do", run_id=run_id, status=run["status"])
    return None


def champion_profile(cloud: Cloud, state: State, dataset: str) -> tuple[int | None, dict[str, Any] | None]:
    """(champion version, the reference profile stored beside it); (None, None) before the first champion."""
    champion = (state.get_dataset(dataset) or {}).get("champion_version")
    if champion is None:
        return None, None
    return int(champion), cloud.read_json(f"models/{dataset}/{int(champion)}/profile.json")


def load_batch(cloud: Cloud, batch: dict[str, Any]) -> pd.DataFrame:
    """A curated batch's data, its object checked against the hash recorded for it (``object_sha256``: the object
    with the warehouse's ``_batch`` and ``_row`` columns; batches curated before those have only ``sha256``)."""
    from tollgate.warehouse import curated

    data = cloud.read_bytes(batch["object"], generation=batch["generation"])
    if artifacts.sha256(data) != batch.get("object_sha256", batch["sha256"]):
        raise StepFailed(f"curated batch {batch['object']} does not match its recorded sha256")
    frame = pd.read_parquet(io.BytesIO(data))
    return frame.drop(columns=[c for c in curated.COLUMNS if c in frame.columns])


OWNER = "tollgate-run-id"   # the custom metadata naming the run that wrote a version's artifact


class ForeignArtifact(Exception):
    """A version's folder holds an object another run wrote (a local cloud whose Firestore started over while its
    bucket kept the models): it is never adopted."""


def write_or_adopt(cloud: Cloud, name: str, data: bytes, run_id: str,
                   content_type: str = "application/octet-stream") -> bytes:
    """Write an artifact of the run's reserved version once, naming the run in its metadata; if an earlier attempt
    of *this* run wrote it (and crashed before registering), keep those bytes (skops files are not byte-for-byte
    reproducible). An object written by any other run — or by no known run — is not adopted: ForeignArtifact."""
    try:
        cloud.write_once(name, data, content_type, metadata={OWNER: run_id})
        return data
    except FileExistsError:
        existing = cloud.bucket.get_blob(name)
        owner = (existing.metadata or {}).get(OWNER) if existing is not None else None
        if owner != run_id:
            raise ForeignArtifact(f"gs://{cloud.settings.bucket}/{name} was written by "
                                  f"{'run ' + owner if owner else 'no run this registry knows'}") from None
        log.info("artifact written by an earlier attempt of this run; adopting it", object=name)
        return cloud.read_bytes(name)


def load_model(cloud: Cloud, state: State, dataset: str, version: int) -> tuple[Any, dict[str, Any]]:
    """A registered model, read only from ``models/<dataset>/<version>/model.skops``, hash-checked against
    its registry record, every node allow-listed before it is deserialised, its structure checked and a sample of
    valid input predicted (artifacts.loads with the version's spec)."""
    record = state.get_version(dataset, version)
    if record is None:
        raise StepFailed(f"model {dataset} v{version} is not registered")
    name = artifacts.artifact_object(dataset, version)
    if record.get("artifact") != f"gs://{cloud.settings.bucket}/{name}":
        raise artifacts.ArtifactError(f"the registry record of {dataset} v{version} names the artifact "
                                      f"{record.get('artifact')!r}; Tollgate loads a version only from "
                                      f"gs://{cloud.settings.bucket}/{name}")
    return artifacts.loads(cloud.read_bytes(name), record["sha256"], artifacts.record_spec(record)), record


def window_batches(cloud: Cloud, dataset: str, version: int, record: dict[str, Any]) -> list[str]:
    """The sha256 of each batch a registered version was trained on: read only from
    ``models/<dataset>/<version>/window.json`` and only when it hashes to its registry record (versions
    registered before manifests kept the list itself). Empty when neither holds: nothing is then assumed."""
    window = record.get("training_window")
    if isinstance(window, list):
        batches = window
    else:
        name = artifacts.window_object(dataset, version)
        if (window or {}).get("manifest") != f"gs://{cloud.settings.bucket}/{name}":
            return []
        try:
            blob = cloud.read_bytes(name)
        except NotFound:
            return []
        if artifacts.sha256(blob) != window.get("sha256"):
            return []
        found = orjson.loads(blob)
        batches = found.get("batches", []) if isinstance(found, dict) else []
    return [str(b["sha256"]) for b in batches if isinstance(b, dict) and "sha256" in b]

