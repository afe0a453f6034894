"""The Vertex AI custom-container contract: ``POST AIP_PREDICT_ROUTE`` (default /predict) with
``{"instances": [{feature: value, ...}], "parameters": {}}`` → ``{"predictions": [...], "model_version": N}``
(classification adds ``classes`` and ``probabilities``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from services.predictor.config import PredictorConfig
from services.predictor.metrics import Metrics
from services.predictor.model import Holder, Loaded
from services.predictor.web import json_response, log_prediction, needs_model, parse, run_model


def blueprint(config: PredictorConfig, holder: Holder, metrics: Metrics) -> Blueprint:
    routes = Blueprint("vertex", __name__)

    @routes.post(config.predict_route, endpoint="predict")
    @needs_model(holder)
    def predict(loaded: Loaded) -> Response:
        checker = loaded.checker
        result = run_model(loaded, metrics, lambda: checker.instances(parse(checker.bounded(request.get_data()))))
        if isinstance(result, Response):
            return result
        columns, outputs = result
        body: dict[str, Any] = {"predictions": outputs.predictions, "model_version": config.model_version}
        if outputs.probabilities is not None:
            body["classes"] = loaded.classes
            body["probabilities"] = outputs.probabilities
        log_prediction(loaded, columns, outputs)
        return json_response(body)

    return routes
