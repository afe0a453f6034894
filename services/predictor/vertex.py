"""The Vertex AI custom-container contract: ``POST AIP_PREDICT_ROUTE`` (default /predict) with
``{"instances": [{feature: value, ...}], "parameters": {}}`` → ``{"predictions": [...], "model_version": N}``
(classification adds ``classes`` and ``probabilities``); and its explanation route ``POST <predict route>:explain``
(also ``/explain``): the same body → ``{"explanations": [{"attributions": [{"featureAttributions": {feature:
value}, "baselineOutputValue": b, "instanceOutputValue": v, ...}]}], "predictions": [...]}`` (``tollgate.explain``:
exact attributions per declared feature, summing to v − b; 400 for a family without an exact method)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from services.predictor.config import PredictorConfig
from services.predictor.metrics import Metrics
from services.predictor.model import Holder, Loaded
from services.predictor.web import error, json_response, log_prediction, needs_model, parse, run_model

MAX_EXPLAINED = 100   # instances per explanation request: each is a TreeSHAP over every tree


def blueprint(config: PredictorConfig, holder: Holder, metrics: Metrics) -> Blueprint:
    routes = Blueprint("vertex", __name__)

    def answered(loaded: Loaded) -> tuple[Any, dict[str, Any]] | Response:
        """The request's instances predicted: (columns, the Vertex AI body), or the 4xx answer."""
        checker = loaded.checker
        result = run_model(loaded, metrics, lambda: checker.instances(parse(checker.bounded(request.get_data()))))
        if isinstance(result, Response):
            return result
        columns, outputs = result
        body: dict[str, Any] = {"predictions": outputs.predictions, "model_version": config.model_version}
        if outputs.probabilities is not None:
            body["classes"] = loaded.classes
            body["probabilities"] = outputs.probabilities
        return (columns, outputs), body

    @routes.post(config.predict_route, endpoint="predict")
    @needs_model(holder)
    def predict(loaded: Loaded) -> Response:
        result = answered(loaded)
        if isinstance(result, Response):
            return result
        (columns, outputs), body = result
        log_prediction(loaded, columns, outputs)
        return json_response(body)

    @routes.post("/explain", endpoint="explain")
    @routes.post(f"{config.predict_route}:explain", endpoint="explain_vertex")
    @needs_model(holder)
    def explain(loaded: Loaded) -> Response:
        from tollgate import explain as explanations

        result = answered(loaded)
        if isinstance(result, Response):
            return result
        (columns, _), body = result
        if len(columns) > MAX_EXPLAINED:
            return error(400, f"explain at most {MAX_EXPLAINED} instances per request ({len(columns)} sent); "
                              "split them over several requests")
        try:
            answers = loaded.explainer().explain(columns)
        except explanations.Unexplainable as exc:
            return error(400, f"no explanation for model v{config.model_version}: {exc}")
        return json_response({"explanations": [{"attributions": [a]} for a in answers], **body})

    return routes
