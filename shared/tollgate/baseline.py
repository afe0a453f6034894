"""The baseline `tollgate spec infer` suggests its estimator and threshold from: each candidate family
cross-validated on a sample, within a time budget (time-ordered folds when the file is one stream of time), and the
threshold a first model meets on a holdout of the expected size with high probability (a bootstrap of the
out-of-fold predictions)."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import numpy as np
import pandas as pd

from tollgate import spec as specs
from tollgate.errors import InferError

BASELINE_ROWS = 20_000         # rows the baseline models are cross-validated on
BASELINE_SECONDS = 60.0        # what the baseline may take, all candidates together
CANDIDATES = ("hist_gradient_boosting", "random_forest", "linear")


@dataclasses.dataclass
class Baseline:
    estimator: str
    metric: str
    score: float
    std: float
    scores: dict[str, float]
    threshold: float = 0.0
    rows: int = 0
    time_ordered: bool = False
    skipped: list[str] = dataclasses.field(default_factory=list)


def _splitter(spec: specs.DatasetSpec, time_ordered: bool, folds: int = 3) -> Any:
    from sklearn.model_selection import KFold, StratifiedKFold

    if time_ordered:   # the frame is sorted by time: each fold is a later stretch of it
        return KFold(n_splits=folds, shuffle=False)
    cls = StratifiedKFold if spec.task == "classification" else KFold
    return cls(n_splits=folds, shuffle=True, random_state=spec.training.seed)


def baseline(frame: pd.DataFrame, spec: specs.DatasetSpec, *, holdout_rows: int, seed: int = 0,
             seconds: float = BASELINE_SECONDS, progress: Callable[[str], None] | None = None) -> Baseline:
    """Each candidate family cross-validated (3 folds, time-ordered when the spec has a time column) on a sample
    of at most ``BASELINE_ROWS``, within ``seconds`` in all; the best one's score, spread, and the threshold a
    first model meets on ``holdout_rows`` held-out rows with 97.5% probability."""
    from sklearn.model_selection import cross_val_predict

    from tollgate import training
    from tollgate.contract import datetime_seconds

    started = time.monotonic()
    for name in spec.columns:   # datetimes as the validator curates them: Unix seconds
        if spec.columns[name].type == "datetime" and name in frame:
            frame = frame.assign(**{name: datetime_seconds(frame[name], spec.columns[name].unit)[0]})
    time_ordered = spec.time_column is not None and arrives_in_time_order(frame[spec.time_column])
    sample = frame.sample(n=min(len(frame), BASELINE_ROWS), random_state=seed)
    if time_ordered:
        sample = sample.sort_values(spec.time_column, kind="stable")
    sample = sample.reset_index(drop=True)
    scores: dict[str, float] = {}
    best: dict[str, Any] | None = None
    skipped: list[str] = []
    for estimator in CANDIDATES:
        elapsed = time.monotonic() - started
        if best is not None and elapsed > seconds * 0.6:   # the next family would take it past its time
            skipped.append(estimator)
            continue
        if progress:
            progress(f"cross-validating {estimator} on {len(sample):,} rows"
                     + (" in time order" if time_ordered else "") + f" ({elapsed:.0f} s of {seconds:.0f})")
        candidate = specs.replace(spec, model__estimator=estimator, model__params={})
        try:
            pipeline = training.build_pipeline(candidate)
            X, y = training.features_frame(sample, candidate), training.target(sample, candidate)
            method = "predict_proba" if spec.task == "classification" else "predict"
            predicted = cross_val_predict(pipeline, X, y, cv=_splitter(candidate, time_ordered), method=method)
        except ValueError:   # e.g. a class with fewer rows than folds
            continue
        folds = [score_of(y[test], predicted[test], spec, pipeline, y)
                 for _, test in _splitter(candidate, time_ordered).split(X, y if spec.task == "classification"
                                                                            else None)]
        mean = float(np.mean(folds))
        scores[estimator] = mean
        if best is None or _better(mean, best["score"], spec):
            best = {"estimator": estimator, "score": mean, "std": float(np.std(folds)), "y": y,
                    "predicted": predicted}
    if best is None:
        raise InferError("no baseline model could be cross-validated on this data (each class needs at least 3 "
                         "rows); add rows or pass --no-baseline")
    threshold = _reachable(best["y"], best["predicted"], spec, holdout_rows, seed)
    return Baseline(best["estimator"], spec.primary_metric, best["score"], best["std"], scores, threshold,
                    len(sample), time_ordered, skipped)


def arrives_in_time_order(seconds: pd.Series) -> bool:
    """Whether the file's rows follow their time (95% of consecutive pairs do not go back): then the next batch is
    the future, and the baseline is cross-validated on later stretches of time. A file sorted by something else
    (an airport, a user) is validated across its rows, like the batches that will come."""
    values = seconds.dropna().to_numpy()
    if len(values) < 20:
        return False
    steps = np.diff(values)
    back = -steps[steps < 0].sum()   # a file of series one after another (an airport's, then the next's) goes
    span = float(values.max() - values.min()) or 1.0   # far back where each begins: not one stream of time
    return float(np.mean(steps >= 0)) >= 0.95 and back <= 0.05 * span


def _better(a: float, b: float, spec: specs.DatasetSpec) -> bool:
    return a > b if spec.higher_is_better else a < b


def score_of(y: np.ndarray, predicted: np.ndarray, spec: specs.DatasetSpec, pipeline: Any = None,
             classes_from: Any = None) -> float:
    """The primary metric of predictions (regression values, or class probabilities in sorted class order); a
    ValueError when it is undefined on these rows (one class only)."""
    from tollgate import evaluation

    if spec.task == "regression":
        return evaluation.regression_metrics(y, predicted)[spec.primary_metric]
    classes = [str(c) for c in np.unique(classes_from if classes_from is not None else y)]
    labels = np.asarray(classes)[np.argmax(predicted, axis=1)]
    values = evaluation.classification_metrics(np.asarray(y).astype(str), labels, predicted, classes)
    if spec.primary_metric not in values:
        raise ValueError(f"{spec.primary_metric} is undefined on these rows")
    return values[spec.primary_metric]


def _reachable(y: np.ndarray, predicted: np.ndarray, spec: specs.DatasetSpec, holdout_rows: int, seed: int,
               resamples: int = 400) -> float:
    """The 2.5th percentile of the metric over random holdouts of ``holdout_rows`` out-of-fold predictions (a
    first model's score on its one holdout varies that much), a further 2% of slack, rounded outward."""
    rng = np.random.default_rng(seed)
    n = len(y)
    size = max(min(holdout_rows, n), 10)
    values = []
    for _ in range(resamples):
        pick = rng.choice(n, size=size, replace=size > n)
        try:
            values.append(score_of(y[pick], predicted[pick], spec, classes_from=y))
        except ValueError:   # a resample with one class
            continue
    if not values:
        return 0.0
    higher = spec.higher_is_better
    low = float(np.percentile(values, 2.5 if higher else 97.5))
    slack = 0.02 * abs(low)
    value = low - slack if higher else low + slack
    if spec.primary_metric in ("r2",):
        value = min(value, 0.99)
    return rounded(value, down=higher) if value else 0.0


def rounded(value: float, down: bool) -> float:
    """``value`` rounded outward to 2 significant digits."""
    if value == 0:
        return 0.0
    step = 10 ** (math.floor(math.log10(abs(value))) - 1)
    return float(f"{(math.floor if down else math.ceil)(value / step) * step:.12g}")
