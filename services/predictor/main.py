"""Cloud Run service `predictor`: HTTP predictions from the model version pinned in the revision.

    gunicorn --config services/predictor/gunicorn.conf.py "services.predictor.main:create_app()"

Contracts (every response carries the serving version in ``X-Model-Version``):

* Vertex AI custom container: ``AIP_HTTP_PORT``, ``AIP_HEALTH_ROUTE`` (default ``/health``),
  ``AIP_PREDICT_ROUTE`` (default ``/predict``): ``{"instances": [...], "parameters": {...}}`` →
  ``{"predictions": [...], "model_version": N}`` (classification adds ``classes`` and ``probabilities``).
* Open Inference Protocol v2 (REST): ``/v2/health/live|ready``, ``/v2``, ``/v2/models/<dataset>``,
  ``/v2/models/<dataset>/ready``, ``POST /v2/models/<dataset>[/versions/<N>]/infer`` with one named
  input per feature (JSON or the binary tensor extension) → outputs ``predict`` (and ``predict_proba``).
* ``POST /feedback``: ground truth for logged predictions, by request id (and row), for monitoring.
* ``/metadata``, ``/openapi.json``, ``/metrics`` (Prometheus).

Without ``MODEL_VERSION`` (the revision terraform creates before the first promotion) the service is
healthy and answers every other route 503 with what to do. Otherwise the model loads in the
background from the version pinned in the revision's environment
(``DATASET``, ``MODEL_VERSION``; hash-checked against the registry) or, on Vertex AI, from
``AIP_STORAGE_URI`` (``model.skops`` + ``record.json``). Until it is loaded, the health and
readiness routes and every prediction answer 503; if loading fails they keep answering 503 with
the reason (under gunicorn the process exits instead, so the platform fails the revision at once).
Predictions go through the prepared path (``tollgate.prepared``: checked at load time to match the
registered model) and the micro-batcher; each is logged to the `predictions` topic.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import numpy as np
import orjson
from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

from services.predictor import openapi
from services.predictor.batching import MicroBatcher
from services.predictor.predlog import PredictionLog, pubsub_publisher
from tollgate import log, inputs
from tollgate.prepared import Columns, Outputs

MAX_BODY_BYTES = int(os.environ.get("TOLLGATE_MAX_BODY_BYTES", 8 * 1024 * 1024))
FEEDBACK_KEY_ENV = "TOLLGATE_FEEDBACK_KEY"   # signs request ids; a secret shared by the dataset's revisions
MAX_INSTANCES = int(os.environ.get("TOLLGATE_MAX_INSTANCES", inputs.MAX_INSTANCES))
EXIT_ON_LOAD_FAILURE = "TOLLGATE_EXIT_ON_LOAD_FAILURE"   # set by gunicorn.conf.py


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("tollgate_predictor_requests", "HTTP requests by route and status code",
                                ["route", "code"], registry=r)
        self.errors = Counter("tollgate_predictor_errors", "Responses with a 4xx or 5xx status, by code",
                              ["code"], registry=r)
        self.latency = Histogram("tollgate_predictor_request_seconds", "Time to answer a prediction request",
                                 ["route"], registry=r,
                                 buckets=(.0005, .001, .002, .003, .005, .0075, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.rows = Counter("tollgate_predictor_predictions", "Instances predicted", registry=r)
        self.batch_rows = Histogram("tollgate_predictor_batch_rows", "Rows per model call (micro-batch size)",
                                    registry=r, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.batch_requests = Histogram("tollgate_predictor_batch_requests", "Requests per model call",
                                        registry=r, buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32))
        self.model = Gauge("tollgate_predictor_model_info", "The model this revision serves (value 1)",
                           ["dataset", "model_version", "path"], registry=r)
        self.ready = Gauge("tollgate_predictor_ready", "1 once the model is loaded and checked", registry=r)
        self.load_seconds = Gauge("tollgate_predictor_load_seconds", "Seconds from start to ready", registry=r)
        self.log_published = Counter("tollgate_prediction_log_published", "Predictions published to the log",
                                     registry=r)
        self.log_lost = Counter("tollgate_prediction_log_lost", "Predictions the log could not publish",
                                ["reason"], registry=r)

    def batch(self, requests: int, rows: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_rows.observe(rows)


class Serving:
    """What a loaded revision serves; built once by the loading thread."""

    def __init__(self, model: Any, record: dict[str, Any], dataset: str, version: int, metrics: Metrics) -> None:
        from tollgate import prepared
        from tollgate import spec as specs

        self.dataset, self.version, self.record = dataset, version, record
        self.spec = specs.from_dict(record["spec"])
        self.checker = inputs.Checker(self.spec, MAX_INSTANCES)
        self.prepared = prepared.prepare(model, self.spec)
        self.classes = [str(c) for c in getattr(model, "classes_", [])] or None
        self.batcher = MicroBatcher(self.prepared.predict, on_batch=metrics.batch,
                                    max_rows=int(os.environ.get("TOLLGATE_BATCH_MAX_ROWS", 256)),
                                    max_wait=float(os.environ.get("TOLLGATE_BATCH_MAX_WAIT_MS", 1)) / 1000)
        self.predlog = PredictionLog(_publisher(), dataset, version,
                                     (self.spec.numeric_features, self.spec.categorical_features),
                                     on_published=metrics.log_published.inc,
                                     on_lost=lambda n, why: metrics.log_lost.labels(why).inc(n))
        self.openapi = orjson.dumps(openapi.document(self.spec, version, MAX_INSTANCES))
        # warm the path once so the first request pays for nothing
        self.batcher.arrive()
        self.batcher.submit(prepared.sample(self.spec, model, rows=1))

    def metadata(self) -> dict[str, Any]:
        r, spec = self.record, self.spec
        return {"dataset": self.dataset, "model_version": self.version, "task": spec.task, "target": spec.target,
                "estimator": r.get("estimator"), "metrics": r.get("metrics"),
                "trained_at": _iso(r.get("registered_at")),
                "sha256": r.get("sha256"), "code_version": r.get("code_version"),
                "features": [{"name": n, "type": "number" if n in spec.numeric_features else "string",
                              "nullable": spec.columns[n].nullable, "min": spec.columns[n].min,
                              "max": spec.columns[n].max, "allowed": spec.columns[n].allowed}
                             for n in spec.features],
                "classes": self.classes, "inference_path": self.prepared.path,
                "inference_check": self.prepared.reason, "max_instances": MAX_INSTANCES}

    def close(self) -> None:
        self.predlog.close()


def request_ids() -> inputs.RequestIds:
    """The deployment's request-id signer; without a configured key, one of this process's own (labels are
    then accepted only for requests this instance answered)."""
    import secrets

    key = os.environ.get(FEEDBACK_KEY_ENV, "")
    if len(key) < 16:
        log.warning(f"{FEEDBACK_KEY_ENV} is not set (or shorter than 16 characters): request ids are signed with "
                    "a key of this instance only, so POST /feedback accepts labels only for its own answers")
        return inputs.RequestIds(secrets.token_bytes(32))
    return inputs.RequestIds(key.encode())


def _publisher() -> Any:
    if os.environ.get("TOLLGATE_PREDICTION_LOG", "on").lower() in ("off", "0", "false"):
        log.info("prediction log off (TOLLGATE_PREDICTION_LOG)")
        return None
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCP_PROJECT")
    if not project:
        log.warning("prediction log off: GOOGLE_CLOUD_PROJECT is not set")
        return None
    topic = os.environ.get("TOLLGATE_PREDICTIONS_TOPIC", "predictions")
    timeout = float(os.environ.get("TOLLGATE_PREDICTION_LOG_TIMEOUT", 30))
    return lambda: pubsub_publisher(project, topic, timeout=timeout)


MODEL_SHA256_ENV = "TOLLGATE_MODEL_SHA256"


def load(dataset: str, version: int) -> tuple[Any, dict[str, Any]]:
    """The pinned model and its registry record, hash-checked before it is deserialised."""
    storage_uri = os.environ.get("AIP_STORAGE_URI")
    if storage_uri:   # Vertex AI copies the model directory; so may a test or the benchmark
        from tollgate import artifacts

        # Whoever can write the directory can rewrite record.json too: the hash to trust comes with the
        # deployment (the model's container env on Vertex AI), copied from the registry record.
        expected = os.environ.get(MODEL_SHA256_ENV, "")
        if len(expected) != 64:
            raise artifacts.ArtifactError(
                f"{MODEL_SHA256_ENV} must give the model's sha256 (from `tollgate model show DATASET VERSION`) "
                f"when it is loaded from AIP_STORAGE_URI; record.json beside the model is not trusted for it")
        record = orjson.loads(_read(storage_uri, "record.json"))
        if record.get("sha256") != expected:
            raise artifacts.ArtifactError(f"record.json in {storage_uri} gives sha256 {record.get('sha256')}, "
                                          f"the deployment {expected}: refusing both")
        return artifacts.loads(_read(storage_uri, "model.skops"), expected), record
    from tollgate import runtime
    from tollgate.jobs.common import load_model

    return load_model(runtime.cloud(), runtime.state(), dataset, version)


def _read(uri: str, name: str) -> bytes:
    if uri.startswith("gs://"):
        from google.cloud import storage

        bucket, _, prefix = uri.removeprefix("gs://").partition("/")
        return storage.Client().bucket(bucket).blob(f"{prefix.rstrip('/')}/{name}".lstrip("/")).download_as_bytes()
    with open(os.path.join(uri, name), "rb") as fh:
        return fh.read()


def _iso(value: Any) -> Any:
    """Firestore timestamps (a datetime subclass orjson will not take) as ISO 8601 strings."""
    return value.isoformat() if hasattr(value, "isoformat") else value


def _plain(value: Any) -> Any:
    """What orjson's numpy support leaves out: object arrays (class labels) and numpy scalars."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY, default=_plain), status=status,
                    mimetype="application/json", headers=headers)


def _error(status: int, message: str, problems: list[str] | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if problems:
        body["problems"] = problems
    return _json(body, status)


def awaiting_model_app(dataset: str) -> Flask:
    """The revision terraform creates before any model exists (``DATASET`` without ``MODEL_VERSION``):
    healthy, so Cloud Run can make the service, its URL and its IAM now; every other route answers 503
    with what to do. The decider's first promotion replaces it with a pinned revision."""
    app = Flask(__name__)
    where = f"gs://{os.environ['TOLLGATE_BUCKET']}" if os.environ.get("TOLLGATE_BUCKET") else "the bucket"
    message = (f"no model of {dataset!r} has been promoted yet: drop a batch into {where}/incoming/{dataset}/ "
               "and this service is redeployed with the first model the decider promotes (`tollgate runs` "
               "follows it)")
    log.info("no model pinned: serving 503 until the first promotion", dataset=dataset)

    def live() -> Response:
        return _json({"status": "awaiting-model", "dataset": dataset, "model_version": None})

    app.add_url_rule(os.environ.get("AIP_HEALTH_ROUTE", "/health"), "health", live)
    app.add_url_rule("/v2/health/live", "v2_live", live)

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def everything_else(path: str) -> Response:
        return _error(503, message)

    return app


def create_app(dataset: str | None = None, version: int | None = None, *, background: bool = True) -> Flask:
    """The app; the model loads in a thread (``background=False``: before returning, for tests)."""
    started = time.monotonic()
    dataset = dataset or os.environ.get("DATASET") or ""
    version = version or int(os.environ.get("MODEL_VERSION") or 0)
    if not dataset:
        raise RuntimeError("DATASET must be set (and MODEL_VERSION: the decider pins both on each revision)")
    if not version:
        return awaiting_model_app(dataset)
    metrics = Metrics()
    box: dict[str, Any] = {"serving": None, "error": None}

    def load_model() -> None:
        try:
            model, record = load(dataset, version)
            box["serving"] = s = Serving(model, record, dataset, version, metrics)
        except Exception as exc:   # never ready; every probe and request says why
            box["error"] = f"{type(exc).__name__}: {exc}"
            log.error(f"model {dataset} v{version} could not be loaded; this revision will not turn ready: "
                      f"{box['error']}", dataset=dataset, model_version=version)
            if os.environ.get(EXIT_ON_LOAD_FAILURE) == "1":
                # Under gunicorn: a model that failed its hash check or could not be read will not load on
                # a retry either. Exit code 3 is gunicorn's "worker failed to boot": the master stops, and
                # the platform fails the revision now instead of after its startup probe gives up.
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(3)
            return
        metrics.model.labels(dataset, str(version), s.prepared.path).set(1)
        metrics.ready.set(1)
        metrics.load_seconds.set(time.monotonic() - started)
        log.info("model loaded", dataset=dataset, model_version=version, inference_path=s.prepared.path,
                 inference_check=s.prepared.reason,
                 seconds=round(time.monotonic() - started, 3))

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["tollgate"] = box
    version_header = {"X-Model-Version": str(version)}
    ids = request_ids()

    def not_ready() -> Response:
        if box["error"]:
            return _error(503, f"model {dataset} v{version} failed to load: {box['error']}")
        return _error(503, f"model {dataset} v{version} is loading; retry shortly")

    @app.before_request
    def stamp() -> None:
        g.started = time.perf_counter()
        g.request_id = ids.issue()   # ours, signed: /feedback accepts labels only for ids it issued

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers.update(version_header)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        code = response.status_code
        metrics.requests.labels(route, str(code)).inc()
        if code >= 400:
            metrics.errors.labels(str(code)).inc()
            s: Serving | None = box["serving"]
            if s is not None and request.endpoint in ("vertex_predict", "v2_infer") and "started" in g:
                s.predlog.record_error(g.request_id, time.time(), code, time.perf_counter() - g.started)
        if "started" in g:
            metrics.latency.labels(route).observe(time.perf_counter() - g.started)
        return response

    # -- health -----------------------------------------------------------------------------
    def readiness() -> Response:
        if box["serving"] is None:
            return not_ready()
        return _json({"status": "ready", "dataset": dataset, "model_version": version})

    app.add_url_rule(os.environ.get("AIP_HEALTH_ROUTE", "/health"), "health", readiness)
    app.add_url_rule("/v2/health/ready", "v2_ready", readiness)

    @app.get("/v2/health/live")
    def live() -> Response:
        return _json({"live": True})

    # -- prediction -------------------------------------------------------------------------
    def predict(decode: Any) -> tuple[Serving, Columns, Outputs] | Response:
        s: Serving | None = box["serving"]
        if s is None:
            return not_ready()
        s.batcher.arrive()
        try:
            columns = decode(s)
        except inputs.BadRequest as exc:
            s.batcher.leave()
            summary = "; ".join(exc.problems[:3]) + (f" (and {len(exc.problems) - 3} more)" if len(exc.problems) > 3
                                                     else "")
            return _error(exc.status, f"invalid request: {summary}", exc.problems)
        except BaseException:
            s.batcher.leave()
            raise
        outputs = s.batcher.submit(columns)
        metrics.rows.inc(len(columns))
        return s, columns, outputs

    def parse(body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            try:   # NaN / Infinity literals, as tritonclient writes missing values: the standard library reads them
                return json.loads(body)
            except (ValueError, RecursionError):
                raise inputs.BadRequest([f"the body is not valid JSON: {exc}"]) from None

    @app.post(os.environ.get("AIP_PREDICT_ROUTE", "/predict"))
    def vertex_predict() -> Response:
        result = predict(lambda s: s.checker.instances(parse(request.get_data())))
        if isinstance(result, Response):
            return result
        s, columns, outputs = result
        body: dict[str, Any] = {"predictions": outputs.predictions, "model_version": version}
        if outputs.probabilities is not None:
            body["classes"] = s.classes
            body["probabilities"] = outputs.probabilities
        s.predlog.record(g.request_id, time.time(), columns, outputs, time.perf_counter() - g.started)
        return _json(body)

    @app.post("/feedback")
    def feedback() -> Response:
        """Ground truth for logged predictions: ``{"labels": [{"request_id", "row" (default 0), "label"}]}``
        (or one such object). Accepted (202) onto the prediction log; the monitor joins them."""
        s: Serving | None = box["serving"]
        if s is None:
            return not_ready()
        try:
            labels = inputs.feedback_labels(parse(request.get_data()), s.spec, s.classes, ids, MAX_INSTANCES)
        except inputs.BadRequest as exc:
            return _error(exc.status, "invalid feedback: " + "; ".join(exc.problems[:3]), exc.problems)
        if not s.predlog.enabled:
            return _error(503, "feedback travels on the prediction log, which is off here "
                               "(TOLLGATE_PREDICTION_LOG); drop a labels file under labels/<dataset>/ instead")
        if not s.predlog.record_labels(time.time(), labels):
            return _error(503, "the prediction log is full; retry shortly")
        return _json({"accepted": len(labels), "model_version": version}, 202)

    def v2_model(name: str, model_version: str | None) -> Response | None:
        if name != dataset:
            return _error(404, f"model {name!r} is not served here; this revision serves {dataset!r}")
        if model_version is not None and model_version != str(version):
            return _error(404, f"version {model_version} of {name} is not served here; this revision serves "
                               f"version {version}")
        return None

    @app.post("/v2/models/<name>/infer")
    @app.post("/v2/models/<name>/versions/<model_version>/infer")
    def v2_infer(name: str, model_version: str | None = None) -> Response:
        wrong = v2_model(name, model_version)
        if wrong is not None:
            return wrong
        data = request.get_data()
        header_length = request.headers.get("Inference-Header-Content-Length")
        parsed: dict[str, Any] = {}

        def decode(s: Serving) -> Columns:
            binary = b""
            if header_length is None:
                body = parse(data)
            else:
                try:
                    length = int(header_length)
                except ValueError:
                    raise inputs.BadRequest(["Inference-Header-Content-Length must be an integer"]) from None
                if not 0 < length <= len(data):
                    raise inputs.BadRequest([f"Inference-Header-Content-Length {length} is outside the "
                                              f"{len(data)}-byte body"])
                body, binary = parse(data[:length]), data[length:]
            columns = s.checker.tensors(body, binary)
            parsed.update(body)
            return columns

        result = predict(decode)
        if isinstance(result, Response):
            return result
        s, columns, outputs = result
        n = len(columns)
        requested = parsed.get("outputs") if isinstance(parsed.get("outputs"), list) else []
        wanted = {o.get("name") for o in requested if isinstance(o, dict)} or None
        labels = outputs.predictions
        out = [{"name": "predict", "shape": [n], "datatype": "FP64" if s.spec.task == "regression" else "BYTES",
                "data": labels if s.spec.task == "regression" else [str(v) for v in labels]}]
        if outputs.probabilities is not None:
            out.append({"name": "predict_proba", "shape": list(outputs.probabilities.shape), "datatype": "FP64",
                        "data": outputs.probabilities.ravel(), "parameters": {"classes": s.classes}})
        if wanted:
            unknown = wanted - {o["name"] for o in out}
            if unknown:
                return _error(400, f"unknown outputs {sorted(map(str, unknown))}: this model has "
                                   f"{', '.join(o['name'] for o in out)}")
            out = [o for o in out if o["name"] in wanted]
        s.predlog.record(g.request_id, time.time(), columns, outputs, time.perf_counter() - g.started)
        return _json({"model_name": dataset, "model_version": str(version),
                      "id": str(parsed.get("id") or g.request_id), "outputs": out})

    # -- metadata ---------------------------------------------------------------------------
    @app.get("/v2")
    def v2_server() -> Response:
        return _json({"name": "tollgate-predictor", "version": os.environ.get("TOLLGATE_CODE_VERSION", "dev"),
                      "extensions": ["binary_tensor_data"]})

    @app.get("/v2/models/<name>")
    @app.get("/v2/models/<name>/versions/<model_version>")
    def v2_metadata(name: str, model_version: str | None = None) -> Response:
        wrong = v2_model(name, model_version)
        if wrong is not None:
            return wrong
        s: Serving | None = box["serving"]
        if s is None:
            return not_ready()
        spec = s.spec
        inputs = [{"name": n, "datatype": "FP64" if n in spec.numeric_features else "BYTES", "shape": [-1]}
                  for n in spec.features]
        outputs = [{"name": "predict", "datatype": "FP64" if spec.task == "regression" else "BYTES", "shape": [-1]}]
        if spec.task == "classification":
            outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(s.classes or [])]})
        return _json({"name": dataset, "versions": [str(version)], "platform": "scikit-learn",
                      "inputs": inputs, "outputs": outputs})

    @app.get("/v2/models/<name>/ready")
    @app.get("/v2/models/<name>/versions/<model_version>/ready")
    def v2_model_ready(name: str, model_version: str | None = None) -> Response:
        return v2_model(name, model_version) or readiness()

    @app.get("/metadata")
    def metadata() -> Response:
        s: Serving | None = box["serving"]
        return _json(s.metadata()) if s is not None else not_ready()

    @app.get("/openapi.json")
    def openapi_document() -> Response:
        s: Serving | None = box["serving"]
        if s is None:
            return not_ready()
        return Response(s.openapi, mimetype="application/json")

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    # -- errors: JSON, with the version header, whatever went wrong -------------------------
    @app.errorhandler(404)
    def not_found(_: Any) -> Response:
        return _error(404, f"no route {request.method} {request.path}; see /openapi.json")

    @app.errorhandler(405)
    def wrong_method(exc: Any) -> Response:
        allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or []))
        response = _error(405, f"{request.method} is not allowed on {request.path} (allowed: {allowed}); "
                               "see /openapi.json")
        response.headers["Allow"] = allowed
        return response

    @app.errorhandler(413)
    def too_large(_: Any) -> Response:
        return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes: split the request")

    @app.errorhandler(500)
    def crashed(exc: Any) -> Response:
        log.error(f"request failed: {getattr(exc, 'original_exception', exc)!r}", request_id=g.get("request_id"))
        return _error(500, "internal error; the request id is in X-Request-Id (and in the log)")

    if background:
        threading.Thread(target=load_model, name="model-loader", daemon=True).start()
    else:
        load_model()
    return app


def close(app: Flask) -> None:
    """Flush the prediction log (gunicorn's worker_exit calls this after the last request)."""
    s = app.extensions.get("tollgate", {}).get("serving")   # none before the first model
    if s is not None:
        s.close()
