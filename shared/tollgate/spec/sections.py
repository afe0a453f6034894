"""The spec's other sections: drift, the model and its search, training, evaluation, the policy, deployment,
review, monitoring and tracking."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from tollgate.spec.columns import Section
from tollgate.spec.names import ESTIMATORS, Estimator, Metric


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
    importance_repeats: int = Field(5, ge=0, le=100, description="Shuffles per feature of the permutation "
                                                                 "importance of both models (0: none)")
    importance_rows: int = Field(2000, ge=50, le=1_000_000, description="Held-out rows the permutation "
                                                                        "importance uses at most (a seeded sample)")


class Policy(Section):
    """When a challenger replaces the champion without a person."""
    threshold: float = Field(description="The primary metric a model must reach to serve")
    margin: float = Field(0.0, description="By how much the challenger must beat the champion (negative: how much "
                                           "worse it may be, e.g. to refresh a model on newer data)")
    confidence: float = Field(0.95, ge=0.5, lt=1, description="Of the paired bootstrap interval of "
                                                              "(challenger - champion)")
    min_holdout_rows: int = Field(30, ge=1, description="Fewer held-out rows cannot tell models apart: a "
                                                        "person decides")
    refresh: bool = Field(False, description="Also promote a refit: the champion's family, features and target "
                                             "trained again on every batch the champion saw and newer ones, when "
                                             "it scores at least as well on the same fresh rows though not shown "
                                             "better (what a data scientist does with more data)")


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
    Canaries are promoted with at least ``canary_min_requests`` requests when not worse than the
    champion, and rolled back when worse (error rate, p99 latency above ``canary_latency_floor_ms``, or a
    realised metric lower by more than ``canary_max_metric_drop`` with the policy's confidence). What the model
    relies on is judged too: the mean absolute attribution per feature on a sample of ``attribution_rows`` live
    requests against the same on the training rows (``attribution_drift``).
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
    canary_max_latency_ratio: float = Field(2.0, gt=0, description="A canary's p99 this many times the "
                                                                   "champion's is rolled back")
    canary_latency_floor_ms: float = Field(50.0, ge=0, description="p99 latencies below this are never compared")
    canary_max_metric_drop: float = Field(0.02, ge=0, description="A canary's realised metric lower by more than "
                                                                  "this is rolled back")
    attribution_drift: float | None = Field(0.05, gt=0, le=1, description="An `attribution_drift` alert when a "
                                             "feature's share of the mean absolute attribution on live requests "
                                             "moves this far from its share on the training rows (`null`: not "
                                             "judged)")
    attribution_rows: int = Field(500, ge=50, le=5000, description="Rows explained per version and window, and "
                                                                   "training rows explained for the reference")
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
