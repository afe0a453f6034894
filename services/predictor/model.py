"""The model a revision serves: loaded once, in the background, hash-checked and allow-listed; and what is built
around it (the request checker, the prepared inference path, the micro-batcher, the prediction log, the
OpenAPI document). Until it is loaded, every route that needs it answers 503 (``Holder.ready``)."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import orjson

from services.predictor import openapi
from services.predictor.batching import MicroBatcher
from services.predictor.config import PredictorConfig
from services.predictor.metrics import Metrics
from services.predictor.predlog import PredictionLog, pubsub_publisher
from tollgate import inputs, log
from tollgate.jsonable import iso


class Loaded:
    """What a loaded revision serves; built once by the loading thread."""

    def __init__(self, model: Any, record: dict[str, Any], config: PredictorConfig, metrics: Metrics) -> None:
        from tollgate import prepared
        from tollgate import spec as specs

        self.config, self.record, self.model = config, record, model
        self._explainer: Any = None   # built at the first explanation (tollgate.explain), or why it cannot be
        self._explainer_lock = threading.Lock()
        self.dataset, self.version = config.dataset, config.model_version
        self.spec = specs.from_dict(record["spec"])
        self.checker = inputs.Checker(self.spec, config.max_instances)
        self.prepared = prepared.prepare(model, self.spec)
        self.classes = [str(c) for c in getattr(model, "classes_", [])] or None
        self.batcher = MicroBatcher(self.prepared.predict, on_batch=metrics.batch, max_rows=config.batch_max_rows,
                                    max_wait=config.batch_max_wait_ms / 1000)
        self.predlog = PredictionLog(publisher(config), self.dataset, self.version,
                                     (self.spec.input_numeric, self.spec.feature_lists.categorical),
                                     on_published=metrics.log_published.inc,
                                     on_lost=lambda n, why: metrics.log_lost.labels(why).inc(n))
        self.openapi = orjson.dumps(openapi.document(self.spec, self.version, config.max_instances))
        # warm the path once so the first request pays for nothing
        self.batcher.arrive()
        self.batcher.submit(prepared.sample(self.spec, model, rows=1))

    def explainer(self) -> Any:
        """The model's explainer, built once at the first explanation; raises ``Unexplainable`` (always the
        same) for a family without an exact method."""
        from tollgate import explain

        with self._explainer_lock:
            if self._explainer is None:
                try:   # its inputs are the prepared path's: only once that path was checked against the model
                    if self.prepared.path != "prepared":
                        raise explain.Unexplainable(f"the model is served by its own predict ({self.prepared.reason})")
                    self._explainer = explain.Explainer(self.model, self.spec)
                except explain.Unexplainable as exc:
                    self._explainer = exc
        if isinstance(self._explainer, explain.Unexplainable):
            raise self._explainer
        return self._explainer

    def metadata(self) -> dict[str, Any]:
        r, spec = self.record, self.spec
        return {"dataset": self.dataset, "model_version": self.version, "task": spec.task, "target": spec.target,
                "estimator": r.get("estimator"), "metrics": r.get("metrics"), "trained_at": iso(r.get("registered_at")),
                "sha256": r.get("sha256"), "code_version": r.get("code_version"),
                "features": [{"name": n, "type": "number" if n in spec.feature_lists.numeric else
                              "datetime" if n in spec.feature_lists.datetime else "string",
                              "nullable": spec.columns[n].nullable, "min": spec.columns[n].min,
                              "max": spec.columns[n].max, "allowed": spec.columns[n].allowed}
                             for n in spec.features],
                "classes": self.classes, "inference_path": self.prepared.path,
                "inference_check": self.prepared.reason, "max_instances": self.config.max_instances}

    def close(self) -> None:
        self.predlog.close()


class Holder:
    """The revision's model: None until loaded (``error`` says why it never will be)."""

    def __init__(self, config: PredictorConfig, metrics: Metrics) -> None:
        self.config, self.metrics = config, metrics
        self.loaded: Loaded | None = None
        self.error: str | None = None
        self.started = time.monotonic()

    def not_ready(self) -> str:
        what = f"model {self.config.dataset} v{self.config.model_version}"
        return f"{what} failed to load: {self.error}" if self.error else f"{what} is loading; retry shortly"

    def load(self) -> None:
        """Load, check and prepare the model (in a thread, or before the app is returned: ``background=False``)."""
        config = self.config
        try:
            model, record = load(config)
            self.loaded = Loaded(model, record, config, self.metrics)
        except Exception as exc:   # never ready; every probe and request says why
            self.error = f"{type(exc).__name__}: {exc}"
            log.error(f"model {config.dataset} v{config.model_version} could not be loaded; this revision will not "
                      f"turn ready: {self.error}", dataset=config.dataset, model_version=config.model_version)
            if config.exit_on_load_failure:
                # Under gunicorn: a model that failed its hash check or could not be read will not load on
                # a retry either. Exit code 3 is gunicorn's "worker failed to boot": the master stops, and
                # the platform fails the revision now instead of after its startup probe gives up.
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(3)
            return
        seconds = time.monotonic() - self.started
        self.metrics.model.labels(config.dataset, str(config.model_version), self.loaded.prepared.path).set(1)
        self.metrics.ready.set(1)
        self.metrics.load_seconds.set(seconds)
        log.info("model loaded", dataset=config.dataset, model_version=config.model_version,
                 inference_path=self.loaded.prepared.path, inference_check=self.loaded.prepared.reason,
                 seconds=round(seconds, 3))

    def start(self, background: bool) -> None:
        if background:
            threading.Thread(target=self.load, name="model-loader", daemon=True).start()
        else:
            self.load()


def publisher(config: PredictorConfig) -> Any:
    """What makes the prediction log's Pub/Sub publisher (built in the log's own thread), or None when off."""
    if not config.prediction_log:
        log.info("prediction log off (TOLLGATE_PREDICTION_LOG)")
        return None
    if not config.project:
        log.warning("prediction log off: GOOGLE_CLOUD_PROJECT is not set")
        return None
    return lambda: pubsub_publisher(config.project, config.predictions_topic, timeout=config.prediction_log_timeout)


def load(config: PredictorConfig) -> tuple[Any, dict[str, Any]]:
    """The pinned model and its registry record, hash-checked and allow-listed before it is deserialised."""
    if config.storage_uri:   # Vertex AI copies the model directory; so may a test or the benchmark
        from tollgate import artifacts

        # Whoever can write the directory can rewrite record.json too: the hash to trust comes with the
        # deployment (the model's container env on Vertex AI), copied from the registry record.
        if len(config.model_sha256) != 64:
            raise artifacts.ArtifactError(
                "TOLLGATE_MODEL_SHA256 must give the model's sha256 (from `tollgate model show DATASET VERSION`) "
                "when it is loaded from AIP_STORAGE_URI; record.json beside the model is not trusted for it")
        record = orjson.loads(_read(config.storage_uri, "record.json"))
        if record.get("sha256") != config.model_sha256:
            raise artifacts.ArtifactError(f"record.json in {config.storage_uri} gives sha256 {record.get('sha256')}, "
                                          f"the deployment {config.model_sha256}: refusing both")
        return artifacts.loads(_read(config.storage_uri, "model.skops"), config.model_sha256,
                               artifacts.record_spec(record)), record
    from tollgate import runtime
    from tollgate.jobs.common import load_model

    return load_model(runtime.cloud(), runtime.state(), config.dataset, config.model_version)


def _read(uri: str, name: str) -> bytes:
    if uri.startswith("gs://"):
        from google.cloud import storage

        bucket, _, prefix = uri.removeprefix("gs://").partition("/")
        return storage.Client().bucket(bucket).blob(f"{prefix.rstrip('/')}/{name}".lstrip("/")).download_as_bytes()
    with open(os.path.join(uri, name), "rb") as fh:
        return fh.read()
