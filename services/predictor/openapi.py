"""The predictor's OpenAPI 3.0 document, generated from the dataset spec it serves (GET /openapi.json)."""

from __future__ import annotations

from typing import Any

from tollgate.spec import DatasetSpec

_ERROR = {"type": "object", "required": ["error"],
          "properties": {"error": {"type": "string"}, "problems": {"type": "array", "items": {"type": "string"}}}}


def _feature(spec: DatasetSpec, name: str) -> dict[str, Any]:
    column = spec.columns[name]
    if name in spec.feature_lists.numeric:
        schema: dict[str, Any] = {"type": "number"}
        if column.min is not None:
            schema["minimum"] = column.min
        if column.max is not None:
            schema["maximum"] = column.max
    elif name in spec.feature_lists.datetime:   # ISO-8601 text (or a Unix time in the column's unit)
        schema = {"type": "string", "format": "date-time"}
    else:
        schema = {"type": "string"}
        if column.allowed:
            schema["enum"] = list(column.allowed)
    if column.nullable:
        schema["nullable"] = True
    return schema


_ERROR_BODY = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _responses(ok: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": "predictions", "content": {"application/json": {"schema": ok}},
                    "headers": {"X-Model-Version": {"schema": {"type": "string"},
                                                    "description": "the model version that answered"}}},
            "400": {"description": "invalid request (also: more instances than allowed): every problem, "
                                   "with the instance index and field", **_ERROR_BODY},
            "413": {"description": "a body over the size limit", **_ERROR_BODY},
            "503": {"description": "the model is not loaded (yet)", **_ERROR_BODY}}


def document(spec: DatasetSpec, version: int, max_instances: int) -> dict[str, Any]:
    regression = spec.task == "regression"
    instance = {"type": "object", "additionalProperties": False,
                "required": [n for n in spec.features if not spec.columns[n].nullable],
                "properties": {n: _feature(spec, n) for n in spec.features}}
    prediction = {"type": "number"} if regression else {"type": "string"}
    vertex_ok = {"type": "object", "required": ["predictions", "model_version"],
                 "properties": {"predictions": {"type": "array", "items": prediction},
                                "model_version": {"type": "integer"},
                                "classes": {"type": "array", "items": {"type": "string"}},
                                "probabilities": {"type": "array", "items": {"type": "array",
                                                                             "items": {"type": "number"}}}}}
    tensor_out = {"type": "object", "required": ["name", "shape", "datatype", "data"],
                  "properties": {"name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                                 "datatype": {"type": "string"}, "data": {"type": "array"},
                                 "parameters": {"type": "object"}}}
    v2_ok = {"type": "object", "required": ["model_name", "outputs"],
             "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                            "id": {"type": "string"}, "outputs": {"type": "array", "items": tensor_out}}}
    tensor_in = {"type": "object", "required": ["name", "shape", "datatype", "data"],
                 "properties": {"name": {"type": "string", "enum": list(spec.features)},
                                "shape": {"type": "array", "items": {"type": "integer"}},
                                "datatype": {"type": "string", "enum": ["FP64", "FP32", "INT64", "INT32", "BYTES"]},
                                "data": {"type": "array"}, "parameters": {"type": "object"}}}
    target = spec.columns[spec.target]
    label = {"type": "number"} if regression else {"type": "string", **({"enum": [str(c) for c in target.allowed]}
                                                                       if target.allowed else {})}
    label_item = {"type": "object", "required": ["request_id", "label"],
                  "properties": {"request_id": {"type": "string", "minLength": 1,
                                                "description": "the X-Request-Id of the prediction"},
                                 "row": {"type": "integer", "minimum": 0, "default": 0,
                                         "description": "the instance's index in that request"},
                                 "label": label}}
    model_path = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": [spec.name]}}
    attribution = {"type": "object", "required": ["featureAttributions", "baselineOutputValue", "instanceOutputValue"],
                   "properties": {"featureAttributions": {"type": "object", "properties": {
                                      name: {"type": "number"} for name in spec.features}},
                                  "baselineOutputValue": {"type": "number"}, "instanceOutputValue": {"type": "number"},
                                  "approximationError": {"type": "number"},
                                  "method": {"type": "string", "enum": ["tree_shap", "linear"]},
                                  "outputDisplayName": {"type": "string"},
                                  "outputSpace": {"type": "string", "enum": ["log-odds", "logit"]}}}
    explain_ok = {"type": "object", "required": ["explanations", "predictions", "model_version"],
                  "properties": {**vertex_ok["properties"], "explanations": {"type": "array", "items": {
                      "type": "object", "properties": {"attributions": {"type": "array", "items": attribution}}}}}}
    explain_body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["instances"], "additionalProperties": False,
        "properties": {"instances": {"type": "array", "minItems": 1, "maxItems": min(max_instances, 100),
                                     "items": instance}, "parameters": {"type": "object"}}}}}}
    explain_route = {"post": {
        "summary": "Vertex AI explanation: exact attributions per declared feature (TreeSHAP for gradient "
                   "boosting, weights for linear models) that sum to the output minus the baseline; 400 for "
                   "other families", "requestBody": explain_body, "responses": _responses(explain_ok)}}
    return {
        "openapi": "3.0.3",
        "info": {"title": f"Tollgate predictor: {spec.name} v{version}", "version": str(version),
                 "description": spec.description or f"Predictions of {spec.target} ({spec.task})."},
        "paths": {
            "/predict": {"post": {
                "summary": "Vertex AI prediction: instances keyed by feature name",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["instances"], "additionalProperties": False,
                    "properties": {"instances": {"type": "array", "minItems": 1, "maxItems": max_instances,
                                                 "items": instance},
                                   "parameters": {"type": "object"}}}}}},
                "responses": _responses(vertex_ok)}},
            "/explain": explain_route,
            "/predict:explain": explain_route,
            "/v2/models/{name}/infer": {"post": {
                "summary": "Open Inference Protocol v2: one named input per feature",
                "parameters": [model_path],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["inputs"],
                    "properties": {"id": {"type": "string"},
                                   "inputs": {"type": "array", "minItems": 1, "items": tensor_in},
                                   "outputs": {"type": "array", "items": {"type": "object"}},
                                   "parameters": {"type": "object"}}}}}},
                "responses": {**_responses(v2_ok),
                              "404": {"description": "another model", **_ERROR_BODY}}}},
            "/feedback": {"post": {
                "summary": "ground truth for logged predictions, joined by the monitor",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    {"type": "object", "required": ["labels"],
                     "properties": {"labels": {"type": "array", "minItems": 1, "maxItems": max_instances,
                                               "items": label_item}}},
                    label_item]}}}},
                "responses": {
                    "202": {"description": "accepted onto the prediction log", "content": {"application/json": {
                        "schema": {"type": "object", "required": ["accepted", "model_version"],
                                   "properties": {"accepted": {"type": "integer"},
                                                  "model_version": {"type": "integer"}}}}}},
                    "400": {"description": "invalid labels: every problem, with its index", **_ERROR_BODY},
                    "413": {"description": "a body over the size limit", **_ERROR_BODY},
                    "503": {"description": "the model is not loaded, or the prediction log is off or full",
                            **_ERROR_BODY}}}},
            "/health": {"get": {"summary": "ready to predict (503 until the model is loaded)",
                                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
            "/v2/health/live": {"get": {"summary": "the process is up", "responses": {"200": {"description": "live"}}}},
            "/v2/health/ready": {"get": {"summary": "ready to predict",
                                         "responses": {"200": {"description": "ready"},
                                                       "503": {"description": "not ready"}}}},
            "/metadata": {"get": {"summary": "model version, metrics, trained-at, features with types",
                                  "responses": {"200": {"description": "metadata"},
                                                "503": {"description": "not ready"}}}},
        },
        "components": {"schemas": {"Error": _ERROR}},
    }
