"""Dataset specs: the declaration that drives validation, training, evaluation and the policy.

The spec is a tree of pydantic models, one per YAML section, so that one file answers "what can a spec say?"
(the rule language itself is tollgate.rules): every key, its type, its default and its checks, and the
description the spec reference in the docs is generated from (``docs/hooks.py``). Loading refuses what it
does not know: an unknown key gets a "did you mean", and each problem names its YAML path and line.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import types
import typing
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tollgate import rules as rule_language
from tollgate import yamlload

TASKS = ("regression", "classification")
COLUMN_TYPES = ("float", "int", "string", "bool", "datetime")
ROLES = ("data", "id", "ignore")
DATETIME_PARTS = ("year", "month", "day", "day_of_week", "hour", "minute", "day_of_year", "elapsed_days")
DEFAULT_DATETIME_PARTS = ("year", "month", "day", "day_of_week", "hour")   # elapsed_days (a trend) on request
ACTIONS = ("drop", "reject")
SOFT_ACTIONS = ("report", "drop", "reject")   # rules and outlier checks may also only report
OUTLIER_METHODS = ("iqr", "mad")
ESTIMATORS = ("hist_gradient_boosting", "gradient_boosting", "random_forest", "decision_tree", "linear",
              "svm", "knn", "naive_bayes")
# metric name → True if higher is better
METRICS = {"r2": True, "rmse": False, "mae": False,
           "accuracy": True, "f1": True, "roc_auc": True, "log_loss": False}
TASK_METRICS = {"regression": ("r2", "rmse", "mae"), "classification": ("accuracy", "f1", "roc_auc", "log_loss")}
ESTIMATOR_TASKS = {"naive_bayes": ("classification",)}

Task = Literal["regression", "classification"]
ColumnType = Literal["float", "int", "string", "bool", "datetime"]
Role = Literal["data", "id", "ignore"]
DatetimePart = Literal["year", "month", "day", "day_of_week", "hour", "minute", "day_of_year", "elapsed_days"]
Action = Literal["drop", "reject"]
SoftAction = Literal["report", "drop", "reject"]
Estimator = Literal["hist_gradient_boosting", "gradient_boosting", "random_forest", "decision_tree", "linear",
                    "svm", "knn", "naive_bayes"]
Metric = Literal["r2", "rmse", "mae", "accuracy", "f1", "roc_auc", "log_loss"]


class SpecError(ValueError):
    """The dataset spec is malformed; each problem names its YAML path (and line, when loaded from text) and
    what is expected."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


# A dataset's name is its folder under incoming/, its spec's object name, its Firestore document and, with
# `_` turned into `-`, its Cloud Run service `predictor-<name>` whose traffic tags are `v<version>`. Cloud Run
# allows 46 characters for a service name and a tag together: `predictor-` (10) + the name (30) + `v` and a
# version of up to 5 digits (6). Underscores, never doubled, map one-to-one onto hyphens.
DATASET_NAME = re.compile(r"(?=.{1,30}\Z)[a-z](?:_?[a-z0-9])*")
DATASET_NAME_RULE = ("1 to 30 characters: lowercase letters, digits and single underscores, starting with a "
                     "letter and not ending with an underscore (e.g. chicago_taxi)")
MAX_LINE_BYTES = 1 * 2**20     # default longest line of a CSV batch
ID_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")   # monitoring.id_columns: JSON paths in SQL
MAX_COLUMNS = 1_000            # default most columns a batch's header may have


def object_name(dataset: str) -> str:
    """Where a dataset's spec lives in the bucket (what `tollgate spec push` writes, ingest reads)."""
    return f"specs/{dataset}.yaml"


def check_dataset_name(name: Any) -> str:
    """``name`` if it is a valid dataset name; otherwise a :class:`SpecError` that gives the pattern."""
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise SpecError(f"{name!r} is not a valid dataset name: {DATASET_NAME_RULE}; it names the "
                        "incoming/<dataset>/ folder and the Cloud Run service predictor-<dataset>")
    return name


class Section(BaseModel):
    """A part of the spec: unknown keys are refused, values are read-only once loaded."""
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Outliers(Section):
    """Robust per-feature outlier fences, computed on each batch: ``iqr`` flags values beyond
    Q1 - k·IQR and Q3 + k·IQR; ``mad`` flags |x - median| > k · 1.4826 · MAD. ``outliers: true`` takes the
    defaults."""
    method: Literal["iqr", "mad"] = Field("iqr", description="`iqr` (interquartile range) or `mad` (median "
                                                              "absolute deviation)")
    k: float = Field(3.0, gt=0, description="How many spreads from the middle a value may lie")
    on_fail: SoftAction = Field("report", description="`report` outliers, `drop` their rows or `reject` the batch")


class Column(Section):
    """A column a batch may carry. A failed check drops the offending rows or rejects the batch (``on_fail``).

    A ``datetime`` column holds ISO-8601 times or dates (``2013-01-01T06:00:00Z``, ``2013-01-01``) or Unix times
    (numbers, in ``unit`` seconds or milliseconds); Tollgate keeps it as Unix seconds (UTC) and, listed under
    ``features.datetime``, the model learns from its ``parts`` (one transformer, the same in training and
    serving). ``role: id`` marks an identifier: kept in the data and the prediction log, never learned from;
    ``role: ignore`` a column a batch may carry that is left out."""
    name: str = Field("", exclude=True, json_schema_extra={"hidden": True})   # the key under `columns`
    type: ColumnType = Field("float", description="`float`, `int`, `string`, `bool` or `datetime`; values that do "
                                                  "not parse as it fail the column")
    role: Role = Field("data", description="`data`; `id`: an identifier, kept but never a feature; `ignore`: "
                                           "left out of the curated data")
    unit: Literal["s", "ms"] | None = Field(None, description="datetime columns holding numbers: Unix `s` "
                                                              "(default) or `ms`")
    parts: tuple[DatetimePart, ...] = Field(DEFAULT_DATETIME_PARTS, description="What the model learns from a "
                                            "datetime feature: " + ", ".join(f"`{p}`" for p in DATETIME_PARTS))
    cyclical: bool = Field(False, description="datetime features: month, day of week and hour also as sine and "
                                              "cosine (so December is next to January)")
    encoding: Literal["auto", "one_hot", "codes", "target"] = Field(
        "auto", description="Categorical features: `auto` (codes for gradient boosting, one-hot for the others), "
                            "`one_hot` (the `model.max_categories` most frequent values each a column, the rest "
                            "shared), `codes` (one column of codes), or `target` (scikit-learn's cross-fitted "
                            "TargetEncoder: one number per category, any width)")
    required: bool = Field(True, description="A batch without this column is rejected")
    nullable: bool = Field(True, description="Empty values are allowed")
    min: float | None = Field(None, description="Smallest allowed value (numeric columns; a datetime's as ISO "
                                                "text or Unix seconds)")
    max: float | None = Field(None, description="Largest allowed value (numeric columns; a datetime's as ISO text "
                                                "or Unix seconds)")
    allowed: tuple[Union[bool, int, float, str], ...] | None = Field(
        None, description="The only values allowed, written as the column's type (e.g. `[0, 1, 2]` for an int "
                          "label, `[Cash, Card]` for a string)")
    unique: bool = Field(False, description="No value may repeat within a batch")
    outliers: Outliers | None = Field(None, description="Robust outlier fences (numeric columns); `true` for "
                                                        "the defaults")
    on_fail: Action = Field("drop", description="`drop` the failing rows or `reject` the whole batch")

    @field_validator("outliers", mode="before")
    @classmethod
    def _outliers_flag(cls, value: Any) -> Any:
        return {} if value is True else None if value is False else value

    @field_validator("min", "max", mode="before")
    @classmethod
    def _datetime_bound(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("type") == "datetime" and isinstance(value, (str, date)):
            seconds = datetime_seconds(value)
            if seconds is None:
                raise ValueError(f"{value!r} is not an ISO-8601 date or time")
            return seconds
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        numeric = self.type in ("float", "int", "datetime")
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError(f"min and max apply to numeric and datetime columns; this one is of type {self.type}")
        if self.unit is not None and self.type != "datetime":
            raise ValueError("unit applies to datetime columns")
        if self.type == "datetime" and (self.allowed is not None or self.outliers is not None):
            raise ValueError("a datetime column takes min and max, not allowed values or outlier fences")
        if self.role != "data" and self.outliers is not None:
            raise ValueError(f"a column with role {self.role} is not checked for outliers")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is greater than max ({self.max:g})")
        if self.outliers is not None and not numeric:
            raise ValueError("outlier fences need a numeric column (type float or int)")
        return self

    @field_validator("allowed")
    @classmethod
    def _allowed_typed(cls, allowed: tuple[Any, ...] | None, info: ValidationInfo) -> tuple[Any, ...] | None:
        if allowed is None:
            return None
        if not allowed:
            raise ValueError("allowed lists no value; leave it out to allow any")
        return tuple(_typed(v, info.data.get("type", "float")) for v in allowed)


def datetime_seconds(value: Any) -> float | None:
    """An ISO-8601 date or time (naive ones are UTC) as Unix seconds; None when it is not one."""
    import datetime as dt

    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _typed(value: Any, kind: str) -> Any:
    """An ``allowed`` value as its column's type, as the validator reads the column's values."""
    if kind == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"allowed value {value!r} is not of the column's type {kind}")


class Rule(Section):
    """A cross-field rule every row must satisfy, in the closed rule language: comparisons, arithmetic,
    ``and``/``or``/``not``, ``in``, ``isnull(c)``/``notnull(c)`` and ``abs``, over the declared columns."""
    name: str = Field(min_length=1, description="Names the check in reports")
    expr: str = Field(min_length=1, description="e.g. `fare <= 100 or trip_miles >= 5`")
    description: str = Field("", description="Why the rule holds, shown with its failures")
    on_fail: SoftAction = Field("drop", description="`report`, `drop` the failing rows or `reject` the batch")
    _expression: rule_language.Expression | None = PrivateAttr(default=None)

    @property
    def expression(self) -> rule_language.Expression | None:
        """The parsed rule (set when the spec is loaded, against its columns)."""
        return self._expression


class Thresholds(Section):
    warn: float = Field(gt=0, description="Distance from which a feature's drift is a warning")
    severe: float = Field(gt=0, description="Distance from which it is severe")

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.warn > self.severe:
            raise ValueError(f"warn ({self.warn:g}) must not exceed severe ({self.severe:g})")
        return self


class Drift(Section):
    """When a batch counts as drifted from the champion's training data.

    A feature drifts when its test is significant after Benjamini–Hochberg control of the false
    discovery rate across features *and* its distance reaches a threshold (PSI for numeric
    features, Jensen–Shannon distance for categorical ones). Significance accounts for sample
    size; the distance keeps a huge batch from flagging a trivial shift.
    """
    fdr: float = Field(0.05, gt=0, lt=1, description="False discovery rate of the per-feature tests")
    psi: Thresholds = Field(Thresholds(warn=0.1, severe=0.25), description="Population stability index "
                                                                           "thresholds (numeric features)")
    js: Thresholds = Field(Thresholds(warn=0.1, severe=0.2), description="Jensen–Shannon distance thresholds "
                                                                        "(categorical features), at most 1")
    sample_size: int = Field(20_000, ge=100, description="Rows sampled per batch for the tests")
    min_rows: int = Field(200, ge=1, description="Fewer rows in a batch or a window of live requests (or values of a "
                                                 "feature) give no verdict: not enough data, never an alert or a "
                                                 "retraining")
    exclude: tuple[str, ...] = Field((), description="Columns not judged, e.g. calendar features that shift "
                                                     "by design between batches")

    @field_validator("js")
    @classmethod
    def _js_at_most_one(cls, value: Thresholds) -> Thresholds:
        if value.severe > 1:
            raise ValueError("Jensen–Shannon distances are at most 1")
        return value

    @property
    def psi_warn(self) -> float:
        return self.psi.warn

    @property
    def psi_severe(self) -> float:
        return self.psi.severe

    @property
    def js_warn(self) -> float:
        return self.js.warn

    @property
    def js_severe(self) -> float:
        return self.js.severe


class Range(Section):
    """One hyperparameter's range for an Optuna search: numbers from ``low`` to ``high`` (``log``: on a log scale;
    ``integer``: whole numbers), or one of ``choices``."""
    low: float | None = Field(None, description="Smallest value")
    high: float | None = Field(None, description="Largest value")
    log: bool = Field(False, description="Sample on a log scale")
    integer: bool = Field(False, description="Whole numbers only")
    choices: tuple[Union[str, float, bool, None], ...] | None = Field(None, description="The values to choose from")

    @model_validator(mode="after")
    def _bounded(self) -> Range:
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices lists no value")
            return self
        if self.low is None or self.high is None or self.low > self.high:
            raise ValueError("a range needs low <= high (or choices)")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class Search(Section):
    """A hyperparameter search by cross-validation, its candidates spread over the tasks of one trainer execution
    (CLOUD_RUN_TASK_INDEX / CLOUD_RUN_TASK_COUNT): a ``grid`` of every combination, or ``optuna``: Optuna's TPE
    sampler (seeded: the same data and seed give the same model) over ``space`` (default: the family's), ``trials``
    in all, each pruned when its first folds already trail the others'."""
    method: Literal["grid", "optuna"] = Field("grid", description="`grid` (every combination) or `optuna` (TPE)")
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] | None = Field(
        None, description="Grid: parameter name → the values to try; at most 200 combinations")
    space: dict[str, Range] | None = Field(None, description="Optuna: parameter name → its range (default: a space "
                                                             "for the model family)")
    trials: int = Field(20, ge=1, le=500, description="Optuna: trials in all, over the tasks")
    tasks: int = Field(1, ge=1, le=20, description="Cloud Run tasks the candidates are spread over")
    folds: int = Field(3, ge=2, le=10, description="Cross-validation folds")

    @model_validator(mode="after")
    def _bounded(self) -> Search:
        if self.method == "grid":
            if not self.grid:
                raise ValueError("a grid search needs grid: {param: [values]} (or method: optuna)")
            size = 1
            for values in self.grid.values():
                size *= len(values)
            if size > 200:
                raise ValueError(f"grid: {size} candidates; at most 200")
        elif self.grid:
            raise ValueError("an optuna search takes a space (or its family's default), not a grid")
        return self

    @property
    def sorted_grid(self) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        """The grid in a fixed order (names sorted)."""
        return tuple((name, tuple((self.grid or {})[name])) for name in sorted(self.grid or {}))


class Features(Section):
    """The model's inputs; at least one, none of them the target or an identifier."""
    numeric: tuple[str, ...] = Field((), description="Numeric features (float, int or bool columns)")
    categorical: tuple[str, ...] = Field((), description="Categorical features")
    datetime: tuple[str, ...] = Field((), description="Datetime features: the model learns from each one's "
                                                      "`parts` (year, month, day of week, hour, time elapsed, ...)")


class Model(Section):
    estimator: Estimator = Field("hist_gradient_boosting", description="The scikit-learn model family: "
                                 + ", ".join(f"`{e}`" for e in ESTIMATORS))
    max_categories: int = Field(64, ge=2, le=10_000, description="Most columns (or codes) one categorical feature "
                                "becomes: its most frequent values, the rest sharing one (values seen fewer than 5 "
                                "times always do)")
    params: dict[str, Any] = Field({}, description="Keyword arguments of the estimator (e.g. `max_iter: 200`)")
    search: Search | None = Field(None, description="A cross-validated search over params (grid or Optuna)")
    tune: Literal["auto", "off"] = Field("auto", description="Without a search: `auto` tunes gradient boosting a "
                                         "little (an Optuna search of 12 trials) when the window has at least "
                                         "10,000 rows, where it pays for itself; `off` never")


class Training(Section):
    window: Literal["all", "last_n", "days"] = Field("all", description="Which curated batches train: `all`, the "
                                                     "`last_n` newest, or those of the last `days`")
    last_n: int = Field(0, ge=0, description="Batches for `window: last_n`")
    days: float = Field(0.0, ge=0, description="Days for `window: days` (needs `time_column`)")
    max_rows: int = Field(2_000_000, gt=0, description="When the window holds more rows, a seeded sample of "
                                                       "this many is trained on")
    seed: int = Field(42, description="Seed of the model and the sample")


class Evaluation(Section):
    primary_metric: Metric | None = Field(None, description="What the policy compares: r2, rmse, mae "
                                          "(regression; default r2); accuracy, f1, roc_auc, log_loss "
                                          "(classification; default accuracy)")
    holdout_fraction: float = Field(0.3, ge=0.05, le=0.9, description="Share of the newest batch held out to "
                                                                       "score both models on")
    bootstrap_resamples: int = Field(1000, ge=1, le=100_000, description="Resamples of the paired bootstrap")
    seed: int = Field(42, description="Seed of the holdout and the bootstrap")
    slices: tuple[str, ...] = Field((), description="Columns to report metrics per value (or quartile) of")


class Policy(Section):
    """When a challenger replaces the champion without a person."""
    threshold: float = Field(description="The primary metric a model must reach to serve")
    margin: float = Field(0.0, description="By how much the challenger must beat the champion (negative: how much "
                                           "worse it may be, e.g. to refresh a model on newer data)")
    confidence: float = Field(0.95, ge=0.5, lt=1, description="Of the paired bootstrap interval of "
                                                              "(challenger - champion)")
    min_holdout_rows: int = Field(30, ge=1, description="Fewer held-out rows cannot tell models apart: a "
                                                        "person decides")


class Deployment(Section):
    """How a promotion reaches traffic: at once, or as a canary taking ``canary_percent`` of the
    requests until `tollgate canary promote` (or the monitor) gives it 100%; and the size and scaling of the
    predictor's revision each promotion makes (left out: the deployment's defaults, terraform's)."""
    canary_percent: int = Field(0, ge=0, le=99, description="0: no canary")
    cpu: str | None = Field(None, pattern=r"^(\d+(\.\d+)?|\d+m)$", description="CPUs per instance (`1`, `2`, "
                                                                                 "`500m`)")
    memory: str | None = Field(None, pattern=r"^\d+(Mi|Gi)$", description="Memory per instance (`512Mi`, `2Gi`)")
    min_instances: int | None = Field(None, ge=0, le=100, description="Instances kept warm")
    max_instances: int | None = Field(None, ge=1, le=1000, description="Most instances under load")
    concurrency: int | None = Field(None, ge=1, le=1000, description="Requests one instance serves at once")

    @model_validator(mode="after")
    def _scaling(self) -> Deployment:
        if self.min_instances is not None and self.max_instances is not None and self.min_instances > \
                self.max_instances:
            raise ValueError(f"min_instances ({self.min_instances}) is above max_instances ({self.max_instances})")
        return self

    def sizing(self) -> dict[str, Any]:
        """What a new predictor revision is given (only what the spec sets)."""
        return {k: getattr(self, k) for k in ("cpu", "memory", "min_instances", "max_instances", "concurrency")
                if getattr(self, k) is not None}


class Review(Section):
    """Human review: a pending review expires (a recorded outcome; the champion stays) after this long."""
    expire_after_hours: float = Field(72.0, gt=0, description="Hours a pending review waits")


class Monitoring(Section):
    """What the monitor judges on each window of live traffic (``monitoring:`` in the spec).

    Traffic (volume, errors, latency, drift) is judged over the last ``window_minutes``; realised
    metrics over the labelled predictions of the last ``label_window_hours`` (labels come late).
    Canaries are promoted with at least ``canary_min_requests`` requests when not worse than the stable
    version, and rolled back when worse (error rate, p99 latency above ``canary_latency_floor_ms``, or a
    realised metric lower by more than ``canary_max_metric_drop`` with the policy's confidence).
    """
    window_minutes: float = Field(60.0, gt=0, description="The sliding window of live traffic judged per tick")
    label_window_hours: float = Field(168.0, gt=0, description="Labelled predictions of this long give the "
                                                               "realised metric")
    min_labels: int = Field(30, gt=0, description="Labelled predictions a version needs to be judged")
    max_error_rate: float = Field(0.01, ge=0, description="SLO: share of 5xx prediction requests")
    max_p99_ms: float = Field(1000.0, gt=0, description="SLO: p99 latency inside the predictor")
    decay_below: float | None = Field(None, description="A realised primary metric whose interval lies wholly "
                                                        "below this is decay (default: policy.threshold)")
    retrain_cooldown_hours: float = Field(24.0, ge=0, description="One retraining request per dataset in this "
                                                                  "time")
    alert_cooldown_minutes: float = Field(60.0, ge=0, description="One alert per version and kind in this time")
    canary_min_requests: int = Field(200, gt=0, description="Requests on each version before a canary verdict")
    canary_max_error_increase: float = Field(0.01, ge=0, description="A canary's error rate higher by this is "
                                                                     "rolled back")
    canary_max_latency_ratio: float = Field(2.0, gt=0, description="A canary's p99 this many times the stable "
                                                                   "one's is rolled back")
    canary_latency_floor_ms: float = Field(50.0, ge=0, description="p99 latencies below this are never compared")
    canary_max_metric_drop: float = Field(0.02, ge=0, description="A canary's realised metric lower by more than "
                                                                  "this is rolled back")
    id_columns: tuple[str, ...] = Field((), description="Features labels are joined on (letters, digits, "
                                                        "underscores)")
    retention_days: float | None = Field(None, gt=0, description="Delete this dataset's logged predictions and "
                                                                 "labels older than this; at least the label "
                                                                 "window")


class MLflow(Section):
    """An MLflow tracking server that mirrors this dataset's runs and registered versions (optional; Tollgate's
    own records stay the source of truth). Without ``uri`` the deployment's ``TOLLGATE_MLFLOW_URI`` is used, if
    it has one; ``enabled: false`` turns the mirror off for this dataset either way."""
    enabled: bool = Field(True, description="`false`: this dataset is never mirrored")
    uri: str | None = Field(None, description="The tracking server, `http(s)://host[:port][/path]`; credentials "
                                              "never go in a spec (the deployment's TOLLGATE_MLFLOW_URI secret "
                                              "may carry them)")
    experiment: str | None = Field(None, max_length=200, description="Experiment of the runs (default "
                                                                     "`tollgate/<dataset>`)")
    registered_model: str | None = Field(None, max_length=200, description="Registered model of the versions "
                                                                           "(default `tollgate-<dataset>`)")

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        from tollgate import egress

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL of a tracking server")
        try:   # loopback and private addresses are the deployment's call (TOLLGATE_EGRESS_ALLOW), at connect time
            egress.never_allowed(value, "the tracking server's URL")
        except egress.EgressRefused as exc:
            raise ValueError(str(exc)) from None
        if parts.username or parts.password:
            raise ValueError("credentials do not belong in a spec: put the URL with them in the deployment's "
                             "TOLLGATE_MLFLOW_URI (a Secret Manager secret on Google Cloud) and leave `uri` out")
        return value.rstrip("/")


class Tracking(Section):
    """Experiment trackers that mirror the dataset's runs and models."""
    mlflow: MLflow = Field(MLflow(), description="MLflow tracking and Model Registry")


class DatasetSpec(Section):
    """A dataset spec: ``datasets/<name>.yaml``, uploaded by ``tollgate spec push``."""
    name: str = Field(description="The dataset: its incoming/<name>/ folder and its predictor service; "
                      + DATASET_NAME_RULE)
    description: str = Field("", description="What the model predicts, for people")
    task: Task = Field(description="`regression` or `classification`")
    target: str = Field(description="The column to predict; declared under columns")
    time_column: str | None = Field(None, description="The batch's time: a datetime column (or an int of Unix "
                                                      "seconds), for `training.window: days` and time-ordered "
                                                      "evaluation")
    columns: dict[str, Column] = Field(min_length=1, description="Every column a batch may carry")
    extra_columns: Literal["reject", "ignore"] = Field("reject", description="A batch with columns the spec does "
                                                       "not declare: `reject` it, or `ignore` those columns")
    rules: tuple[Rule, ...] = Field((), description="Cross-field rules")
    min_rows: int = Field(1, gt=0, description="Fewer valid rows reject the batch")
    max_drop_fraction: float = Field(0.2, ge=0, le=1, description="More rows than this failing `drop` checks "
                                                                  "reject the batch")
    max_file_bytes: int = Field(10 * 2**30, gt=0, description="Larger files (or gzip contents) are rejected")
    max_line_bytes: int = Field(MAX_LINE_BYTES, gt=0, description="Longest CSV line")
    max_columns: int = Field(MAX_COLUMNS, gt=0, description="Most columns a header may have")
    feature_lists: Features = Field(alias="features", description="The model's inputs")
    model: Model = Field(Model(), description="The estimator and its parameters")
    training: Training = Field(Training(), description="Which data trains")
    evaluation: Evaluation = Field(Evaluation(), description="How the challenger and champion are scored")
    policy: Policy = Field(description="When a challenger serves without a person")
    drift: Drift = Field(Drift(), description="Drift of each batch against the champion's training data")
    deployment: Deployment = Field(Deployment(), description="Canary rollouts")
    review: Review = Field(Review(), description="Human review")
    monitoring: Monitoring = Field(Monitoring(), description="The monitor's judgement of live traffic")
    tracking: Tracking = Field(Tracking(), description="Mirrors in experiment trackers (MLflow)")
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not DATASET_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid dataset name: {DATASET_NAME_RULE}")
        return value

    @field_validator("columns")
    @classmethod
    def _named(cls, columns: dict[str, Column]) -> dict[str, Column]:
        return {name: column.model_copy(update={"name": name}) for name, column in columns.items()}

    # the flat names the pipeline reads
    @property
    def raw(self) -> dict[str, Any]:
        """The spec as loaded (what run records carry)."""
        return self._raw

    @property
    def numeric_features(self) -> tuple[str, ...]:
        return self.feature_lists.numeric

    @property
    def categorical_features(self) -> tuple[str, ...]:
        return self.feature_lists.categorical

    @property
    def datetime_features(self) -> tuple[str, ...]:
        return self.feature_lists.datetime

    @property
    def input_numeric(self) -> tuple[str, ...]:
        """The features a request carries as numbers once read: numeric ones, then datetime ones (as Unix
        seconds): the numeric block of the predictor's validated columns."""
        return self.numeric_features + self.datetime_features

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric_features + self.categorical_features + self.datetime_features

    @property
    def id_columns(self) -> tuple[str, ...]:
        """Identifier columns (``role: id``): kept with each row and logged with each prediction."""
        return tuple(sorted(c.name for c in self.columns.values() if c.role == "id"))

    @property
    def estimator(self) -> str:
        return self.model.estimator

    @property
    def model_params(self) -> dict[str, Any]:
        return dict(self.model.params)

    @property
    def search(self) -> Search | None:
        return self.model.search

    @property
    def training_window(self) -> str:
        return self.training.window

    @property
    def training_last_n(self) -> int:
        return self.training.last_n

    @property
    def training_days(self) -> float:
        return self.training.days

    @property
    def training_max_rows(self) -> int:
        return self.training.max_rows

    @property
    def training_seed(self) -> int:
        return self.training.seed

    @property
    def primary_metric(self) -> str:
        default = "r2" if self.task == "regression" else "accuracy"
        return self.evaluation.primary_metric or default

    @property
    def holdout_fraction(self) -> float:
        return self.evaluation.holdout_fraction

    @property
    def bootstrap_resamples(self) -> int:
        return self.evaluation.bootstrap_resamples

    @property
    def evaluation_seed(self) -> int:
        return self.evaluation.seed

    @property
    def slices(self) -> tuple[str, ...]:
        return self.evaluation.slices

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.primary_metric]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(yaml.safe_dump(self.raw, sort_keys=True).encode()).hexdigest()


def replace(spec: DatasetSpec, **changes: Any) -> DatasetSpec:
    """``spec`` with some values changed, named by their path with ``__`` (``training__max_rows=3000``); checked
    like a loaded spec."""
    raw = _plain(spec.raw)
    for path, value in changes.items():
        *parents, key = path.split("__")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = value
    return from_dict(raw)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _semantics(spec: DatasetSpec) -> list[tuple[tuple[Any, ...], str]]:
    """What the spec's sections say about each other: (YAML path, problem)."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    columns = spec.columns
    declared = ", ".join(columns)

    def undeclared(path: tuple[Any, ...], name: str, what: str) -> None:
        close = difflib.get_close_matches(name, list(columns), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (declared: {declared})"
        problems.append((path, f"{what} {name!r} is not declared under columns{hint}"))

    if spec.target not in columns:
        undeclared(("target",), spec.target, "the target")
    elif spec.task == "regression" and columns[spec.target].type not in ("float", "int"):
        problems.append((("target",), f"a regression target must be a float or int column; {spec.target!r} is "
                                      f"of type {columns[spec.target].type}"))
    elif spec.task == "classification":
        allowed = columns[spec.target].allowed
        if allowed is not None and len(set(allowed)) < 2:
            problems.append((("columns", spec.target, "allowed"), "a classification target needs at least two "
                                                                  "classes"))
    if not spec.features:
        problems.append((("features",), "features.numeric or features.categorical must list at least one column"))
    for group in ("numeric", "categorical", "datetime"):
        for i, feature in enumerate(getattr(spec.feature_lists, group)):
            path = ("features", group, i)
            if feature not in columns:
                undeclared(path, feature, "the feature")
            elif feature == spec.target:
                problems.append((path, f"the target {feature!r} cannot also be a feature"))
            elif columns[feature].role != "data":
                problems.append((path, f"{feature!r} has role {columns[feature].role}: an identifier or an ignored "
                                       "column is never a feature"))
            elif group == "numeric" and columns[feature].type not in ("float", "int", "bool"):
                other = "datetime" if columns[feature].type == "datetime" else "categorical"
                problems.append((path, f"{feature!r} is a {columns[feature].type} column; list it under "
                                       f"features.{other}"))
            elif group == "datetime" and columns[feature].type != "datetime":
                problems.append((path, f"{feature!r} is a {columns[feature].type} column; features.datetime takes "
                                       "datetime columns"))
            elif group == "categorical" and columns[feature].type == "datetime":
                problems.append((path, f"{feature!r} is a datetime column; list it under features.datetime"))
    groups = [set(spec.numeric_features), set(spec.categorical_features), set(spec.datetime_features)]
    both = (groups[0] & groups[1]) | (groups[0] & groups[2]) | (groups[1] & groups[2])
    if both:
        problems.append((("features",), f"{', '.join(sorted(both))} listed in more than one feature group"))
    if spec.target in columns and columns[spec.target].role != "data":
        problems.append((("target",), f"the target {spec.target!r} has role {columns[spec.target].role}"))
    if spec.time_column is not None:
        if spec.time_column not in columns:
            undeclared(("time_column",), spec.time_column, "time_column")
        elif columns[spec.time_column].type not in ("int", "float", "datetime"):
            problems.append((("time_column",), f"time_column {spec.time_column!r} is a "
                                               f"{columns[spec.time_column].type} column; it must be a datetime (or "
                                               "an int of Unix seconds)"))
    metric = spec.primary_metric
    if metric not in TASK_METRICS[spec.task]:
        problems.append((("evaluation", "primary_metric"), f"{metric} is not a {spec.task} metric; use one of "
                                                           f"{', '.join(TASK_METRICS[spec.task])}"))
    if spec.task not in ESTIMATOR_TASKS.get(spec.estimator, TASKS):
        problems.append((("model", "estimator"), f"{spec.estimator} is for {', '.join(ESTIMATOR_TASKS[spec.estimator])}"
                                                 f" only, not {spec.task}"))
    if spec.training.window == "last_n" and spec.training.last_n < 1:
        problems.append((("training", "last_n"), "window last_n needs training.last_n >= 1"))
    if spec.training.window == "days":
        if spec.training.days <= 0:
            problems.append((("training", "days"), "window days needs training.days > 0"))
        if spec.time_column is None:
            problems.append((("training", "window"), "window days needs a time_column"))
    for i, column in enumerate(spec.slices):
        if column not in columns:
            undeclared(("evaluation", "slices", i), column, "the slice")
    for i, column in enumerate(spec.drift.exclude):
        if column not in columns:
            undeclared(("drift", "exclude", i), column, "drift.exclude")
    monitoring = spec.monitoring
    if monitoring.retention_days is not None and monitoring.retention_days * 24 < monitoring.label_window_hours:
        problems.append((("monitoring", "retention_days"),
                         f"{monitoring.retention_days:g} days keeps less than the label window "
                         f"({monitoring.label_window_hours:g} hours), whose predictions the realised metrics "
                         "join labels to"))
    for i, column in enumerate(monitoring.id_columns):
        if column not in spec.features and column not in spec.id_columns:
            problems.append((("monitoring", "id_columns", i), f"{column!r} is neither a feature nor a column of "
                                                              "role id (labels are joined on what requests carry)"))
        elif not ID_COLUMN.fullmatch(column):   # they become JSON paths in the warehouse's SQL
            problems.append((("monitoring", "id_columns", i), f"{column!r}: id columns must be named with letters, "
                                                              "digits and underscores, not starting with a digit"))
    types_ = {c.name: c.type for c in columns.values()}
    for i, rule in enumerate(spec.rules):
        try:
            expression = rule_language.parse(rule.expr, types_)
        except rule_language.RuleError as exc:
            problems.append((("rules", i, "expr"), f"rule {rule.name!r}: {exc}"))
        else:
            object.__setattr__(rule, "expr", expression.text)
            rule._expression = expression
    return problems


def _lines(root: yaml.Node | None) -> dict[tuple[Any, ...], int]:
    """YAML path → 1-based line of its key (mappings) or item (sequences). The tree is bounded once expanded
    (``tollgate.yamlload``), so walking its aliases is too."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = path + (key.value,)
                lines[here] = key.start_mark.line + 1
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    if root is not None:
        lines[()] = root.start_mark.line + 1
        walk(root, ())
    return lines


_ALIASES = {"features": "feature_lists"}


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section model a YAML path leads into, or None."""
    current: Any = DatasetSpec
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            name = _ALIASES.get(part, part) if current is DatasetSpec else part
            field = current.model_fields.get(name) if isinstance(name, str) else None
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (dict, tuple, list):
            args = typing.get_args(current)
            current = args[-1] if args else None
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → ``X``."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()
            if not (field.json_schema_extra or {}).get("hidden")]


def _message(error: dict[str, Any], path: tuple[Any, ...]) -> str:
    kind, key = error["type"], path[-1] if path else ""
    if kind == "extra_forbidden":
        model = _model_at(path[:-1])
        known = _keys(model) if model else []
        close = difflib.get_close_matches(str(key), known, n=1)
        return f"unknown key {key!r}" + (f"; did you mean {close[0]!r}?" if close else
                                          f"; known here: {', '.join(known)}" if known else "")
    if kind == "missing":
        return f"{key!r} is required"
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    shown = error.get("input")
    return error["msg"] + ("" if isinstance(shown, (dict, list)) else f" (got {shown!r})")


def _where(path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return f"{text or '(top level)'} (line {lines[path[:n]]})"
    return text or "(top level)"


def _raise(problems: list[tuple[tuple[Any, ...], str]], lines: dict[tuple[Any, ...], int], name: Any) -> None:
    listed = [f"{_where(path, lines)}: {message}" for path, message in problems]
    head = f"spec {name}" if isinstance(name, str) and DATASET_NAME.fullmatch(name) else "spec"
    summary = listed[0] if len(listed) == 1 else f"{len(listed)} problems:\n  " + "\n  ".join(listed)
    raise SpecError(f"{head}: {summary}", listed)


def from_dict(raw: Any, lines: dict[tuple[Any, ...], int] | None = None) -> DatasetSpec:
    """The spec of a YAML mapping; a :class:`SpecError` listing every problem otherwise."""
    lines = lines or {}
    if not isinstance(raw, dict):
        raise SpecError("a dataset spec is a YAML mapping of keys such as name, task, target, columns, "
                        "features and policy")
    name = raw.get("name")
    try:
        spec = DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            path = tuple("features" if p == "feature_lists" else p for p in error["loc"])
            problems.append((path, _message(error, path)))
        _raise(problems, lines, name)
    problems = _semantics(spec)
    if problems:
        _raise(problems, lines, name)
    spec._raw = raw
    return spec


def loads(text: str) -> DatasetSpec:
    try:
        raw, root = yamlload.load(text)
    except yamlload.YamlError as exc:
        raise SpecError(f"the dataset spec is {exc}" if str(exc).startswith("not valid YAML")
                        else f"the dataset spec cannot be read: {exc}") from None
    return from_dict(raw, _lines(root))


def load(path: Path | str) -> DatasetSpec:
    return loads(Path(path).read_text())
