"""The MLflow mirror: each decided run, each registered version and what serves, in an MLflow tracking server.

Tollgate's own records (Firestore, the bucket) stay the truth; MLflow gets a copy a team can browse, compare and
query with the tools it already has, and that can be rebuilt from those records at any time:

- each decided run is an MLflow run in the experiment ``tollgate/<dataset>``: its parameters (estimator and
  hyperparameters, window, seeds, policy), metrics (held-out scores of challenger and champion, the gain and its
  interval, cross-validation, each slice, row counts), the validation and evaluation reports and the model as
  artifacts, and tags (run id, dataset, decision, data hashes and generations, code version);
- each registered version is a version of the registered model ``tollgate-<dataset>`` whose source is that
  run's ``model/`` artifacts (the skops file, its bytes checked against the registry's sha256), tagged with
  the Tollgate version and the sha256;
- the aliases ``champion`` and ``canary`` follow the dataset's serving pointers.

Where: a spec's ``tracking.mlflow`` (its ``uri``, or the deployment's ``TOLLGATE_MLFLOW_URI``; a Secret
Manager secret on Google Cloud). When: the ``tracking`` function mirrors on every ``model-decided`` event, which
every change of what serves publishes (tollgate.promotion). MLflow being slow or down never holds up the
pipeline: the sync gives up after one short try, records the dataset as owed in ``mirrors/{dataset}``, and the
reconciler syncs it again on each pass until it succeeds. Every step is idempotent (runs and versions are found
by their ``tollgate.*`` tags before anything is created), so a repeat changes nothing.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable

import orjson

from tollgate import artifacts, egress, log
from tollgate import spec as specs
from tollgate.cloud import Cloud
from tollgate.cloud import state as st
from tollgate.jsonable import iso

URI_ENV = "TOLLGATE_MLFLOW_URI"
ARTIFACT_BUCKETS_ENV = "TOLLGATE_MLFLOW_ARTIFACT_BUCKETS"   # gs:// buckets the mirror may write artifacts to
ALIASES = ("champion", "canary")
# One short try per sync, not MLflow's default of minutes of retries: the reconciler is the retry.
_CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
_KEY = re.compile(r"[^A-Za-z0-9_\-. /]+")   # what MLflow allows in metric and param names


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a dataset is mirrored."""
    uri: str
    experiment: str
    registered_model: str


def target(spec: specs.DatasetSpec, env: dict[str, str] | None = None) -> Target | None:
    """The dataset's MLflow, or None when it is not mirrored (no URI in the spec nor the deployment, or
    ``enabled: false``)."""
    config = spec.tracking.mlflow
    uri = config.uri or (os.environ if env is None else env).get(URI_ENV, "").strip()
    if not config.enabled or not uri:
        return None
    return Target(uri=uri.rstrip("/"), experiment=config.experiment or f"tollgate/{spec.name}",
                  registered_model=config.registered_model or f"tollgate-{spec.name}")


def sync(cloud: Cloud, state: st.State, dataset: str, run_ids: Iterable[str] = ()) -> dict[str, Any]:
    """Mirror the runs and the dataset's aliases. Never raises: a failure is recorded as owed (the reconciler
    retries) and returned as ``{"status": "pending", "error": ...}``; otherwise "synced" or "off"."""
    runs = [r for r in run_ids if r]
    try:
        where = target(specs.loads(cloud.read_bytes(specs.object_name(dataset)).decode()))
    except Exception as exc:   # no spec (deleted), or one this code cannot read: nothing to mirror to
        log.warning(f"mirror of {dataset} skipped: its spec cannot be read ({type(exc).__name__})", dataset=dataset)
        return {"dataset": dataset, "status": "off"}
    if where is None:
        return {"dataset": dataset, "status": "off"}
    try:
        mirror = Mirror(where, cloud, state, dataset)
        mirrored = {run_id: mirror.run(run_id) for run_id in runs}
        aliases = mirror.aliases()
    except Exception as exc:
        error = _error(exc)
        state.mirror_pending(dataset, runs, error)
        log.warning(f"MLflow mirror of {dataset} failed ({error}); the reconciler retries it",
                    dataset=dataset, runs=runs)
        return {"dataset": dataset, "status": "pending", "error": error}
    state.mirror_synced(dataset, runs)
    log.info("MLflow mirror synced", dataset=dataset, runs=mirrored, aliases=aliases)
    return {"dataset": dataset, "status": "synced", "runs": mirrored, "aliases": aliases}


def retry_pending(cloud: Cloud, state: st.State) -> list[dict[str, Any]]:
    """Sync every dataset whose mirror is owed (the reconciler's pass)."""
    return [sync(cloud, state, owed["dataset"], owed.get("runs") or []) for owed in state.pending_mirrors()]


def _error(exc: Exception) -> str:
    """What a failure is recorded as: its type and MLflow's error code, never its text (which names the URL,
    and a deployment's URL may carry credentials)."""
    code = getattr(exc, "error_code", None)
    return type(exc).__name__ + (f" ({code})" if code else "")


def _key(*parts: Any) -> str:
    return ".".join(_KEY.sub("_", str(p)).strip("_") or "_" for p in parts)[:250]


def _millis(value: Any) -> int | None:
    value = iso(value)
    if not isinstance(value, str):
        return None
    import datetime as dt

    return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class Mirror:
    """One dataset's MLflow experiment and registered model, through MLflow's own client."""

    def __init__(self, where: Target, cloud: Cloud, state: st.State, dataset: str) -> None:
        for name, value in _CLIENT_ENV.items():
            os.environ.setdefault(name, value)
        from mlflow.tracking import MlflowClient  # here: only deployments that mirror pay for importing it

        egress.admit(where.uri, "the MLflow tracking server")   # every connection to it is checked again
        self.where, self.cloud, self.state, self.dataset = where, cloud, state, dataset
        self.client = MlflowClient(tracking_uri=where.uri, registry_uri=where.uri)
        self._experiment_id: str | None = None

    # -- runs ----------------------------------------------------------------------------------
    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.where.experiment)
            if found is None:
                try:
                    self._experiment_id = self.client.create_experiment(
                        self.where.experiment, tags={"tollgate.dataset": self.dataset})
                except Exception:   # created meanwhile by another sync
                    found = self.client.get_experiment_by_name(self.where.experiment)
                    if found is None:
                        raise
            self._experiment_id = self._experiment_id or found.experiment_id
        return self._experiment_id

    def find_run(self, run_id: str) -> Any:
        """The MLflow run of a Tollgate run. Two syncs racing (the tracking function and the reconciler) may
        each create one: both then keep the same one (a whole mirror first, then the first by MLflow id) and
        delete the other."""
        found = sorted(self.client.search_runs([self.experiment_id],
                                               filter_string=f"tags.`tollgate.run_id` = '{run_id}'"),
                       key=lambda r: (r.data.tags.get("tollgate.mirrored") != "1", r.info.run_id))
        for extra in found[1:]:
            self.client.delete_run(extra.info.run_id)
        return found[0] if found else None

    def run(self, run_id: str) -> str | None:
        """The MLflow run id of a Tollgate run, mirrored (whole, once; its decision tags again on every call, since
        a review changes them). None for a run Tollgate does not know or that was never decided."""
        from mlflow.entities import Metric, Param, RunTag

        record = self.state.get_run(run_id)
        if record is None or not record.get("decision"):
            return None
        found = self.find_run(run_id)
        tags = self._decision_tags(record)
        if found is not None and found.data.tags.get("tollgate.mirrored") == "1":
            self.client.log_batch(found.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            return found.info.run_id
        version = self._version_record(record)
        if found is None:
            self.client.create_run(self.experiment_id, run_name=run_id, start_time=_millis(record.get("created_at")),
                                   tags={"tollgate.run_id": run_id, "tollgate.dataset": self.dataset})
            found = self.find_run(run_id)
        mlflow_run = found.info.run_id
        at = _millis(record.get("decided_at")) or 0
        metrics = [Metric(k, v, at, 0) for k, v in self._metrics(record, version).items()]
        params = [Param(k, v) for k, v in self._params(record, version).items()]
        for i in range(0, len(metrics), 1000):   # MLflow's limits per batch: 1,000 metrics, 100 params
            self.client.log_batch(mlflow_run, metrics=metrics[i:i + 1000])
        for i in range(0, len(params), 100):
            self.client.log_batch(mlflow_run, params=params[i:i + 100])
        self._artifacts(mlflow_run, record, version)
        self.client.log_batch(mlflow_run, tags=[RunTag(k, v) for k, v in {
            **self._lineage_tags(record, version), **tags}.items()])
        self.client.set_terminated(mlflow_run, "FINISHED", end_time=at or None)
        if version is not None:
            self.version(version["version"], mlflow_run)
        self.client.set_tag(mlflow_run, "tollgate.mirrored", "1")   # last: a crash before it mirrors it again
        return mlflow_run

    def _version_record(self, record: dict[str, Any]) -> dict[str, Any] | None:
        version = record.get("challenger_version")
        return self.state.get_version(self.dataset, int(version)) if version is not None else None

    @staticmethod
    def _decision_tags(record: dict[str, Any]) -> dict[str, str]:
        return {k: str(v)[:5000] for k, v in {
            "tollgate.decision": record.get("decision"), "tollgate.decided_by": record.get("decided_by"),
            "tollgate.reason": record.get("reason"), "mlflow.note.content": record.get("reason"),
        }.items() if v is not None}

    def _lineage_tags(self, record: dict[str, Any], version: dict[str, Any] | None) -> dict[str, str]:
        curated, source = record.get("curated") or {}, record.get("source") or {}
        window = (version or {}).get("training_window") or {}
        tags = {
            "tollgate.data.sha256": curated.get("sha256"), "tollgate.data.generation": curated.get("generation"),
            "tollgate.data.object": curated.get("object"), "tollgate.source.object": source.get("object"),
            "tollgate.source.generation": source.get("generation"), "tollgate.spec_sha256": record.get("spec_sha256"),
            "tollgate.code_version": (version or {}).get("code_version"),
            "tollgate.version": (version or {}).get("version"),
            "tollgate.champion_version": record.get("champion_version"),
            "tollgate.window.sha256": window.get("sha256"), "tollgate.window.batches": window.get("batches"),
            "tollgate.window.manifest": window.get("manifest"),
        }
        return {k: str(v) for k, v in tags.items() if v is not None}

    @staticmethod
    def _params(record: dict[str, Any], version: dict[str, Any] | None) -> dict[str, str]:
        spec = record.get("spec") or {}
        evaluation, training, policy = (spec.get(k) or {} for k in ("evaluation", "training", "policy"))
        params: dict[str, Any] = {
            "task": spec.get("task"), "target": spec.get("target"),
            "estimator": (version or {}).get("estimator") or (spec.get("model") or {}).get("estimator"),
            "primary_metric": (record.get("evaluation") or {}).get("metric"),
            "evaluation.holdout_fraction": evaluation.get("holdout_fraction"),
            "evaluation.bootstrap_resamples": evaluation.get("bootstrap_resamples"),
            "evaluation.seed": evaluation.get("seed"), "training.window": training.get("window"),
            "training.max_rows": training.get("max_rows"), "training.seed": training.get("seed"),
            "policy.threshold": policy.get("threshold"), "policy.margin": policy.get("margin"),
            "policy.confidence": policy.get("confidence"),
        }
        for name, value in ((version or {}).get("params") or {}).items():
            params[_key("model", name)] = value
        return {k: (v if isinstance(v, str) else orjson.dumps(v).decode())[:6000]
                for k, v in params.items() if v is not None}

    @staticmethod
    def _metrics(record: dict[str, Any], version: dict[str, Any] | None) -> dict[str, float]:
        evaluation = record.get("evaluation") or {}
        validation = record.get("validation") or {}
        metrics: dict[str, Any] = {
            "holdout.rows": evaluation.get("holdout_rows"), "validation.rows_in": validation.get("rows_in"),
            "validation.rows_out": validation.get("rows_out"), "train.rows": (version or {}).get("train_rows"),
        }
        for who in ("challenger", "champion"):
            for name, value in ((evaluation.get(who) or {}).get("metrics") or {}).items():
                metrics[_key("holdout" if who == "challenger" else "champion.holdout", name)] = value
        difference = evaluation.get("difference") or {}
        metrics.update({"gain": difference.get("difference"), "gain.low": difference.get("low"),
                        "gain.high": difference.get("high")})
        cv = ((version or {}).get("metrics") or {}).get("cv") or {}
        if cv.get("metric"):
            metrics.update({_key("cv", cv["metric"]): cv.get("score"), _key("cv", cv["metric"], "std"): cv.get("std")})
        for part in evaluation.get("slices") or []:
            metrics[_key("slice", part.get("column"), part.get("slice"))] = part.get("challenger")
        for feature in (evaluation.get("importance") or {}).get("features") or []:
            own = feature.get("challenger") or {}
            metrics[_key("importance", feature.get("feature"))] = own.get("mean")
            metrics[_key("importance", feature.get("feature"), "std")] = own.get("std")
        return {k: n for k, v in metrics.items() if (n := _number(v)) is not None}

    def artifact_location(self, mlflow_run: str) -> str:
        """Where MLflow keeps the run's artifacts, if Tollgate may write there: through the tracking server's
        proxied artifact API (``mlflow-artifacts:``, or http(s) on the server's own host), or a bucket the
        deployment allow-lists (``TOLLGATE_MLFLOW_ARTIFACT_BUCKETS``). A server answering ``file:///…`` would
        have the function write its own disk; ``gs://…`` would be written with the function's credentials."""
        from urllib.parse import urlsplit

        location = self.client.get_run(mlflow_run).info.artifact_uri or ""
        parts = urlsplit(location)
        buckets = {b.strip() for b in os.environ.get(ARTIFACT_BUCKETS_ENV, "").split(",") if b.strip()}
        if parts.scheme == "mlflow-artifacts" and not parts.netloc:
            return location
        if parts.scheme in ("http", "https") and parts.hostname == urlsplit(self.where.uri).hostname:
            return location
        if parts.scheme == "gs" and parts.netloc in buckets:
            return location
        raise egress.EgressRefused(f"the MLflow server keeps this run's artifacts at a {parts.scheme or 'plain'}:"
                                   " location it names; Tollgate uploads only through its proxied artifact API "
                                   f"(mlflow server --serve-artifacts) or to buckets in {ARTIFACT_BUCKETS_ENV}")

    def _artifacts(self, mlflow_run: str, record: dict[str, Any], version: dict[str, Any] | None) -> None:
        """The run's reports and, for a trained run, its model (checked against the registry) with its record."""
        self.artifact_location(mlflow_run)
        run_id = record["run_id"]
        with tempfile.TemporaryDirectory(prefix="tollgate-mirror-") as tmp:
            reports = Path(tmp, "reports")
            reports.mkdir()
            for name in self.cloud.list_names(f"reports/{run_id}/"):
                leaf = name.rsplit("/", 1)[-1]
                if name.count("/") == 2 and leaf.endswith((".html", ".json")):
                    (reports / leaf).write_bytes(self.cloud.read_bytes(name))
            if any(reports.iterdir()):
                self.client.log_artifacts(mlflow_run, str(reports), "reports")
            if version is not None:
                model = Path(tmp, "model")
                model.mkdir()
                (model / "model.skops").write_bytes(artifacts.read_verified(self.cloud, version))
                (model / "record.json").write_bytes(orjson.dumps(version, default=iso, option=orjson.OPT_INDENT_2))
                self.client.log_artifacts(mlflow_run, str(model), "model")

    # -- the registry ----------------------------------------------------------------------------
    def find_version(self, version: int) -> Any:
        """The MLflow version of a Tollgate version; of two made by racing syncs, the first is kept."""
        found = sorted(self.client.search_model_versions(
            f"name = '{self.where.registered_model}' and tags.`tollgate.version` = '{int(version)}'"),
            key=lambda v: int(v.version))
        for extra in found[1:]:
            self.client.delete_model_version(self.where.registered_model, extra.version)
        return found[0] if found else None

    def version(self, version: int, mlflow_run: str | None = None) -> str:
        """The MLflow version number of a Tollgate version, registered from its run's ``model/`` artifacts (the
        run is mirrored first when it is not yet)."""
        found = self.find_version(version)
        if found is not None:
            return str(found.version)
        record = self.state.get_version(self.dataset, version)
        if record is None:
            raise LookupError(f"{self.dataset} v{version} is not registered in Tollgate")
        if mlflow_run is None:
            mirrored = self.run(record["run_id"])
            if mirrored is None:
                raise LookupError(f"the run {record['run_id']} of {self.dataset} v{version} was never decided")
            found = self.find_version(version)   # mirroring the run registered it
            if found is not None:
                return str(found.version)
            mlflow_run = mirrored
        try:
            self.client.create_registered_model(self.where.registered_model, tags={"tollgate.dataset": self.dataset},
                                                description=f"Tollgate dataset {self.dataset}: every registered "
                                                            "version; aliases follow what serves")
        except Exception as exc:
            if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{self.client.get_run(mlflow_run).info.artifact_uri}/model"
        self.client.create_model_version(
            self.where.registered_model, source=source, run_id=mlflow_run,
            tags={"tollgate.version": str(version), "tollgate.run_id": record["run_id"], "sha256": record["sha256"],
                  "tollgate.code_version": str(record.get("code_version")),
                  "tollgate.estimator": str(record.get("estimator"))},
            description=f"Tollgate {self.dataset} v{version} ({record.get('estimator')}), sha256 {record['sha256']}")
        return str(self.find_version(version).version)

    def aliases(self) -> dict[str, str | None]:
        """Point ``champion`` and ``canary`` at the MLflow versions of what serves; an alias with nothing to
        name is removed."""
        from tollgate import serving

        ds = self.state.get_dataset(self.dataset)
        serving_now = serving.serving_summary(ds)
        pointers = {"champion": serving_now["version"], "canary": (serving_now["canary"] or {}).get("version")}
        for name, number in sorted((ds.get("aliases") or {}).items()):   # people's own aliases, mirrored too
            if name not in pointers:
                pointers[name] = number
        model = self.where.registered_model
        current = self._current_aliases()
        moved: dict[str, str | None] = {}
        for alias in [*ALIASES, *(a for a in pointers if a not in ALIASES)]:
            wanted = pointers.get(alias)
            if wanted is None:
                if alias in current:
                    self.client.delete_registered_model_alias(model, alias)
                moved[alias] = None
                continue
            number = self.version(int(wanted))
            if current.get(alias) != number:
                self.client.set_registered_model_alias(model, alias, number)
            moved[alias] = number
        return moved

    def _current_aliases(self) -> dict[str, str]:
        try:
            return {k: str(v) for k, v in self.client.get_registered_model(self.where.registered_model).aliases.items()}
        except Exception as exc:
            if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
