"""Cloud Run service `predictor`: HTTP predictions from the model version pinned in the revision.

    gunicorn --config services/predictor/gunicorn.conf.py "services.predictor.main:create_app()"
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import orjson
from flask import Flask, Response, request

from tollgate import jobs, log, runtime, serving, training
from tollgate import spec as specs


def _json(payload: Any, status: int = 200, version: int | None = None) -> Response:
    response = Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status=status,
                        mimetype="application/json")
    if version is not None:
        response.headers["X-Model-Version"] = str(version)
    return response


def create_app(dataset: str | None = None, version: int | None = None) -> Flask:
    """Load the pinned model once (hash-checked) and build the app; fails fast if it cannot."""
    dataset = dataset or os.environ.get("DATASET")
    version = version or int(os.environ.get("MODEL_VERSION") or 0)
    if not dataset or not version:
        raise RuntimeError("DATASET and MODEL_VERSION must be set: the decider pins them on each revision")
    model, record = jobs.load_model(runtime.cloud(), runtime.state(), dataset, version)
    spec = specs.from_dict(record["spec"])
    log.info("model loaded", dataset=dataset, model_version=version)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 8 * 1024 * 1024
    health = os.environ.get("AIP_HEALTH_ROUTE", "/health")
    predict_route = os.environ.get("AIP_PREDICT_ROUTE", "/predict")

    @app.get(health)
    def healthz() -> Response:
        return _json({"status": "ok", "dataset": dataset, "model_version": version}, version=version)

    @app.post(predict_route)
    def predict() -> Response:
        try:
            body = orjson.loads(request.get_data())
        except orjson.JSONDecodeError as exc:
            return _json({"error": f"the body is not valid JSON: {exc}"}, 400, version)
        try:
            frame = serving.instances_frame(body, spec)
        except serving.BadRequest as exc:
            return _json({"error": "invalid instances", "problems": exc.problems}, 400, version)
        predictions = np.asarray(model.predict(training.features_frame(frame, spec)))
        return _json({"predictions": predictions.tolist(), "model_version": version}, version=version)

    @app.errorhandler(413)
    def too_large(_: Any) -> Response:
        return _json({"error": "the body is larger than 8 MiB"}, 413, version)

    return app
