"""Job `validator`: hold a run's dropped file against its dataset spec and the champion's data (RUN_ID).

Reads the object straight from the bucket in chunks (tollgate.validation); a valid batch is written once to
``curated/<dataset>/<sha256>.parquet`` (the sha256 of its data; the object adds the warehouse's ``_batch`` and
``_row`` columns) and loaded into the warehouse's curated table, a rejected one is copied to
``quarantine/<dataset>/<run_id>/`` with its reason. Imports no scikit-learn: a job's cold start is paid on every
run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tollgate import artifacts, drift, events, lifecycle, log, outbox, reports, validation
from tollgate import spec as specs
from tollgate.cloud import Cloud
from tollgate.cloud.state import State
from tollgate.errors import NotFound
from tollgate.jobs.common import champion_profile, open_run
from tollgate.warehouse import curated as warehouse_curated


def run(cloud: Cloud, state: State, run_id: str) -> str:
    """Validate the run's batch; \"validated\", \"rejected\" or \"skipped\" (not this job's turn)."""
    record = open_run(cloud, state, run_id, lifecycle.VALIDATOR)
    if record is None:
        return "skipped"
    spec = specs.from_dict(record["spec"])
    src = record["source"]
    filename = src["object"].rsplit("/", 1)[-1]
    champion, reference = champion_profile(cloud, state, spec.name)
    with tempfile.TemporaryDirectory() as tmp:
        curated_file = Path(tmp) / "curated.parquet"
        try:
            reader, size = cloud.open_read(src["object"], generation=src["generation"])
        except NotFound:
            return _replaced(cloud, state, run_id, src)
        with reader:
            result = validation.validate_file(reader, spec, curated_file, reference=reference, size=size)
        summary = result.summary()
        report = {"run_id": run_id, "dataset": spec.name, "source": src,
                  "reference": {"champion_version": champion} if reference else None, **summary}
        cloud.write_json_once(f"reports/{run_id}/validation.json", report)
        html, undrawn = reports.drawn("validation", report, lambda: reports.validation_html(report, reference))
        cloud.write_once(f"reports/{run_id}/validation.html", html.encode(), "text/html; charset=utf-8")
        if undrawn:
            log.warning("validation report not drawn; the run goes on", run_id=run_id, error=undrawn)
        drift_verdict = {"verdict": result.drift["verdict"], "message": result.drift.get("message", "")}
        if result.status == "rejected":
            quarantine = f"quarantine/{spec.name}/{run_id}/"
            src_blob = cloud.bucket.blob(src["object"], generation=src["generation"])
            if not cloud.bucket.get_blob(quarantine + filename):
                cloud.bucket.copy_blob(src_blob, cloud.bucket, quarantine + filename,
                                       source_generation=src["generation"], if_generation_match=0)
            cloud.write_json_once(quarantine + "reason.json", {"run_id": run_id, "reason": result.reason,
                                                               "message": result.message, "source": src,
                                                               "checks": summary["checks"]})
            state.transition(run_id, (lifecycle.VALIDATING,), lifecycle.REJECTED, reason=result.reason,
                             message=result.message, validation=_compact(summary), quarantine=quarantine,
                             drift=drift_verdict, **_undrawn("validation", undrawn))
            log.warning("batch rejected", run_id=run_id, reason=result.reason, detail=result.message)
            return "rejected"
        digest = artifacts.file_sha256(curated_file)
        earlier = state.get_batch(spec.name, digest)
        if earlier is not None and earlier.get("run_id") != run_id:   # the same rows again: train on them once
            return _duplicate(state, run_id, earlier, digest, summary, drift_verdict)
        stored = Path(tmp) / "stored.parquet"
        warehouse_curated.add_columns(curated_file, stored, digest)
        name = f"curated/{spec.name}/{digest}.parquet"
        try:
            generation = cloud.write_file_once(name, stored)
            object_sha256: str | None = artifacts.file_sha256(stored)
        except FileExistsError:   # the same data, curated before the warehouse columns: that object serves
            generation, object_sha256 = cloud.write_file_once(name, curated_file), None
    curated = {"object": name, "generation": generation, "sha256": digest, "rows": result.rows_out}
    if object_sha256:
        cloud.warehouse.load_curated(spec.name, name, digest)
        curated["object_sha256"] = object_sha256
    times = (result.profile or {}).get("columns", {}).get(spec.time_column or "", {})
    if times.get("count"):
        curated.update(time_min=float(times["min"]), time_max=float(times["max"]))
    state.add_batch(spec.name, run_id, curated)
    event = events.step_event({**record, "curated": curated, "drift": drift_verdict}, lifecycle.VALIDATED)
    if state.transition(run_id, (lifecycle.VALIDATING,), lifecycle.VALIDATED, events=(event,), curated=curated,
                        validation=_compact(summary), message=result.message, drift=drift_verdict,
                        **_undrawn("validation", undrawn)):
        outbox.publish(cloud, state, [event])
    log.info("batch validated", run_id=run_id, rows=result.rows_out, dropped=result.rows_dropped,
             drift=drift_verdict["verdict"])
    return "validated"


def _duplicate(state: State, run_id: str, earlier: dict[str, Any], digest: str, summary: dict[str, Any],
               drift_verdict: dict[str, Any]) -> str:
    """The batch's curated rows are a batch the dataset has already (the same file dropped again, under any name):
    the run ends a duplicate of the run that brought them, so they are never in a training window twice."""
    message = (f"the same {summary['rows_out']} curated rows as run {earlier.get('run_id')} (sha256 {digest[:12]}…), "
               "already in the dataset's batches: nothing new to train on")
    state.transition(run_id, (lifecycle.VALIDATING,), lifecycle.DUPLICATE, duplicate_of=earlier.get("run_id"),
                     message=message, validation=_compact(summary), drift=drift_verdict)
    log.info("duplicate batch", run_id=run_id, duplicate_of=earlier.get("run_id"), sha256=digest)
    return "duplicate"


def _replaced(cloud: Cloud, state: State, run_id: str, src: dict[str, Any]) -> str:
    """The run's generation is gone: the same name was dropped again (an overwrite replaces the object unless the
    bucket keeps versions). The newer generation has its own run; this one ends saying so."""
    bucket, name = cloud.settings.bucket, src["object"]
    current = cloud.bucket.get_blob(name)
    newer = (f"generation {current.generation} (run {events.run_id(bucket, name, current.generation)})"
             if current is not None else "a newer generation, since deleted")
    message = (f"gs://{bucket}/{name} generation {src['generation']} was replaced by {newer}, which is validated "
               "in a run of its own; nothing of this one was read")
    state.transition(run_id, (lifecycle.VALIDATING,), lifecycle.REJECTED, reason="object_replaced", message=message)
    log.warning("dropped object replaced before it was validated", run_id=run_id, object=src["object"])
    return "rejected"


def _undrawn(kind: str, problem: str | None) -> dict[str, Any]:
    """What the run records of a report that could not be drawn (nothing when it was)."""
    return {f"reports.{kind}_undrawn": problem} if problem else {}


def _compact(summary: dict[str, Any]) -> dict[str, Any]:
    """The validation summary as stored on the run: examples trimmed, drift scores without samples,
    no profile (validation.json has everything)."""
    checks = [{**c, "examples": c["examples"][:3]} for c in summary["checks"]]
    return {**{k: v for k, v in summary.items() if k != "profile"}, "checks": checks,
            "drift": drift.summary(summary["drift"])}
