"""Job `trainer`: fit the challenger of a run on its training window and register it (RUN_ID).

With a hyperparameter search in the spec, the execution's tasks (CLOUD_RUN_TASK_INDEX / _COUNT) each score their
share of the candidates by cross-validation; the task that completes the set fits the best one. Artifacts are
written before the version record, under a version number reserved for the run: a crash at any point leaves
no version or a whole one, and a retry converges.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import orjson
import pandas as pd

from tollgate import artifacts, drift, events, explain, lifecycle, log, outbox
from tollgate import spec as specs
from tollgate.artifacts import artifact_object
from tollgate.cloud import Cloud
from tollgate.cloud.state import State
from tollgate.errors import StepFailed
from tollgate.jobs.common import ForeignArtifact, load_batch, open_run, write_or_adopt

if TYPE_CHECKING:
    from tollgate.warehouse.engines import Warehouse


def training_window(state: State, spec: specs.DatasetSpec, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Curated batches the run trains on, oldest first, ending with the run's own batch. Batches a
    reviewer rejected stay out of every later window."""
    mine = record["curated"]["sha256"]
    batches = [b for b in state.list_batches(spec.name) if not b.get("excluded") or b["sha256"] == mine]
    cut = next((i for i, b in enumerate(batches) if b["sha256"] == mine), None)
    if cut is None:
        raise StepFailed(f"the run's batch {mine} is not registered for dataset {spec.name}")
    window = batches[: cut + 1]
    if spec.training.window == "last_n" and spec.training.last_n > 0:
        window = window[-spec.training.last_n:]
    elif spec.training.window == "days" and "time_max" in window[-1]:
        since = window[-1]["time_max"] - spec.training.days * 86400
        window = [b for b in window[:-1] if b.get("time_max", since) >= since] + window[-1:]
    return window


def training_rows(load: Callable[[dict[str, Any]], pd.DataFrame], spec: specs.DatasetSpec,
                  window: list[dict[str, Any]], warehouse: Warehouse | None = None,
                  ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(training rows, held-out rows, how they were sampled): the window's batches but the newest one's held-out
    rows; when they number more than ``training.max_rows``, a seeded sample of about that many.

    The batches before the newest come from one warehouse query (tollgate.warehouse.curated: the engine samples
    while it scans, so memory holds the sample only); batches curated before the warehouse's columns are read
    batch by batch as ``load`` reads each, sampled as they come (memory: the sample and one batch). The newest
    batch is read here: its held-out rows are the evaluator's."""
    from tollgate import training

    newest = load(window[-1])
    newest_train, holdout = training.split_newest(newest, spec)
    available = sum(int(b.get("rows") or 0) for b in window[:-1]) + len(newest_train)
    fraction = min(1.0, spec.training.max_rows / available) if available else 1.0
    older = window[:-1]
    parts = []
    queried = warehouse is not None and bool(older) and all(b.get("object_sha256") for b in older)
    if queried:
        rows = warehouse.curated_window(spec.name, older, spec.training.seed, fraction).to_pandas()  # type: ignore
        parts.append(_like(rows, newest))
        del rows
    else:
        for batch in older:
            frame = load(batch)
            parts.append(frame.loc[training.sample_mask(len(frame), fraction, spec.training.seed, batch["sha256"])])
            del frame
    parts.append(newest_train.loc[training.sample_mask(len(newest_train), fraction, spec.training.seed,
                                                       window[-1]["sha256"])])
    train = pd.concat(parts, ignore_index=True)
    return train, holdout, {"max_rows": spec.training.max_rows, "rows_available": int(available),
                            "fraction": round(fraction, 6), "sampled": fraction < 1,
                            "read": "warehouse query" if queried else "batch by batch"}


def _like(rows: pd.DataFrame, newest: pd.DataFrame) -> pd.DataFrame:
    """The queried rows with the column types a batch read from its file has (the query's Arrow carries no
    pandas types: nullable integers, say)."""
    for name, dtype in newest.dtypes.items():
        if name in rows.columns and rows[name].dtype != dtype:
            try:
                rows[name] = rows[name].astype(dtype)
            except (TypeError, ValueError):   # a type the spec changed since: keep the query's
                pass
    return rows


def window_manifest(dataset: str, version: int, run_id: str, window: list[dict[str, Any]]) -> bytes:
    """The training window of a version as a JSON object in the bucket (any number of batches; Firestore keeps
    its digest and where it is)."""
    return orjson.dumps({"dataset": dataset, "version": version, "run_id": run_id,
                         "batches": [{k: b[k] for k in ("object", "generation", "sha256", "rows")} for b in window]},
                        option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def run(cloud: Cloud, state: State, run_id: str, task: int = 0, tasks: int = 1) -> str:
    """Train the challenger. With a search in the spec, each of the execution's ``tasks`` scores its
    share of the candidates by cross-validation and writes them to reports/<run>/search/; the task
    that completes the set fits the best candidate and registers it."""
    from tollgate import training

    record = open_run(cloud, state, run_id, lifecycle.TRAINER)
    if record is None:
        return "skipped"
    spec = specs.from_dict(record["spec"])
    started = time.monotonic()
    window = training_window(state, spec, record)
    train_df, holdout, sampling = training_rows(lambda batch: load_batch(cloud, batch), spec, window,
                                                cloud.warehouse)
    plan_memory(spec, train_df)
    search = None
    params = dict(spec.model.params)
    searching = training.tuning(spec, len(train_df))   # the spec's search, or a little tuning of a large window
    if searching.model.search is not None:
        tasks = max(tasks, 1)
        mine = f"reports/{run_id}/search/task-{task}.json"
        if cloud.read_json(mine) is None:
            if searching.model.search.method == "optuna":
                scored = training.optuna_search(train_df, searching, task, tasks)
            else:
                scored = [{"candidate": i, **training.cross_validate(train_df, searching, candidate)}
                          for i, candidate in enumerate(training.candidates(searching)) if i % tasks == task]
            cloud.write_json_once(mine, {"run_id": run_id, "task": task, "tasks": tasks, "results": scored})
            log.info("search candidates scored", run_id=run_id, task=task, candidates=len(scored),
                     method=searching.model.search.method)
        if not state.search_task_done(run_id, task, tasks):
            return "searched"
        parts = [cloud.read_json(f"reports/{run_id}/search/task-{i}.json") or {} for i in range(tasks)]
        results = sorted((r for part in parts for r in part.get("results", [])), key=lambda r: r["candidate"])
        best = max(results, key=lambda r: (r["score"], -r["candidate"]))
        params = best["params"]
        search = {"method": searching.model.search.method, "auto": spec.model.search is None, "scorer": best["scorer"],
                  "folds": searching.model.search.folds, "tasks": tasks, "best": best["candidate"],
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
        raise StepFailed(f"the trained {spec.model.estimator} model cannot be served: {exc} (model.params "
                         f"{params} give a model outside the allow-list)") from exc
    prof = drift.profile(train_df, spec, seed=spec.training.seed)
    # what the model relies on, on its training rows: the monitor's reference for attribution drift
    prof["attributions"] = explain.summarise(model, spec, train_df, spec.monitoring.attribution_rows,
                                             spec.training.seed)
    import sklearn
    import skops

    # Artifacts first, then the record: a crash at any point leaves no version or a whole one, and a retry
    # converges on the same number (reserved for this run) and the same files.
    version = state.reserve_version(spec.name, run_id)
    while True:
        try:
            blob = write_or_adopt(cloud, artifact_object(spec.name, version), blob, run_id)
            artifacts.check(blob)   # adopted bytes too
            write_or_adopt(cloud, f"models/{spec.name}/{version}/profile.json",
                           orjson.dumps(prof, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str),
                           run_id, "application/json")
            manifest_object = artifacts.window_object(spec.name, version)
            manifest = write_or_adopt(cloud, manifest_object, window_manifest(spec.name, version, run_id, window),
                                      run_id, "application/json")
            break
        except ForeignArtifact as exc:   # never adopted: this run's version moves past every taken folder
            taken = _highest_version_folder(cloud, spec.name)
            log.warning(f"{exc}; v{version} is taken, registering past v{taken}", run_id=run_id)
            version = state.reserve_version(spec.name, run_id, after=taken)
    digest = artifacts.sha256(blob)

    def record(version: int) -> dict[str, Any]:
        return {
            "artifact": f"gs://{cloud.settings.bucket}/{artifact_object(spec.name, version)}",
            "sha256": digest, "estimator": spec.model.estimator, "params": params, "search": search, "metrics": metrics,
            "spec": spec.raw, "spec_sha256": spec.sha256, "task": spec.task,
            "features": list(spec.features), "target": spec.target,
            "training_window": {"manifest": f"gs://{cloud.settings.bucket}/{manifest_object}",
                                "sha256": artifacts.sha256(manifest), "batches": len(window),
                                "newest": window[-1]["sha256"]},
            "train_rows": int(len(train_df)), "holdout_rows": int(len(holdout)), "sampling": sampling,
            "code_version": cloud.settings.code_version,
            "libraries": {"scikit-learn": sklearn.__version__, "skops": skops.__version__, "pandas": pd.__version__,
                          "numpy": np.__version__},
            "fit_seconds": round(fit_seconds, 3), "seconds": round(time.monotonic() - started, 3),
        }

    state.register_version(spec.name, run_id, record)
    event = events.step_event({"run_id": run_id, "dataset": spec.name, "challenger_version": version},
                              lifecycle.TRAINED)
    if state.transition(run_id, (lifecycle.TRAINING,), lifecycle.TRAINED, events=(event,), challenger_version=version):
        outbox.publish(cloud, state, [event])
    log.info("challenger trained", run_id=run_id, version=version, train_rows=len(train_df),
             seconds=round(fit_seconds, 2), params=params)
    return "trained"


def _highest_version_folder(cloud: Cloud, dataset: str) -> int:
    """The highest N of the bucket's ``models/<dataset>/N/`` folders (0 without any)."""
    numbers = [int(part) for name in cloud.list_names(f"models/{dataset}/")
               if (part := name.split("/")[2]).isdigit()]
    return max(numbers, default=0)


def plan_memory(spec: specs.DatasetSpec, train_df: pd.DataFrame) -> None:
    """Stop before fitting when the window will not fit in this job's memory (TOLLGATE_MEMORY_LIMIT, the job's
    limit in bytes): a permanent failure that names the columns and the settings to change, instead of being
    killed over the limit, retried and killed again."""
    import os

    from tollgate import capacity

    limit = int(os.environ.get("TOLLGATE_MEMORY_LIMIT") or 0)
    if not limit:
        return
    distinct = {name: int(train_df[name].nunique()) for name in spec.feature_lists.categorical if name in train_df}
    classes = int(train_df[spec.target].nunique()) if spec.task == "classification" else 2
    why = capacity.problem(spec, len(train_df), limit, distinct, classes, resident=_resident())
    if why:
        raise StepFailed(f"the training window will not fit in the trainer's memory: {why}")


def _resident() -> int:
    """This process's resident memory in bytes, once Arrow has handed back what its pool keeps from reading the
    window (otherwise the figure varies by hundreds of MiB from run to run)."""
    import os

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
