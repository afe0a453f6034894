"""The Open Inference Protocol v2 (REST), as KServe, Triton and MLServer speak it (``tritonclient.http`` works
unchanged): health, server and model metadata, and ``POST /v2/models/<dataset>[/versions/<N>]/infer`` with one
named input per feature — JSON data or the binary tensor extension (``Inference-Header-Content-Length``) — and
the outputs ``predict`` (and ``predict_proba``)."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
from flask import Blueprint, Response, g, request

from services.predictor.config import PredictorConfig
from services.predictor.metrics import Metrics
from services.predictor.model import Holder, Loaded
from services.predictor.web import error, json_response, log_prediction, needs_model, parse, readiness, run_model
from tollgate.inputs import BadRequest, Checker
from tollgate.prepared import Columns

# v2 datatypes of numeric inputs → their little-endian numpy dtype (binary tensor extension)
DATATYPES = {"FP64": "<f8", "FP32": "<f4", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4", "INT16": "<i2",
             "INT8": "<i1", "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2", "UINT8": "<u1"}


def tensors(checker: Checker, body: Any, binary: bytes = b"") -> Columns:
    """Decode and check a v2 ``inputs`` body against the spec's features (``checker``): one named input per
    feature, all of the same length, JSON ``data`` or the binary tensor extension; every problem listed."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise BadRequest(["the body must be a JSON object with a non-empty `inputs` list "
                          "(one input per feature, named after it)"])
    problems: list[str] = []
    data: dict[str, list[Any] | np.ndarray] = {}
    numeric_names = {name for name, *_ in checker.numeric}
    offset = 0
    for k, tensor in enumerate(body["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            problems.append(f"inputs[{k}]: must be an object with a `name`, `shape`, `datatype` and `data`")
            continue
        name, datatype = tensor["name"], tensor.get("datatype")
        where = f"inputs[{k}] ({name})"
        if not isinstance(datatype, str):
            problems.append(f"{where}: `datatype` must be a string such as FP64 or BYTES")
            continue
        parameters = tensor.get("parameters") or {}
        if not isinstance(parameters, dict):
            problems.append(f"{where}: `parameters` must be an object")
            continue
        size = parameters.get("binary_data_size")
        if name not in checker.known:
            problems.append(f"{where}: unknown input (features: {', '.join(checker.spec.features)})")
        elif name in data:
            problems.append(f"{where}: given more than once")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise BadRequest([f"{where}: binary_data_size {size!r} does not fit the {len(binary)} "
                                  "bytes after the JSON header"])
            chunk, offset = binary[offset:offset + size], offset + size
            if name not in checker.known:
                continue
            try:
                values: Any = _decode_binary(chunk, datatype)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
        else:
            if name not in checker.known:
                continue
            values = tensor.get("data")
            if not isinstance(values, list):
                problems.append(f"{where}: `data` must be a list")
                continue
            if values and isinstance(values[0], list):
                values = [v for row in values for v in (row if isinstance(row, list) else [row])]
        shape = tensor.get("shape")
        if not (isinstance(shape, list) and all(isinstance(d, int) for d in shape)
                and math.prod(shape) == len(values) and shape and shape[0] == len(values)):
            problems.append(f"{where}: shape {shape!r} does not match {len(values)} values "
                            f"(expected [{len(values)}] or [{len(values)}, 1])")
        if name in numeric_names and datatype not in DATATYPES:
            problems.append(f"{where}: datatype must be one of {', '.join(DATATYPES)}, got {datatype!r}")
        elif name in checker.spec.feature_lists.categorical and datatype != "BYTES":
            problems.append(f"{where}: datatype must be BYTES, got {datatype!r}")
        data[name] = values
    missing = [name for name in checker.spec.features if name not in data]
    problems += [f"inputs: `{name}` is missing (one input per feature)" for name in missing]
    if problems:
        raise BadRequest(problems)
    lengths = {len(v) for v in data.values()}
    if len(lengths) != 1:
        raise BadRequest([f"inputs have different lengths: {sorted(lengths)}"])
    n = lengths.pop()
    checker.count(n)
    numeric = np.empty((n, len(checker.numeric) + len(checker.datetimes)), dtype="float64")
    for j, (name, nullable, low, high) in enumerate(checker.numeric):
        numeric[:, j] = checker.number_column(name, data[name], nullable, low, high, problems)
    for j, (name, nullable, low, high, scale) in enumerate(checker.datetimes, start=len(checker.numeric)):
        values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in data[name]]
        numeric[:, j] = [checker.moment(f"instances[{i}].{name}", v, nullable, low, high, scale, problems)
                         for i, v in enumerate(values)]
    categorical = []
    for name, nullable, allowed in checker.categorical:
        values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in data[name]]
        if not (all(type(v) is str for v in values) and (allowed is None or allowed.issuperset(values))):
            values = [checker.category(f"instances[{i}].{name}", v, nullable, allowed, problems)
                      for i, v in enumerate(values)]
        categorical.append(values)
    if problems:
        raise BadRequest(problems)
    return Columns(numeric, categorical)


def _decode_binary(chunk: bytes, datatype: Any) -> Any:
    """One input of the binary tensor extension: little-endian values, or length-prefixed BYTES."""
    if datatype in DATATYPES:
        dtype = np.dtype(DATATYPES[datatype])
        if len(chunk) % dtype.itemsize:
            raise ValueError(f"{len(chunk)} bytes is not a whole number of {datatype} values")
        return np.frombuffer(chunk, dtype=dtype)
    if datatype == "BYTES":
        values, offset = [], 0
        while offset < len(chunk):
            if offset + 4 > len(chunk):
                raise ValueError("truncated BYTES element length")
            (length,) = struct.unpack_from("<I", chunk, offset)
            offset += 4
            if offset + length > len(chunk):
                raise ValueError("truncated BYTES element")
            values.append(chunk[offset:offset + length])
            offset += length
        return values
    raise ValueError(f"unsupported datatype {datatype!r}")


def blueprint(config: PredictorConfig, holder: Holder, metrics: Metrics) -> Blueprint:
    routes = Blueprint("oip", __name__)
    dataset, version = config.dataset, config.model_version

    def wrong_model(name: str, model_version: str | None) -> Response | None:
        if name != dataset:
            return error(404, f"model {name!r} is not served here; this revision serves {dataset!r}")
        if model_version is not None and model_version != str(version):
            return error(404, f"version {model_version} of {name} is not served here; this revision serves "
                              f"version {version}")
        return None

    @routes.get("/v2/health/ready")
    def ready() -> Response:
        return readiness(holder)

    @routes.get("/v2/health/live")
    def live() -> Response:
        return json_response({"live": True})

    @routes.get("/v2")
    def server() -> Response:
        return json_response({"name": "tollgate-predictor", "version": config.code_version,
                              "extensions": ["binary_tensor_data"]})

    @routes.post("/v2/models/<name>/infer", endpoint="infer")
    @routes.post("/v2/models/<name>/versions/<model_version>/infer", endpoint="infer")
    @needs_model(holder)
    def infer(loaded: Loaded, name: str, model_version: str | None = None) -> Response:
        wrong = wrong_model(name, model_version)
        if wrong is not None:
            return wrong
        data = request.get_data()
        header_length = request.headers.get("Inference-Header-Content-Length")
        parsed: dict[str, Any] = {}

        def decode() -> Columns:
            binary = b""
            if header_length is None:
                body = parse(loaded.checker.bounded(data))
            else:
                try:
                    length = int(header_length)
                except ValueError:
                    raise BadRequest(["Inference-Header-Content-Length must be an integer"]) from None
                if not 0 < length <= len(data):
                    raise BadRequest([f"Inference-Header-Content-Length {length} is outside the {len(data)}-byte "
                                      "body"])
                body, binary = parse(loaded.checker.bounded(data[:length])), data[length:]
            columns = tensors(loaded.checker, body, binary)
            parsed.update(body)
            return columns

        result = run_model(loaded, metrics, decode)
        if isinstance(result, Response):
            return result
        columns, outputs = result
        n, regression = len(columns), loaded.spec.task == "regression"
        requested = parsed.get("outputs") if isinstance(parsed.get("outputs"), list) else []
        wanted = {o.get("name") for o in requested if isinstance(o, dict)} or None
        labels = outputs.predictions
        out = [{"name": "predict", "shape": [n], "datatype": "FP64" if regression else "BYTES",
                "data": labels if regression else [str(v) for v in labels]}]
        if outputs.probabilities is not None:
            out.append({"name": "predict_proba", "shape": list(outputs.probabilities.shape), "datatype": "FP64",
                        "data": outputs.probabilities.ravel(), "parameters": {"classes": loaded.classes}})
        if wanted:
            unknown = wanted - {o["name"] for o in out}
            if unknown:
                return error(400, f"unknown outputs {sorted(map(str, unknown))}: this model has "
                                  f"{', '.join(o['name'] for o in out)}")
            out = [o for o in out if o["name"] in wanted]
        log_prediction(loaded, columns, outputs)
        return json_response({"model_name": dataset, "model_version": str(version),
                              "id": str(parsed.get("id") or g.request_id), "outputs": out})

    @routes.get("/v2/models/<name>")
    @routes.get("/v2/models/<name>/versions/<model_version>")
    def model_metadata(name: str, model_version: str | None = None) -> Response:
        wrong = wrong_model(name, model_version)
        if wrong is not None:
            return wrong
        loaded = holder.loaded
        if loaded is None:
            return error(503, holder.not_ready())
        spec = loaded.spec
        inputs = [{"name": n, "datatype": "FP64" if n in spec.input_numeric else "BYTES", "shape": [-1]}
                  for n in spec.features]
        outputs = [{"name": "predict", "datatype": "FP64" if spec.task == "regression" else "BYTES", "shape": [-1]}]
        if spec.task == "classification":
            outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(loaded.classes or [])]})
        return json_response({"name": dataset, "versions": [str(version)], "platform": "scikit-learn",
                              "inputs": inputs, "outputs": outputs})

    @routes.get("/v2/models/<name>/ready")
    @routes.get("/v2/models/<name>/versions/<model_version>/ready")
    def model_ready(name: str, model_version: str | None = None) -> Response:
        return wrong_model(name, model_version) or readiness(holder)

    return routes
