"""Tollgate's own routes: health (``AIP_HEALTH_ROUTE``, default /health), ``/metadata``, ``/openapi.json``,
``/metrics`` (Prometheus) and ``POST /feedback`` — ground truth for logged predictions, by request id and row,
accepted only for ids this deployment issued."""

from __future__ import annotations

import time

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.predictor.config import PredictorConfig
from services.predictor.metrics import Metrics
from services.predictor.model import Holder, Loaded
from services.predictor.web import error, json_response, needs_model, parse, readiness
from tollgate import inputs


def blueprint(config: PredictorConfig, holder: Holder, metrics: Metrics, ids: inputs.RequestIds) -> Blueprint:
    routes = Blueprint("operations", __name__)

    @routes.get(config.health_route, endpoint="health")
    def health() -> Response:
        return readiness(holder)

    @routes.get("/metadata")
    @needs_model(holder)
    def metadata(loaded: Loaded) -> Response:
        return json_response(loaded.metadata())

    @routes.get("/openapi.json")
    @needs_model(holder)
    def openapi_document(loaded: Loaded) -> Response:
        return Response(loaded.openapi, mimetype="application/json")

    @routes.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    @routes.post("/feedback")
    @needs_model(holder)
    def feedback(loaded: Loaded) -> Response:
        """``{"labels": [{"request_id", "row" (default 0), "label"}]}`` (or one such object): accepted (202) onto
        the prediction log; the monitor joins them."""
        try:
            body = parse(loaded.checker.bounded(request.get_data()))
            labels = inputs.feedback_labels(body, loaded.spec, loaded.classes, ids, config.max_instances)
        except inputs.BadRequest as exc:
            return error(exc.status, "invalid feedback: " + "; ".join(exc.problems[:3]), exc.problems)
        if not loaded.predlog.enabled:
            return error(503, "feedback travels on the prediction log, which is off here "
                              "(TOLLGATE_PREDICTION_LOG); drop a labels file under labels/<dataset>/ instead")
        if not loaded.predlog.record_labels(time.time(), labels):
            return error(503, "the prediction log is full; retry shortly")
        return json_response({"accepted": len(labels), "model_version": config.model_version}, 202)

    return routes

