"""The chain's jobs: validate, train and evaluate one run (RUN_ID), each a Cloud Run job.

Each job wires pure logic (validation, training, evaluation) to the adapters, and imports only what
its step needs (scikit-learn is not loaded to validate): a job's cold start is paid on every run. A job's
transition and the event that must follow it are written in one transaction (the outbox); the job then
publishes the event, and if it is killed first the reconciler does. A job that finds its work already
done re-publishes its event.

Failures: a permanent one (the step cannot succeed whatever we retry: a model outside the allow-list, a
batch that does not match its hash) marks the run failed at once; any other leaves the run to the job's
next attempt (``max_retries`` in topology.yaml), and the last attempt marks it failed. A job killed
outright (out of memory, SIGKILL) cannot mark anything: the reconciler finds its failed execution.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from tollgate import artifacts, drift, log, outbox, reports, validation
from tollgate import spec as specs
from tollgate.chain import StepFailed
from tollgate.cloud import Cloud
from tollgate.cloud import state as st
from tollgate.events import envelope

# Errors no retry can fix: the run is failed at once.
PERMANENT = (StepFailed, artifacts.ArtifactError, specs.SpecError)


# status while a job runs → (the event it publishes, the status once it is done)
_STEPS = {
    st.VALIDATING: ("data-validated", st.VALIDATED),
    st.TRAINING: ("model-trained", st.TRAINED),
    st.EVALUATING: ("model-evaluated", st.EVALUATED),
}


def _open(cloud: Cloud, state: st.State, run_id: str, running: str) -> dict[str, Any] | None:
    """The run, if it is in this job's status; otherwise None, after re-publishing the job's event
    when its step is already done (a crash between "state written" and "event published" heals)."""
    run = state.get_run(run_id)
    if run is None:
        raise StepFailed(f"run {run_id} does not exist")
    if run["status"] == running:
        return run
    topic, done = _STEPS[running]
    if run["status"] in st.ORDER and st.ORDER.index(run["status"]) >= st.ORDER.index(done):
        cloud.publish(topic, envelope(topic, run_id=run_id, dataset=run["dataset"]))   # consumers are idempotent
        log.info("step already done; event re-published", run_id=run_id, topic=topic)
    else:
        log.info("not this job's turn; nothing to do", run_id=run_id, status=run["status"])
    return None


def champion_profile(cloud: Cloud, state: st.State, dataset: str) -> tuple[int | None, dict[str, Any] | None]:
    """(champion version, the reference profile stored beside it); (None, None) before the first champion."""
    champion = (state.get_dataset(dataset) or {}).get("champion_version")
    if champion is None:
        return None, None
    return int(champion), cloud.read_json(f"models/{dataset}/{int(champion)}/profile.json")


def validate(cloud: Cloud, state: st.State, run_id: str) -> str:
    run = _open(cloud, state, run_id, st.VALIDATING)
    if run is None:
        return "skipped"
    spec = specs.from_dict(run["spec"])
    src = run["source"]
    filename = src["object"].rsplit("/", 1)[-1]
    champion, reference = champion_profile(cloud, state, spec.name)
    with tempfile.TemporaryDirectory() as tmp:
        curated_file = Path(tmp) / "curated.parquet"
        reader, size = cloud.open_read(src["object"], generation=src["generation"])
        with reader:
            result = validation.validate_file(reader, spec, curated_file, reference=reference, size=size)
        summary = result.summary()
        report = {"run_id": run_id, "dataset": spec.name, "source": src,
                  "reference": {"champion_version": champion} if reference else None, **summary}
        cloud.write_json_once(f"reports/{run_id}/validation.json", report)
        cloud.write_once(f"reports/{run_id}/validation.html", reports.validation_html(report, reference).encode(),
                         "text/html; charset=utf-8")
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
            state.transition(run_id, (st.VALIDATING,), st.REJECTED, reason=result.reason, message=result.message,
                             validation=_compact(summary), quarantine=quarantine, drift=drift_verdict)
            log.warning("batch rejected", run_id=run_id, reason=result.reason, detail=result.message)
            return "rejected"
        digest = artifacts.file_sha256(curated_file)
        name = f"curated/{spec.name}/{digest}.parquet"
        generation = cloud.write_file_once(name, curated_file)
    curated = {"object": name, "generation": generation, "sha256": digest, "rows": result.rows_out}
    times = (result.profile or {}).get("columns", {}).get(spec.time_column or "", {})
    if times.get("count"):
        curated.update(time_min=float(times["min"]), time_max=float(times["max"]))
    state.add_batch(spec.name, run_id, curated)
    event = outbox.Event("data-validated", envelope("data-validated", run_id=run_id, dataset=spec.name,
                                                    curated=curated, drift=drift_verdict["verdict"]))
    if state.transition(run_id, (st.VALIDATING,), st.VALIDATED, events=(event,), curated=curated,
                        validation=_compact(summary), message=result.message, drift=drift_verdict):
        outbox.publish(cloud, state, [event])
    log.info("batch validated", run_id=run_id, rows=result.rows_out, dropped=result.rows_dropped,
             drift=drift_verdict["verdict"])
    return "validated"


def _compact(summary: dict[str, Any]) -> dict[str, Any]:
    """The validation summary as stored on the run: examples trimmed, drift scores without samples,
    no profile (validation.json has everything)."""
    checks = [{**c, "examples": c["examples"][:3]} for c in summary["checks"]]
    return {**{k: v for k, v in summary.items() if k != "profile"}, "checks": checks,
            "drift": drift.summary(summary["drift"])}


def _load_batch(cloud: Cloud, batch: dict[str, Any]) -> pd.DataFrame:
    data = cloud.read_bytes(batch["object"], generation=batch["generation"])
    if artifacts.sha256(data) != batch["sha256"]:
        raise StepFailed(f"curated batch {batch['object']} does not match its recorded sha256")
    return pd.read_parquet(io.BytesIO(data))


def training_window(state: st.State, spec: specs.DatasetSpec, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Curated batches the run trains on, oldest first, ending with the run's own batch. Batches a
    reviewer rejected stay out of every later window."""
    mine = run["curated"]["sha256"]
    batches = [b for b in state.list_batches(spec.name) if not b.get("excluded") or b["sha256"] == mine]
    cut = next((i for i, b in enumerate(batches) if b["sha256"] == mine), None)
    if cut is None:
        raise StepFailed(f"the run's batch {mine} is not registered for dataset {spec.name}")
    window = batches[: cut + 1]
    if spec.training_window == "last_n" and spec.training_last_n > 0:
        window = window[-spec.training_last_n:]
    elif spec.training_window == "days" and "time_max" in window[-1]:
        since = window[-1]["time_max"] - spec.training_days * 86400
        window = [b for b in window[:-1] if b.get("time_max", since) >= since] + window[-1:]
    return window


def train(cloud: Cloud, state: st.State, run_id: str, task: int = 0, tasks: int = 1) -> str:
    """Train the challenger. With a search in the spec, each of the execution's ``tasks`` scores its
    share of the candidates by cross-validation and writes them to reports/<run>/search/; the task
    that completes the set fits the best candidate and registers it."""
    from tollgate import training

    run = _open(cloud, state, run_id, st.TRAINING)
    if run is None:
        return "skipped"
    spec = specs.from_dict(run["spec"])
    started = time.monotonic()
    window = training_window(state, spec, run)
    frames = [_load_batch(cloud, b) for b in window]
    newest_train, holdout = training.split_newest(frames[-1], spec)
    train_df = pd.concat(frames[:-1] + [newest_train], ignore_index=True)
    search = None
    params = dict(spec.model_params)
    if spec.search is not None:
        tasks = max(tasks, 1)
        mine = f"reports/{run_id}/search/task-{task}.json"
        if cloud.read_json(mine) is None:
            scored = [{"candidate": i, **training.cross_validate(train_df, spec, candidate)}
                      for i, candidate in enumerate(training.candidates(spec)) if i % tasks == task]
            cloud.write_json_once(mine, {"run_id": run_id, "task": task, "tasks": tasks, "results": scored})
            log.info("search candidates scored", run_id=run_id, task=task, candidates=len(scored))
        if not state.search_task_done(run_id, task, tasks):
            return "searched"
        parts = [cloud.read_json(f"reports/{run_id}/search/task-{i}.json") or {} for i in range(tasks)]
        results = sorted((r for part in parts for r in part.get("results", [])), key=lambda r: r["candidate"])
        best = max(results, key=lambda r: (r["score"], -r["candidate"]))
        params = best["params"]
        search = {"scorer": best["scorer"], "folds": spec.search.folds, "tasks": tasks, "best": best["candidate"],
                  "candidates": [{k: r[k] for k in ("candidate", "params", "score", "std")} for r in results]}
    elif task:
        return "skipped"    # without a search, task 0 trains alone
    if search is None:      # the registry records a cross-validated score for every version
        cv = training.cross_validate(train_df, spec, params)
    else:
        cv = next(r for r in results if r["candidate"] == search["best"])
    metrics = {"cv": {"metric": spec.primary_metric, "scorer": cv["scorer"], "score": cv["score"],
                      "std": cv["std"], "folds": len(cv["folds"])}}
    fit_started = time.monotonic()
    model = training.fit(train_df, spec, params)
    fit_seconds = time.monotonic() - fit_started
    blob = artifacts.dumps(model)
    try:
        artifacts.check(blob)   # the loaders would refuse it: say so now, not at the evaluator
    except artifacts.ArtifactError as exc:
        raise StepFailed(f"the trained {spec.estimator} model cannot be served: {exc} (model.params "
                         f"{params} give a model outside the allow-list)") from exc
    prof = drift.profile(train_df, spec, seed=spec.training_seed)
    import sklearn
    import skops

    # Artifacts first, then the record: a crash at any point leaves no version or a whole one, and a retry
    # converges on the same number (reserved for this run) and the same files.
    version = state.reserve_version(spec.name, run_id)
    blob = _write_or_adopt(cloud, artifact_object(spec.name, version), blob)
    artifacts.check(blob)   # adopted bytes too
    _write_or_adopt(cloud, f"models/{spec.name}/{version}/profile.json",
                    orjson.dumps(prof, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str),
                    "application/json")
    digest = artifacts.sha256(blob)

    def record(version: int) -> dict[str, Any]:
        return {
            "artifact": f"gs://{cloud.settings.bucket}/{artifact_object(spec.name, version)}",
            "sha256": digest, "estimator": spec.estimator, "params": params, "search": search, "metrics": metrics,
            "spec": spec.raw, "spec_sha256": spec.sha256, "task": spec.task,
            "features": list(spec.features), "target": spec.target,
            "training_window": [{k: b[k] for k in ("object", "generation", "sha256", "rows")} for b in window],
            "train_rows": int(len(train_df)), "holdout_rows": int(len(holdout)),
            "code_version": cloud.settings.code_version,
            "libraries": {"scikit-learn": sklearn.__version__, "skops": skops.__version__, "pandas": pd.__version__,
                          "numpy": np.__version__},
            "fit_seconds": round(fit_seconds, 3), "seconds": round(time.monotonic() - started, 3),
        }

    state.register_version(spec.name, run_id, record)
    event = outbox.Event("model-trained", envelope("model-trained", run_id=run_id, dataset=spec.name,
                                                   version=version))
    if state.transition(run_id, (st.TRAINING,), st.TRAINED, events=(event,), challenger_version=version):
        outbox.publish(cloud, state, [event])
    log.info("challenger trained", run_id=run_id, version=version, train_rows=len(train_df),
             seconds=round(fit_seconds, 2), params=params)
    return "trained"


def artifact_object(dataset: str, version: int) -> str:
    """Where a version's model lives; the only object any loader reads for it."""
    return f"models/{dataset}/{int(version)}/model.skops"


def _write_or_adopt(cloud: Cloud, name: str, data: bytes, content_type: str = "application/octet-stream") -> bytes:
    """Write an artifact of the run's reserved version once; if an earlier attempt of this run wrote it (and
    crashed before registering), keep those bytes: skops files are not byte-for-byte reproducible, and only
    this run's trainer may write under its reserved version."""
    try:
        cloud.write_once(name, data, content_type)
        return data
    except FileExistsError:
        log.info("artifact written by an earlier attempt; adopting it", object=name)
        return cloud.read_bytes(name)


def load_model(cloud: Cloud, state: st.State, dataset: str, version: int) -> tuple[Any, dict[str, Any]]:
    """A registered model, read only from ``models/<dataset>/<version>/model.skops``, hash-checked against
    its registry record and every node allow-listed before it is deserialised (artifacts.loads)."""
    record = state.get_version(dataset, version)
    if record is None:
        raise StepFailed(f"model {dataset} v{version} is not registered")
    name = artifact_object(dataset, version)
    if record.get("artifact") != f"gs://{cloud.settings.bucket}/{name}":
        raise artifacts.ArtifactError(f"the registry record of {dataset} v{version} names the artifact "
                                      f"{record.get('artifact')!r}; Tollgate loads a version only from "
                                      f"gs://{cloud.settings.bucket}/{name}")
    return artifacts.loads(cloud.read_bytes(name), record["sha256"]), record


def evaluate(cloud: Cloud, state: st.State, run_id: str) -> str:
    from tollgate import evaluation, training

    run = _open(cloud, state, run_id, st.EVALUATING)
    if run is None:
        return "skipped"
    spec = specs.from_dict(run["spec"])
    newest = _load_batch(cloud, run["curated"])
    _, holdout = training.split_newest(newest, spec)
    y = training.target(holdout, spec)
    features = training.features_frame(holdout, spec)
    challenger_version = int(run["challenger_version"])
    challenger, _ = load_model(cloud, state, spec.name, challenger_version)
    champion_version = state.get_dataset(spec.name).get("champion_version")
    scored = evaluation.score(challenger, features, spec.task)
    champion_scored = None
    if champion_version is not None:
        champion, _ = load_model(cloud, state, spec.name, int(champion_version))
        champion_scored = evaluation.score(champion, features, spec.task)
    result = evaluation.compare(holdout, y, scored, champion_scored, spec)
    result["challenger"]["version"] = challenger_version
    if result["champion"] is not None:
        result["champion"]["version"] = int(champion_version)
    attempt = int(run.get("reevaluations", 0))
    name = f"reports/{run_id}/evaluation" + (f"-{attempt}" if attempt else "")
    report = {"run_id": run_id, "dataset": spec.name, "data": run["curated"], **result}
    cloud.write_json_once(f"{name}.json", report)
    cloud.write_once(f"{name}.html", reports.evaluation_html(report, y, scored, champion_scored).encode(),
                     "text/html; charset=utf-8")
    event = outbox.Event("model-evaluated", envelope("model-evaluated", run_id=run_id, dataset=spec.name))
    if state.transition(run_id, (st.EVALUATING,), st.EVALUATED, events=(event,), evaluation=result,
                        evaluated_against=champion_version):
        outbox.publish(cloud, state, [event])
    log.info("models evaluated", run_id=run_id, challenger=challenger_version, champion=champion_version,
             metric=spec.primary_metric, score=result["challenger"]["metrics"].get(spec.primary_metric))
    return "evaluated"


def mark_failed(state: st.State, run_id: str, stage: str, message: str, **detail: Any) -> bool:
    """A step gave up: the run ends as failed, with the step and a message a person can act on."""
    return state.transition(run_id, (st.VALIDATING, st.TRAINING, st.EVALUATING), st.FAILED,
                            error={"stage": stage, "message": message[:2000], **detail})


class Interrupted(Exception):
    """Cloud Run sent SIGTERM (the task's timeout, or the execution was cancelled)."""


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted("the task was stopped by SIGTERM (its timeout passed, or the execution was cancelled)")


def job_main(step: str) -> None:
    """``__main__`` of a job: read the environment, run one step, exit non-zero on failure.

    ``TOLLGATE_MAX_ATTEMPTS`` (the job's ``max_retries`` + 1, from topology.yaml in both worlds) says which
    attempt is the last: only that one marks the run failed after a temporary error; a permanent error
    marks it failed at once. SIGTERM is an error like any other."""
    import signal
    import sys
    import traceback

    from tollgate.settings import Settings

    signal.signal(signal.SIGTERM, _interrupt)
    run_id = os.environ.get("RUN_ID", "")
    attempt = int(os.environ.get("CLOUD_RUN_TASK_ATTEMPT", "0"))
    attempts = int(os.environ.get("TOLLGATE_MAX_ATTEMPTS", "1"))
    try:
        if not run_id:
            raise StepFailed("RUN_ID is not set; jobs are started by the pipeline with RUN_ID in their env")
        cloud = Cloud(Settings.from_env())
        state = st.State(cloud.firestore)
        if step == "train":
            outcome = train(cloud, state, run_id, task=int(os.environ.get("CLOUD_RUN_TASK_INDEX", "0")),
                            tasks=int(os.environ.get("CLOUD_RUN_TASK_COUNT", "1")))
        else:
            outcome = {"validate": validate, "evaluate": evaluate}[step](cloud, state, run_id)
        log.info(f"{step} finished", run_id=run_id, outcome=outcome)
    except BaseException as exc:   # noqa: BLE001 -- a job's last word, whatever ended it
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise
        permanent = isinstance(exc, PERMANENT)
        last = attempt + 1 >= attempts
        log.error(f"{step} failed: {type(exc).__name__}: {exc}", run_id=run_id, attempt=attempt + 1,
                  attempts=attempts, permanent=permanent, stack=traceback.format_exc())
        if run_id and (permanent or last):
            try:
                execution = os.environ.get("CLOUD_RUN_EXECUTION")
                mark_failed(st.State(Cloud(Settings.from_env()).firestore), run_id, step,
                            f"{type(exc).__name__}: {exc}" if not permanent else str(exc),
                            attempt=attempt + 1, attempts=attempts, **({"execution": execution} if execution else {}))
            except Exception as inner:  # the original error is what matters; say both
                log.error(f"could not mark the run failed: {inner}", run_id=run_id)
        sys.exit(1)
