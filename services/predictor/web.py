"""What every route of the predictor shares: JSON answers and errors, the request id and its metrics, readiness
(checked once, by ``needs_model``), and the one path from a decoded request to the model (``run_model``)."""

from __future__ import annotations

import functools
import json
import time
from typing import Any, Callable

import orjson
from flask import Flask, Response, g, request

from services.predictor.config import PredictorConfig
from services.predictor.metrics import Metrics
from services.predictor.model import Holder, Loaded
from tollgate import inputs, log
from tollgate.jsonable import default
from tollgate.prepared import Columns, Outputs

# The routes whose answers go on the prediction log (a refused request counts toward the error rate).
PREDICTION_ENDPOINTS = {"vertex.predict", "oip.infer"}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY, default=default), status=status,
                    mimetype="application/json", headers=headers)


def error(status: int, message: str, problems: list[str] | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if problems:
        body["problems"] = problems
    return json_response(body, status)


def parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:   # NaN / Infinity literals, as tritonclient writes missing values: the standard library reads them
            return json.loads(body)
        except (ValueError, RecursionError):
            raise inputs.BadRequest([f"the body is not valid JSON: {exc}"]) from None


def needs_model(holder: Holder) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """A route that needs the loaded model: 503 with why until it is there; the view gets it first."""
    def wrap(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Response:
            if holder.loaded is None:
                return error(503, holder.not_ready())
            return view(holder.loaded, *args, **kwargs)
        return guarded
    return wrap


def readiness(holder: Holder) -> Response:
    """Ready (200) once the model is loaded and checked; 503 with why until then, or for good."""
    if holder.loaded is None:
        return error(503, holder.not_ready())
    return json_response({"status": "ready", "dataset": holder.config.dataset,
                          "model_version": holder.config.model_version})


def run_model(loaded: Loaded, metrics: Metrics, decode: Callable[[], Columns]) -> tuple[Columns, Outputs] | Response:
    """Decode and check a request (``decode`` raises BadRequest with every problem), then predict through the
    micro-batcher: (columns, outputs), or the 4xx answer."""
    loaded.batcher.arrive()
    try:
        columns = decode()
    except inputs.BadRequest as exc:
        loaded.batcher.leave()
        summary = "; ".join(exc.problems[:3]) + (f" (and {len(exc.problems) - 3} more)" if len(exc.problems) > 3
                                                 else "")
        return error(exc.status, f"invalid request: {summary}", exc.problems)
    except BaseException:
        loaded.batcher.leave()
        raise
    outputs = loaded.batcher.submit(columns)
    metrics.rows.inc(len(columns))
    return columns, outputs


def log_prediction(loaded: Loaded, columns: Columns, outputs: Outputs) -> None:
    loaded.predlog.record(g.request_id, time.time(), columns, outputs, time.perf_counter() - g.started)


def install(app: Flask, config: PredictorConfig, holder: Holder, metrics: Metrics, ids: inputs.RequestIds) -> None:
    """Request ids, the version header, metrics, and JSON answers for every error."""
    version_header = {"X-Model-Version": str(config.model_version)}

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
            if holder.loaded is not None and request.endpoint in PREDICTION_ENDPOINTS and "started" in g:
                holder.loaded.predlog.record_error(g.request_id, time.time(), code, time.perf_counter() - g.started)
        if "started" in g:
            metrics.latency.labels(route).observe(time.perf_counter() - g.started)
        return response

    @app.errorhandler(404)
    def not_found(_: Any) -> Response:
        return error(404, f"no route {request.method} {request.path}; see /openapi.json")

    @app.errorhandler(405)
    def wrong_method(exc: Any) -> Response:
        allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or []))
        response = error(405, f"{request.method} is not allowed on {request.path} (allowed: {allowed}); "
                              "see /openapi.json")
        response.headers["Allow"] = allowed
        return response

    @app.errorhandler(413)
    def too_large(_: Any) -> Response:
        return error(413, f"the body is larger than {config.max_body_bytes} bytes: split the request")

    @app.errorhandler(500)
    def crashed(exc: Any) -> Response:
        log.error(f"request failed: {getattr(exc, 'original_exception', exc)!r}", request_id=g.get("request_id"),
                  **log.trace_field(request.headers, config.project))
        return error(500, "internal error; the request id is in X-Request-Id (and in the log)")


def request_ids(config: PredictorConfig) -> inputs.RequestIds:
    """The deployment's request-id signer; without a configured key, one of this process's own (labels are
    then accepted only for requests this instance answered)."""
    import secrets

    if len(config.feedback_key) < 16:
        log.warning("TOLLGATE_FEEDBACK_KEY is not set (or shorter than 16 characters): request ids are signed with "
                    "a key of this instance only, so POST /feedback accepts labels only for its own answers")
        return inputs.RequestIds(secrets.token_bytes(32))
    return inputs.RequestIds(config.feedback_key.encode())
