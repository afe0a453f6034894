"""Dataset specs: the declaration that drives validation, training, evaluation and the policy.

Longer than the other modules on purpose: every section a spec may have, its defaults and its checks are here
together, so that one file answers "what can a spec say?" (the rule language itself is tollgate.rules).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from tollgate import rules as rule_language

TASKS = ("regression", "classification")
COLUMN_TYPES = ("float", "int", "string", "bool")
ACTIONS = ("drop", "reject")
SOFT_ACTIONS = ("report", "drop", "reject")   # rules and outlier checks may also only report
OUTLIER_METHODS = ("iqr", "mad")
ESTIMATORS = ("hist_gradient_boosting", "linear", "random_forest")
# metric name → True if higher is better
METRICS = {"r2": True, "rmse": False, "mae": False,
           "accuracy": True, "f1": True, "roc_auc": True, "log_loss": False}


class SpecError(ValueError):
    """The dataset spec is malformed; the message names the field and what is expected."""


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


@dataclasses.dataclass(frozen=True)
class Outliers:
    """Robust per-feature outlier fences, computed on each batch: ``iqr`` flags values beyond
    Q1 - k·IQR and Q3 + k·IQR; ``mad`` flags |x - median| > k · 1.4826 · MAD."""
    method: str = "iqr"
    k: float = 3.0
    on_fail: str = "report"


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = True
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    unique: bool = False
    outliers: Outliers | None = None
    on_fail: str = "drop"


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    expr: str
    description: str = ""
    on_fail: str = "drop"
    # the rule in the closed rule language (tollgate.rules), checked when the spec is loaded
    expression: rule_language.Expression | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Drift:
    """When a batch counts as drifted from the champion's training data.

    A feature drifts when its test is significant after Benjamini–Hochberg control of the false
    discovery rate across features *and* its distance reaches a threshold (PSI for numeric
    features, Jensen–Shannon distance for categorical ones). Significance accounts for sample
    size; the distance keeps a huge batch from flagging a trivial shift.
    """
    fdr: float = 0.05
    psi_warn: float = 0.1
    psi_severe: float = 0.25
    js_warn: float = 0.1
    js_severe: float = 0.2
    sample_size: int = 20_000
    exclude: tuple[str, ...] = ()   # e.g. calendar features that shift by design between batches


@dataclasses.dataclass(frozen=True)
class Search:
    """A hyperparameter grid searched by cross-validation, its candidates spread over the tasks of one
    trainer execution (CLOUD_RUN_TASK_INDEX / CLOUD_RUN_TASK_COUNT)."""
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    tasks: int = 1
    folds: int = 3


@dataclasses.dataclass(frozen=True)
class Policy:
    threshold: float
    margin: float = 0.0
    confidence: float = 0.95
    min_holdout_rows: int = 30


@dataclasses.dataclass(frozen=True)
class Deployment:
    """How a promotion reaches traffic: at once, or as a canary taking ``canary_percent`` of the
    requests until `tollgate canary promote` (or the monitor) gives it 100%."""
    canary_percent: int = 0


@dataclasses.dataclass(frozen=True)
class Review:
    """Human review: a pending review expires (a recorded outcome; the champion stays) after this long."""
    expire_after_hours: float = 72.0


@dataclasses.dataclass(frozen=True)
class Monitoring:
    """What the monitor judges on each window of live traffic (``monitoring:`` in the spec).

    Traffic (volume, errors, latency, drift) is judged over the last ``window_minutes``; realised
    metrics over the labelled predictions of the last ``label_window_hours`` (labels come late).
    ``decay_below``: the realised primary metric (from late labels) whose confidence interval lies
    wholly below it is decay (default: the policy threshold). Canaries: promoted with at least
    ``canary_min_requests`` requests when not worse than the stable version, rolled back when worse:
    error rate higher by ``canary_max_error_increase``, p99 latency ``canary_max_latency_ratio``
    times the stable one's (and above ``canary_latency_floor_ms``: below it, differences between
    sub-millisecond percentiles are noise), or a realised metric lower by more than
    ``canary_max_metric_drop`` (the whole confidence interval of the difference below it). With
    labels, promotion needs the interval's lower end above ``-canary_max_metric_drop`` (not worse
    by more than that, with the policy's confidence); until then the canary waits for labels.
    ``retention_days``: the dataset's predictions and labels older than this are deleted from the warehouse
    by the monitor (default: kept until the tables' own expiry, ``prediction_log_retention_days`` in
    terraform); at least the label window, which the realised metrics read."""
    window_minutes: float = 60.0
    label_window_hours: float = 168.0
    min_labels: int = 30
    max_error_rate: float = 0.01
    max_p99_ms: float = 1000.0
    decay_below: float | None = None
    retrain_cooldown_hours: float = 24.0
    alert_cooldown_minutes: float = 60.0
    canary_min_requests: int = 200
    canary_max_error_increase: float = 0.01
    canary_max_latency_ratio: float = 2.0
    canary_latency_floor_ms: float = 50.0
    canary_max_metric_drop: float = 0.02
    id_columns: tuple[str, ...] = ()
    retention_days: float | None = None


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    task: str
    target: str
    columns: dict[str, Column]
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    policy: Policy
    rules: tuple[Rule, ...] = ()
    time_column: str | None = None
    description: str = ""
    min_rows: int = 1
    max_drop_fraction: float = 0.2
    max_file_bytes: int = 10 * 2**30    # also caps the decompressed bytes of a gzip batch
    max_line_bytes: int = MAX_LINE_BYTES
    max_columns: int = MAX_COLUMNS
    drift: Drift = Drift()
    deployment: Deployment = Deployment()
    review: Review = Review()
    monitoring: Monitoring = Monitoring()
    estimator: str = "hist_gradient_boosting"
    model_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    search: Search | None = None
    training_window: str = "all"
    training_last_n: int = 0
    training_days: float = 0.0
    training_max_rows: int = 2_000_000   # more rows in the window: a seeded sample of this many is trained on
    slices: tuple[str, ...] = ()
    training_seed: int = 42
    primary_metric: str = "r2"
    holdout_fraction: float = 0.3
    bootstrap_resamples: int = 1000
    evaluation_seed: int = 42
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric_features + self.categorical_features

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.primary_metric]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(yaml.safe_dump(self.raw, sort_keys=True).encode()).hexdigest()


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping or mapping[key] in (None, ""):
        raise SpecError(f"{where}: `{key}` is required")
    return mapping[key]


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise SpecError(f"{where}: {value!r} is not one of {', '.join(choices)}")
    return value


def _outliers(raw: Any, where: str) -> Outliers | None:
    if raw is None or raw is False:
        return None
    if raw is True:
        return Outliers()
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a mapping such as {{method: iqr, k: 3, on_fail: report}}")
    k = float(raw.get("k", 3.0))
    if k <= 0:
        raise SpecError(f"{where}.k: must be positive")
    return Outliers(method=_choice(raw.get("method", "iqr"), OUTLIER_METHODS, f"{where}.method"), k=k,
                    on_fail=_choice(raw.get("on_fail", "report"), SOFT_ACTIONS, f"{where}.on_fail"))


def _search(raw: Any, where: str) -> Search | None:
    if not raw:
        return None
    grid = raw.get("grid") if isinstance(raw, dict) else None
    if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise SpecError(f"{where}.grid: a mapping of parameter name to a non-empty list of values")
    search = Search(grid=tuple((str(k), tuple(v)) for k, v in sorted(grid.items())),
                    tasks=int(raw.get("tasks", 1)), folds=int(raw.get("folds", 3)))
    if not 1 <= search.tasks <= 20:
        raise SpecError(f"{where}.tasks: between 1 and 20 Cloud Run tasks")
    if not 2 <= search.folds <= 10:
        raise SpecError(f"{where}.folds: between 2 and 10 cross-validation folds")
    size = 1
    for _, values in search.grid:
        size *= len(values)
    if size > 200:
        raise SpecError(f"{where}.grid: {size} candidates; at most 200")
    return search


def _drift(raw: dict[str, Any], where: str) -> Drift:
    psi, js = raw.get("psi") or {}, raw.get("js") or {}
    drift = Drift(fdr=float(raw.get("fdr", 0.05)),
                  psi_warn=float(psi.get("warn", 0.1)), psi_severe=float(psi.get("severe", 0.25)),
                  js_warn=float(js.get("warn", 0.1)), js_severe=float(js.get("severe", 0.2)),
                  sample_size=int(raw.get("sample_size", 20_000)),
                  exclude=tuple(str(c) for c in raw.get("exclude") or ()))
    if not 0 < drift.fdr < 1:
        raise SpecError(f"{where}.fdr: must be between 0 and 1")
    if not (0 < drift.psi_warn <= drift.psi_severe and 0 < drift.js_warn <= drift.js_severe <= 1):
        raise SpecError(f"{where}: thresholds need 0 < warn <= severe (and Jensen–Shannon distances <= 1)")
    if drift.sample_size < 100:
        raise SpecError(f"{where}.sample_size: at least 100")
    return drift


def _monitoring(raw: Any, features: tuple[str, ...], where: str) -> Monitoring:
    if raw is None:
        return Monitoring()
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: a mapping of settings")
    fields = {f.name: f for f in dataclasses.fields(Monitoring)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise SpecError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            if name == "id_columns":
                values[name] = tuple(str(c) for c in value or ())
            elif name in ("decay_below", "retention_days"):
                values[name] = None if value is None else float(value)
            else:
                values[name] = type(getattr(Monitoring(), name))(value)
        except (TypeError, ValueError):
            raise SpecError(f"{where}.{name}: {value!r} is not a number") from None
    monitoring = Monitoring(**values)
    positive = ("window_minutes", "label_window_hours", "min_labels", "max_p99_ms", "canary_min_requests",
                "canary_max_latency_ratio")
    bad = [n for n in positive if getattr(monitoring, n) <= 0]
    bad += [n for n in ("max_error_rate", "retrain_cooldown_hours", "alert_cooldown_minutes",
                        "canary_max_error_increase", "canary_max_metric_drop", "canary_latency_floor_ms")
            if getattr(monitoring, n) < 0]
    if bad:
        raise SpecError(f"{where}: {', '.join(bad)} must be positive")
    if monitoring.retention_days is not None and monitoring.retention_days * 24 < monitoring.label_window_hours:
        raise SpecError(f"{where}.retention_days: {monitoring.retention_days:g} days keeps less than the label "
                        f"window ({monitoring.label_window_hours:g} hours), whose predictions the realised metrics "
                        "join labels to")
    missing = [c for c in monitoring.id_columns if c not in features]
    if missing:
        raise SpecError(f"{where}.id_columns: {', '.join(missing)} are not features (labels are joined on them)")
    awkward = [c for c in monitoring.id_columns if not ID_COLUMN.fullmatch(c)]
    if awkward:   # they become JSON paths in the warehouse's SQL
        raise SpecError(f"{where}.id_columns: {', '.join(map(repr, awkward))}: id columns must be named with "
                        "letters, digits and underscores, not starting with a digit")
    return monitoring


def _rule(raw: Any, i: int, columns: dict[str, Column], where: str) -> Rule:
    at = f"{where}: rules[{i}]"
    if not isinstance(raw, dict):
        raise SpecError(f"{at}: a mapping with name, expr and on_fail")
    name = str(_require(raw, "name", at))
    expr = _require(raw, "expr", at)
    try:
        expression = rule_language.parse(str(expr), {c.name: c.type for c in columns.values()})
    except rule_language.RuleError as exc:
        raise SpecError(f"{at} ({name}): {exc}") from None
    return Rule(name=name, expr=expression.text, description=str(raw.get("description", "")),
                on_fail=_choice(raw.get("on_fail", "drop"), SOFT_ACTIONS, f"{at}.on_fail"), expression=expression)


def _positive_int(raw: dict[str, Any], key: str, default: int, where: str) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"{where}: {key} must be a positive whole number, not {value!r}")
    return value


def from_dict(raw: dict[str, Any]) -> DatasetSpec:
    if not isinstance(raw, dict):
        raise SpecError("a dataset spec is a YAML mapping")
    name = _require(raw, "name", "spec")
    try:
        check_dataset_name(name)
    except SpecError as exc:
        raise SpecError(f"spec: name: {exc}") from None
    where = f"spec {name}"
    task = _choice(_require(raw, "task", where), TASKS, f"{where}: task")
    target = str(_require(raw, "target", where))
    columns: dict[str, Column] = {}
    for col_name, col in (_require(raw, "columns", where) or {}).items():
        col = col or {}
        cw = f"{where}: columns.{col_name}"
        allowed = col.get("allowed")
        columns[col_name] = Column(
            name=col_name,
            type=_choice(col.get("type", "float"), COLUMN_TYPES, f"{cw}.type"),
            required=bool(col.get("required", True)),
            nullable=bool(col.get("nullable", True)),
            min=col.get("min"), max=col.get("max"),
            allowed=tuple(str(a) for a in allowed) if allowed is not None else None,
            unique=bool(col.get("unique", False)),
            outliers=_outliers(col.get("outliers"), f"{cw}.outliers"),
            on_fail=_choice(col.get("on_fail", "drop"), ACTIONS, f"{cw}.on_fail"),
        )
        if columns[col_name].outliers and columns[col_name].type not in ("float", "int"):
            raise SpecError(f"{cw}.outliers: outlier fences need a numeric column (type float or int)")
    if target not in columns:
        raise SpecError(f"{where}: the target {target!r} must be declared under columns")
    features = raw.get("features") or {}
    numeric = tuple(features.get("numeric") or ())
    categorical = tuple(features.get("categorical") or ())
    if not numeric and not categorical:
        raise SpecError(f"{where}: features.numeric or features.categorical must list at least one column")
    for feature in numeric + categorical:
        if feature not in columns:
            raise SpecError(f"{where}: feature {feature!r} is not declared under columns")
        if feature == target:
            raise SpecError(f"{where}: the target {target!r} cannot also be a feature")
    rules = tuple(_rule(r, i, columns, where) for i, r in enumerate(raw.get("rules") or ()))
    model = raw.get("model") or {}
    training = raw.get("training") or {}
    evaluation = raw.get("evaluation") or {}
    policy_raw = _require(raw, "policy", where)
    primary = _choice(evaluation.get("primary_metric", "r2" if task == "regression" else "accuracy"),
                      tuple(METRICS), f"{where}: evaluation.primary_metric")
    holdout_fraction = float(evaluation.get("holdout_fraction", 0.3))
    if not 0.05 <= holdout_fraction <= 0.9:
        raise SpecError(f"{where}: evaluation.holdout_fraction must be between 0.05 and 0.9")
    confidence = float(policy_raw.get("confidence", 0.95))
    if not 0.5 <= confidence < 1:
        raise SpecError(f"{where}: policy.confidence must be in [0.5, 1)")
    window = str(training.get("window", "all"))
    _choice(window, ("all", "last_n", "days"), f"{where}: training.window")
    if window == "last_n" and int(training.get("last_n", 0)) < 1:
        raise SpecError(f"{where}: training.window last_n needs training.last_n >= 1")
    if window == "days" and (float(training.get("days", 0)) <= 0 or not raw.get("time_column")):
        raise SpecError(f"{where}: training.window days needs training.days > 0 and a time_column")
    slices = tuple(str(c) for c in evaluation.get("slices") or ())
    for column in slices:
        if column not in columns:
            raise SpecError(f"{where}: evaluation.slices names {column!r}, which is not declared under columns")
    drift = _drift(raw.get("drift") or {}, f"{where}: drift")
    for excluded in drift.exclude:
        if excluded not in columns:
            raise SpecError(f"{where}: drift.exclude names {excluded!r}, which is not declared under columns")
    time_column = raw.get("time_column")
    if time_column is not None and time_column not in columns:
        raise SpecError(f"{where}: time_column {time_column!r} is not declared under columns")
    deployment_raw = raw.get("deployment") or {}
    canary = int(deployment_raw.get("canary_percent", 0))
    if not 0 <= canary < 100:
        raise SpecError(f"{where}: deployment.canary_percent must be between 0 (no canary) and 99")
    expire_after = float((raw.get("review") or {}).get("expire_after_hours", 72.0))
    if expire_after <= 0:
        raise SpecError(f"{where}: review.expire_after_hours must be positive")
    return DatasetSpec(
        name=name, task=task, target=target, columns=columns,
        numeric_features=numeric, categorical_features=categorical,
        policy=Policy(threshold=float(_require(policy_raw, "threshold", f"{where}: policy")),
                      margin=float(policy_raw.get("margin", 0.0)), confidence=confidence,
                      min_holdout_rows=int(policy_raw.get("min_holdout_rows", 30))),
        rules=rules, time_column=time_column, description=str(raw.get("description", "")),
        min_rows=int(raw.get("min_rows", 1)), max_drop_fraction=float(raw.get("max_drop_fraction", 0.2)),
        max_file_bytes=_positive_int(raw, "max_file_bytes", 10 * 2**30, where),
        max_line_bytes=_positive_int(raw, "max_line_bytes", MAX_LINE_BYTES, where),
        max_columns=_positive_int(raw, "max_columns", MAX_COLUMNS, where),
        drift=drift, deployment=Deployment(canary_percent=canary), review=Review(expire_after_hours=expire_after),
        monitoring=_monitoring(raw.get("monitoring"), numeric + categorical, f"{where}: monitoring"),
        estimator=_choice(model.get("estimator", "hist_gradient_boosting"), ESTIMATORS, f"{where}: model.estimator"),
        model_params=dict(model.get("params") or {}),
        search=_search(model.get("search"), f"{where}: model.search"),
        training_window=window, training_last_n=int(training.get("last_n", 0)),
        training_days=float(training.get("days", 0)), slices=slices,
        training_max_rows=_positive_int(training, "max_rows", 2_000_000, f"{where}: training"),
        training_seed=int(training.get("seed", 42)),
        primary_metric=primary, holdout_fraction=holdout_fraction,
        bootstrap_resamples=int(evaluation.get("bootstrap_resamples", 1000)),
        evaluation_seed=int(evaluation.get("seed", 42)),
        raw=raw,
    )


def loads(text: str) -> DatasetSpec:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"the dataset spec is not valid YAML: {exc}") from exc
    return from_dict(raw)


def load(path: Path | str) -> DatasetSpec:
    return loads(Path(path).read_text())
