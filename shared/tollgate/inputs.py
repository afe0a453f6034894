"""What the predictor accepts: instances against the dataset spec's features, feedback labels, and the request
ids it issues. Pure.

The spec's feature rules (:class:`Checker`) are applied to both request shapes, which become the same
:class:`Columns`: Vertex AI's ``{"instances": [{feature: value, ...}, ...]}`` here, and the Open Inference
Protocol's v2 tensors in services/predictor/oip.py, which calls the same column checks. Every problem is listed
with the instance index and the field, up to ``MAX_PROBLEMS``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from typing import Any

import numpy as np

from tollgate.prepared import Columns
from tollgate.spec import DatasetSpec

MAX_INSTANCES = 1000
MAX_PROBLEMS = 50
MAX_REQUEST_ID = 128   # characters of a request id a label may name

_NUMBERS = {float, int, type(None)}


class BadRequest(ValueError):
    """The request cannot be answered as sent; ``status`` is the HTTP status to answer with."""

    def __init__(self, problems: list[str], status: int = 400) -> None:
        if len(problems) > MAX_PROBLEMS:
            problems = problems[:MAX_PROBLEMS] + [f"... and {len(problems) - MAX_PROBLEMS} more problems"]
        super().__init__("; ".join(problems))
        self.problems = problems
        self.status = status


class Checker:
    """The spec's feature rules, compiled once per model."""

    def __init__(self, spec: DatasetSpec, max_instances: int = MAX_INSTANCES) -> None:
        self.spec = spec
        self.max_instances = max_instances
        self.numeric = [(name, spec.columns[name].nullable, spec.columns[name].min, spec.columns[name].max)
                        for name in spec.feature_lists.numeric]
        self.datetimes = [(name, spec.columns[name].nullable, spec.columns[name].min, spec.columns[name].max,
                           1000.0 if spec.columns[name].unit == "ms" else 1.0) for name in spec.feature_lists.datetime]
        self.categorical = [(name, spec.columns[name].nullable,
                             frozenset(spec.columns[name].allowed) if spec.columns[name].allowed else None)
                            for name in spec.feature_lists.categorical]
        self.known = frozenset(spec.features) | {spec.target} | frozenset(spec.id_columns)
        # What a request may hold, counted on its bytes before it is parsed: every key and array element of a
        # JSON body is followed by one `,` or `:`, and a full request has about 2 per feature of each instance;
        # twice that leaves room for separators inside string values. A body of 700,000 unknown keys (7 MB,
        # under the size limit) is refused before orjson builds it.
        self.max_separators = 2 * max_instances * (2 * len(self.known) + 4) + 1_024
        self.max_keys = len(self.known) + 8    # per instance: the features, the target, a few unknown ones

    def bounded(self, body: bytes) -> bytes:
        """``body`` if the JSON it holds is no larger than a full request can be; else BadRequest (413)."""
        separators = body.count(b",") + body.count(b":")
        if separators > self.max_separators:
            raise BadRequest([f"the body holds about {separators:,} JSON values and keys, more than a request of "
                              f"{self.max_instances} instances of {len(self.spec.features)} features can "
                              f"({self.max_separators:,}): split it, and send only the features"], status=413)
        return body

    # -- one value ---------------------------------------------------------------------------
    @staticmethod
    def number(where: str, value: Any, nullable: bool, low: float | None, high: float | None,
                problems: list[str]) -> float:
        if value is None:
            if not nullable:
                problems.append(f"{where}: required")
            return math.nan
        if type(value) is bool or not isinstance(value, (int, float)):
            problems.append(f"{where}: must be a finite number, got {value!r:.80}")
            return math.nan
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            problems.append(f"{where}: must be a finite number, got {value!r}")
            return math.nan
        if low is not None and value < low:
            problems.append(f"{where}: {value} is below the minimum {low}")
        elif high is not None and value > high:
            problems.append(f"{where}: {value} is above the maximum {high}")
        return value

    @staticmethod
    def moment(where: str, value: Any, nullable: bool, low: float | None, high: float | None, scale: float,
               problems: list[str]) -> float:
        """A datetime input: ISO-8601 text, or a Unix time in the column's unit; as Unix seconds."""
        from tollgate.spec import datetime_seconds

        if isinstance(value, str):
            seconds = datetime_seconds(value)
            if seconds is None:
                try:
                    seconds = float(value) / scale
                except ValueError:
                    problems.append(f"{where}: {value!r:.80} is not an ISO-8601 time or a Unix time")
                    return math.nan
            value = seconds
        elif type(value) is not bool and isinstance(value, (int, float)):
            value = value / scale
        return Checker.number(where, value, nullable, low, high, problems)

    @staticmethod
    def category(where: str, value: Any, nullable: bool, allowed: frozenset[str] | None,
                  problems: list[str]) -> Any:
        if value is None:
            if not nullable:
                problems.append(f"{where}: required")
            return None
        if not isinstance(value, str):
            problems.append(f"{where}: must be a string, got {value!r:.80}")
        elif allowed is not None and value not in allowed:
            problems.append(f"{where}: {value!r:.80} is not one of {', '.join(sorted(allowed))}")
        return value

    def count(self, n: int) -> None:
        if n == 0:
            raise BadRequest(["no instances: send at least one"])
        if n > self.max_instances:
            raise BadRequest([f"{n} instances, more than the limit of {self.max_instances} per request: "
                              "split the request"])

    # -- Vertex AI ---------------------------------------------------------------------------
    def instances(self, body: Any) -> Columns:
        """Check a ``{"instances": [{feature: value, ...}, ...]}`` body; every problem is listed."""
        if not isinstance(body, dict):
            raise BadRequest(["the body must be a JSON object with an `instances` list"])
        unexpected = set(body) - {"instances", "parameters"}
        instances = body.get("instances")
        if not isinstance(instances, list):
            raise BadRequest(["`instances` must be a list of objects keyed by feature name"]
                             + [f"{key}: unknown top-level field (expected instances, parameters)"
                                for key in sorted(unexpected)])
        if "parameters" in body and not isinstance(body["parameters"], dict):
            raise BadRequest(["`parameters` must be an object"])
        self.count(len(instances))
        problems: list[str] = [f"{key}: unknown top-level field (expected instances, parameters)"
                               for key in sorted(unexpected)]
        n = len(instances)
        numeric = np.empty((n, len(self.numeric) + len(self.datetimes)), dtype="float64")
        first_datetime = len(self.numeric)
        categorical: list[list[Any]] = [[None] * n for _ in self.categorical]
        known = self.known
        for i, inst in enumerate(instances):
            if type(inst) is not dict:
                problems.append(f"instances[{i}]: must be an object keyed by feature name, got {inst!r:.80}")
                continue
            if len(inst) > self.max_keys:
                problems.append(f"instances[{i}]: {len(inst)} fields, more than the {len(self.spec.features)} "
                                "features (and the target) an instance may have")
                continue
            if len(inst) > len(known) or not known.issuperset(inst):
                for key in inst:
                    if key not in known:
                        problems.append(f"instances[{i}].{str(key)[:80]}: unknown field "
                                        f"(features: {', '.join(self.spec.features)})")
            row = numeric[i]
            for j, (name, nullable, low, high) in enumerate(self.numeric):
                value = inst.get(name)
                if type(value) is float and low is not None and high is not None and low <= value <= high:
                    row[j] = value   # the common case, checked in one comparison
                else:
                    row[j] = self.number(f"instances[{i}].{name}", value, nullable, low, high, problems)
            for j, (name, nullable, low, high, scale) in enumerate(self.datetimes, start=first_datetime):
                row[j] = self.moment(f"instances[{i}].{name}", inst.get(name), nullable, low, high, scale, problems)
            for j, (name, nullable, allowed) in enumerate(self.categorical):
                value = inst.get(name)
                if type(value) is str and (allowed is None or value in allowed):
                    categorical[j][i] = value
                else:
                    categorical[j][i] = self.category(f"instances[{i}].{name}", value, nullable, allowed, problems)
        if problems:
            raise BadRequest(problems)
        ids = {name: [None if type(inst.get(name)) not in (str, int, float) else str(inst.get(name))[:200]
                      for inst in instances] for name in self.spec.id_columns}
        return Columns(numeric, categorical, ids)

    def number_column(self, name: str, values: Any, nullable: bool, low: float | None, high: float | None,
                       problems: list[str]) -> np.ndarray:
        """One numeric input checked as a whole (NaN or null = missing); every bad index is listed."""
        column: np.ndarray | None = None
        if isinstance(values, np.ndarray):
            column = values.astype("float64")
        elif set(map(type, values)) <= _NUMBERS:
            try:
                column = np.asarray(values, dtype="float64")
            except OverflowError:
                column = None
        if column is None:   # strings, booleans, huge integers: one message per value
            return np.asarray([self.number(f"instances[{i}].{name}",
                                            None if isinstance(v, float) and math.isnan(v) else v,
                                            nullable, low, high, problems) for i, v in enumerate(values)])
        with np.errstate(invalid="ignore"):
            fine = np.isfinite(column)
            if low is not None:
                fine &= column >= low
            if high is not None:
                fine &= column <= high
            if nullable:
                fine |= np.isnan(column)
        if fine.all():
            return column
        missing = np.isnan(column)
        bad = [(i, "required") for i in np.flatnonzero(missing)] if not nullable else []
        bad += [(i, f"must be a finite number, got {column[i]!r}") for i in np.flatnonzero(np.isinf(column))]
        with np.errstate(invalid="ignore"):
            if low is not None:
                bad += [(i, f"{column[i]:g} is below the minimum {low}") for i in np.flatnonzero(column < low)]
            if high is not None:
                bad += [(i, f"{column[i]:g} is above the maximum {high}")
                        for i in np.flatnonzero((column > high) & np.isfinite(column))]
        problems += [f"instances[{i}].{name}: {why}" for i, why in sorted(bad)]
        return column


class RequestIds:
    """Request ids the predictor issues and later recognises: ``<nonce>.<HMAC-SHA256(key, nonce)>``.

    Every response carries one in ``X-Request-Id`` (a caller's own header is not taken as the id). Labels
    sent to ``POST /feedback`` are accepted only for ids that verify, so a caller cannot attach evidence to
    requests the predictor never answered. The key is the deployment's (``TOLLGATE_FEEDBACK_KEY``: a
    Secret Manager secret on GCP, made by `tollgate up` locally), shared by every revision of a dataset."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the request-id key must have at least 16 bytes")
        self.key = key

    def _mac(self, nonce: str) -> str:
        return hmac.new(self.key, nonce.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self) -> str:
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._mac(nonce)}"

    def verify(self, request_id: str) -> bool:
        nonce, dot, mac = request_id.partition(".")
        return bool(dot) and len(nonce) == 32 and hmac.compare_digest(mac, self._mac(nonce))


def feedback_labels(body: Any, spec: DatasetSpec, classes: list[str] | None, ids: RequestIds,
                    max_labels: int = MAX_INSTANCES) -> list[tuple[str, int, Any]]:
    """(request id, row, label) triples from a ``POST /feedback`` body; every problem is listed.

    Each label must name a request id this deployment issued and a row such a request can have (below the
    instances limit); a regression label must be a finite number within the target column's declared
    range, a classification label one of the model's classes."""
    items = body.get("labels", [body]) if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise BadRequest(['the body must be {"labels": [{"request_id": ..., "row": 0, "label": ...}, ...]} '
                          'or one such label object'])
    if len(items) > max_labels:
        raise BadRequest([f"{len(items)} labels in one request; at most {max_labels}"])
    target = spec.columns[spec.target]
    out, problems = [], []
    for i, item in enumerate(items):
        where = f"labels[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object")
            continue
        request_id, row, label = item.get("request_id"), item.get("row", 0), item.get("label")
        if not isinstance(request_id, str) or not request_id:
            problems.append(f"{where}.request_id: a non-empty string (the X-Request-Id of the prediction) is required")
        elif len(request_id) > MAX_REQUEST_ID or not ids.verify(request_id):
            problems.append(f"{where}.request_id: {request_id[:80]!r} is not a request id this predictor issued "
                            "(send the X-Request-Id of the prediction's response)")
        if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < max_labels:
            problems.append(f"{where}.row: {row!r} is not a row index of a request (an integer from 0 to "
                            f"{max_labels - 1})")
        if spec.task == "regression":
            if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
                problems.append(f"{where}.label: {label!r:.80} is not a finite number")
                continue
            label = float(label)
            if (target.min is not None and label < target.min) or (target.max is not None and label > target.max):
                low, high = (-math.inf if target.min is None else target.min), (math.inf if target.max is None
                                                                                 else target.max)
                problems.append(f"{where}.label: {label} is outside the range [{low:g}, {high:g}] the spec "
                                f"declares for {spec.target}")
                continue
        else:
            if label is None or isinstance(label, (dict, list)) or (classes and str(label) not in classes):
                problems.append(f"{where}.label: {label!r:.80} is not one of the classes {classes}")
                continue
            label = str(label)
        out.append((request_id, row, label))
    if problems:
        raise BadRequest(problems)
    return out
