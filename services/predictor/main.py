"""Cloud Run service `predictor`: HTTP predictions from the model version pinned in the revision.

    gunicorn --config services/predictor/gunicorn.conf.py "services.predictor.main:create_app()"

``create_app(config=None)`` is the application factory: the settings come from the environment in one place
(config.py) or from a test. Routes are grouped by contract, each in its own module:

* vertex.py: Vertex AI's custom-container contract (``POST /predict``);
* oip.py: the Open Inference Protocol v2 (``/v2/...``, ``tritonclient.http`` works unchanged);
* operations.py: health, ``/metadata``, ``/openapi.json``, ``/metrics``, ``POST /feedback``.

Every response carries ``X-Model-Version`` and a signed ``X-Request-Id`` (web.py). The model loads in the
background (model.py: hash-checked against the registry, allow-listed, prepared); until it is loaded every route
that needs it answers 503, and if loading fails, 503 with the reason (under gunicorn the process exits instead, so
the platform fails the revision at once). Without ``MODEL_VERSION`` — the revision terraform creates before the
first promotion — the service is healthy and answers every other route 503 with what to do.
"""

from __future__ import annotations

from flask import Flask, Response

from services.predictor import oip, operations, vertex, web
from services.predictor.config import PredictorConfig
from services.predictor.metrics import Metrics
from services.predictor.model import Holder
from tollgate import log


def create_app(config: PredictorConfig | None = None, *, background: bool = True) -> Flask:
    """The app; the model loads in a thread (``background=False``: before returning, for tests)."""
    config = config or PredictorConfig.from_env()
    if not config.model_version:
        return awaiting_model_app(config)
    metrics = Metrics()
    holder = Holder(config, metrics)
    ids = web.request_ids(config)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["tollgate"] = holder
    web.install(app, config, holder, metrics, ids)
    app.register_blueprint(vertex.blueprint(config, holder, metrics))
    app.register_blueprint(oip.blueprint(config, holder, metrics))
    app.register_blueprint(operations.blueprint(config, holder, metrics, ids))
    holder.start(background)
    return app


def awaiting_model_app(config: PredictorConfig) -> Flask:
    """The revision terraform creates before any model exists (``DATASET`` without ``MODEL_VERSION``):
    healthy, so Cloud Run can make the service, its URL and its IAM now; every other route answers 503
    with what to do. The decider's first promotion replaces it with a pinned revision."""
    app = Flask(__name__)
    where = f"gs://{config.bucket}" if config.bucket else "the bucket"
    message = (f"no model of {config.dataset!r} has been promoted yet: drop a batch into "
               f"{where}/incoming/{config.dataset}/ and this service is redeployed with the first model the decider "
               "promotes (`tollgate runs` follows it)")
    log.info("no model pinned: serving 503 until the first promotion", dataset=config.dataset)

    def live() -> Response:
        return web.json_response({"status": "awaiting-model", "dataset": config.dataset, "model_version": None})

    app.add_url_rule(config.health_route, "health", live)
    app.add_url_rule("/v2/health/live", "v2_live", live)

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def everything_else(path: str) -> Response:
        return web.error(503, message)

    return app


def close(app: Flask) -> None:
    """Flush the prediction log (gunicorn's worker_exit calls this after the last request)."""
    holder = app.extensions.get("tollgate")
    if isinstance(holder, Holder) and holder.loaded is not None:   # none before the first model
        holder.loaded.close()
