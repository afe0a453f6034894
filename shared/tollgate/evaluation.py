"""Evaluation: metrics and a paired bootstrap of (challenger − champion) on the same rows. Pure."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
from sklearn import metrics as skm

from tollgate.spec import METRICS


def _r2(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """R² along the last axis (works on a (resamples, n) matrix)."""
    ss_res = ((y - p) ** 2).sum(axis=-1)
    ss_tot = ((y - y.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1 - ss_res / ss_tot, 0.0)


def _rmse(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.sqrt(((y - p) ** 2).mean(axis=-1))


def _mae(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.abs(y - p).mean(axis=-1)


def _accuracy(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return (y == p).mean(axis=-1)


# Metrics that vectorise over bootstrap resamples; the others fall back to a loop.
_VECTOR: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "r2": _r2, "rmse": _rmse, "mae": _mae, "accuracy": _accuracy,
}


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {"r2": float(_r2(y, pred)), "rmse": float(_rmse(y, pred)), "mae": float(_mae(y, pred))}


def classification_metrics(y: np.ndarray, labels: np.ndarray, proba: np.ndarray | None,
                           classes: list[str]) -> dict[str, float]:
    out = {"accuracy": float(skm.accuracy_score(y, labels)),
           "f1": float(skm.f1_score(y, labels, average="macro"))}
    if proba is not None and len(classes) > 1:
        try:
            if len(classes) == 2:
                out["roc_auc"] = float(skm.roc_auc_score(y == classes[1], proba[:, 1]))
            else:
                out["roc_auc"] = float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
        except ValueError:  # a class missing from the holdout: AUC undefined, say so by leaving it out
            pass
        out["log_loss"] = float(skm.log_loss(y, np.clip(proba, 1e-15, 1), labels=classes))
    return out


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    metric: str
    challenger: float
    champion: float
    difference: float      # challenger − champion, in the metric's own units
    improvement: float     # oriented so that > 0 means the challenger is better
    low: float             # confidence interval of the improvement
    high: float
    confidence: float
    resamples: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def paired_bootstrap(y: np.ndarray, challenger: np.ndarray, champion: np.ndarray, metric: str,
                     resamples: int, confidence: float, seed: int) -> PairedDifference:
    """Resample rows with replacement; each resample scores both models on the same rows."""
    n = len(y)
    higher = METRICS[metric]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    if metric in _VECTOR:
        fn = _VECTOR[metric]
        a = fn(y[idx], challenger[idx])
        b = fn(y[idx], champion[idx])
        point_a, point_b = float(fn(y, challenger)), float(fn(y, champion))
    else:
        scorer = {"f1": lambda t, p: skm.f1_score(t, p, average="macro")}[metric]
        a = np.array([scorer(y[i], challenger[i]) for i in idx])
        b = np.array([scorer(y[i], champion[i]) for i in idx])
        point_a, point_b = float(scorer(y, challenger)), float(scorer(y, champion))
    diffs = (a - b) if higher else (b - a)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return PairedDifference(metric=metric, challenger=point_a, champion=point_b,
                            difference=point_a - point_b,
                            improvement=(point_a - point_b) if higher else (point_b - point_a),
                            low=float(low), high=float(high), confidence=confidence, resamples=resamples)
