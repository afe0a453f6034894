"""Evaluation: both models on the same held-out rows: metrics, a paired bootstrap of
(challenger − champion) on the primary metric, per-slice metrics, and the permutation importance of each declared
feature. Pure."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import numpy as np
from sklearn import metrics as skm

from tollgate.spec import METRICS, DatasetSpec

MAX_SLICE_VALUES = 20       # per slice column: the most frequent values; the rest are "(other)"
QUANTILE_SLICES = 4         # numeric slice columns are cut at their quartiles
IMPORTANCE_PREDICTIONS = 250_000   # rows predicted per model for the permutation importance, at most
IMPORTANCE_KEPT = 100       # features whose importance the evaluation keeps (a Firestore document stays small)


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
    if proba is not None and len(classes) > 1 and len(set(y)) > 1:   # AUC needs both classes present
        try:
            if len(classes) == 2:
                out["roc_auc"] = float(skm.roc_auc_score(y == classes[1], proba[:, 1]))
            else:
                out["roc_auc"] = float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
        except ValueError:  # a class missing from the holdout: AUC undefined, say so by leaving it out
            pass
        out["log_loss"] = float(skm.log_loss(y, np.clip(proba, 1e-15, 1), labels=classes))
    return out


def _auc(y: np.ndarray, p: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """ROC AUC. Binary: ``y`` the positive indicator, ``p`` its probability. Multiclass (``p`` of shape (n, k)):
    one-vs-rest, the mean over classes of each one's AUC, ``y`` the class index (as scikit-learn's
    ``roc_auc_score(multi_class="ovr")``); a class without positives or negatives among the rows is left out."""
    if p.ndim == 2:
        aucs = [_auc((y == k).astype(float), p[:, k], sample_weight) for k in range(p.shape[1])
                if 0 < np.sum(y == k) < len(y)]
        return float(np.mean(aucs)) if aucs else 0.5
    present = y if sample_weight is None else y[sample_weight > 0]
    if not 0 < present.sum() < len(present):
        return 0.5
    return skm.roc_auc_score(y, p, sample_weight=sample_weight)


def _log_loss(y: np.ndarray, p: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """Log loss. Binary: ``y`` the positive indicator, ``p`` its probability. Multiclass: ``p`` of shape (n, k),
    ``y`` the true class's column."""
    if p.ndim == 2:
        return float(np.average(-np.log(np.clip(p[np.arange(len(y)), y], 1e-15, 1)), weights=sample_weight))
    return skm.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0.0, 1.0], sample_weight=sample_weight)


def _f1(y: np.ndarray, p: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    return skm.f1_score(y, p, average="macro", sample_weight=sample_weight)


# Metrics that are not a weighted sum of per-row terms: scored once per resample, with its row counts as weights.
_SCORERS: dict[str, Callable[..., float]] = {"f1": _f1, "roc_auc": _auc, "log_loss": _log_loss}


def metric_values(y: np.ndarray, p: np.ndarray, metric: str) -> Any:
    """A label-based metric of predictions ``p``; on (resamples, n) matrices, one value per row."""
    if metric in _VECTOR:
        return _VECTOR[metric](y, p)
    if metric != "f1":
        raise ValueError(f"{metric} needs probabilities, not labels")
    if y.ndim == 1:
        return float(_f1(y, p))
    return np.array([_f1(a, b) for a, b in zip(y, p)])


BLOCK_DRAWS = 4_000_000     # bootstrap draws held at once: 32 MB of indices and as much of counts


def resample_counts(n: int, resamples: int, seed: int | np.random.Generator) -> Iterator[np.ndarray]:
    """Bootstrap resamples of ``n`` rows as blocks of row counts, shape (k, n): resample r counts how
    often it drew each row. The draws are exactly those of one (resamples, n) index matrix from
    ``default_rng(seed)`` (numpy draws them in the same order in blocks), held a block at a time, so
    memory is O(n) whatever the number of resamples. ``seed`` may be a Generator, which goes on from
    where it is."""
    rng = np.random.default_rng(seed)
    block = max(1, BLOCK_DRAWS // max(n, 1))
    for start in range(0, resamples, block):
        k = min(block, resamples - start)
        idx = rng.integers(0, n, size=(k, n))
        idx += (np.arange(k) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=k * n).reshape(k, n)


def _weighted(metric: str, y: np.ndarray, p: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The metric of each resample of a block of row counts, from per-row terms computed once."""
    n = len(y)
    if metric == "accuracy":
        hit = (y == p).astype("float64")
        return lambda w: w @ hit / n
    if metric in ("rmse", "mae", "r2"):
        err = y.astype("float64") - p.astype("float64")
        if metric == "mae":
            loss = np.abs(err)
            return lambda w: w @ loss / n
        sq = err ** 2
        if metric == "rmse":
            return lambda w: np.sqrt(w @ sq / n)
        centred = y.astype("float64") - y.astype("float64").mean()   # R² is shift-invariant; centring keeps
        centred_sq = centred ** 2                                       # the sums of squares accurate

        def r2(w: np.ndarray) -> np.ndarray:
            ss_tot = w @ centred_sq - (w @ centred) ** 2 / n
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(ss_tot > 0, 1 - (w @ sq) / ss_tot, 0.0)
        return r2
    scorer = _SCORERS[metric]

    def each(w: np.ndarray) -> np.ndarray:
        out = np.empty(len(w))
        for i, counts in enumerate(w):
            drawn = counts > 0
            out[i] = scorer(y[drawn], p[drawn], sample_weight=counts[drawn])
        return out
    return each


def bootstrap_values(y: np.ndarray, predictions: list[np.ndarray], metric: str, resamples: int,
                     seed: int | np.random.Generator) -> np.ndarray:
    """The metric of each model's ``predictions`` on each bootstrap resample of the rows, the same
    resamples for every model (paired): shape (models, resamples). O(rows) memory."""
    scorers = [_weighted(metric, y, p) for p in predictions]
    blocks = [np.stack([score(counts) for score in scorers]) for counts in resample_counts(len(y), resamples, seed)]
    return np.concatenate(blocks, axis=1) if blocks else np.empty((len(predictions), 0))


def bootstrap_interval(y: np.ndarray, p: np.ndarray, metric: str, resamples: int, confidence: float,
                       seed: int) -> tuple[float, float]:
    """The percentile bootstrap interval of one model's metric on rows ``y``/``p``."""
    alpha = (1 - confidence) / 2
    low, high = np.quantile(bootstrap_values(y, [p], metric, resamples, seed)[0], [alpha, 1 - alpha])
    return float(low), float(high)


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
    higher = METRICS[metric]
    a, b = bootstrap_values(y, [challenger, champion], metric, resamples, seed)
    if metric in _VECTOR:
        point_a, point_b = float(_VECTOR[metric](y, challenger)), float(_VECTOR[metric](y, champion))
    else:
        point_a, point_b = float(_SCORERS[metric](y, challenger)), float(_SCORERS[metric](y, champion))
    diffs = (a - b) if higher else (b - a)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return PairedDifference(metric=metric, challenger=point_a, champion=point_b,
                            difference=point_a - point_b,
                            improvement=(point_a - point_b) if higher else (point_b - point_a),
                            low=float(low), high=float(high), confidence=confidence, resamples=resamples)


@dataclasses.dataclass
class Scored:
    """One model's outputs on the holdout: labels or values, and class probabilities if it has them."""
    predictions: np.ndarray
    proba: np.ndarray | None = None
    classes: list[str] | None = None


def score(model: Any, features: Any, task: str) -> Scored:
    predictions = np.asarray(model.predict(features))
    if task == "classification":
        classes = [str(c) for c in model.classes_]
        proba = np.asarray(model.predict_proba(features)) if hasattr(model, "predict_proba") else None
        return Scored(predictions.astype(str), proba, classes)
    return Scored(predictions.astype("float64"))


def metrics_of(y: np.ndarray, scored: Scored, task: str) -> dict[str, float]:
    if task == "regression":
        return regression_metrics(y, scored.predictions)
    return classification_metrics(y, scored.predictions, scored.proba, scored.classes or sorted(set(y)))


def _slice_keys(values: Any) -> tuple[np.ndarray, str]:
    """Group labels for one slice column: its most frequent values, or quartile bins if numeric."""
    import pandas as pd

    col = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(col) and col.nunique() > MAX_SLICE_VALUES:
        bins = pd.qcut(col, QUANTILE_SLICES, duplicates="drop")
        return bins.astype(str).where(col.notna(), "(missing)").to_numpy(), "quartiles"
    labels = col.astype(str).where(col.notna(), "(missing)")
    top = labels.value_counts().index[:MAX_SLICE_VALUES]
    return labels.where(labels.isin(top), "(other)").to_numpy(), "values"


def slice_metrics(frame: Any, y: np.ndarray, challenger: Scored, champion: Scored | None, spec: DatasetSpec,
                  min_rows: int = 10) -> list[dict[str, Any]]:
    """The primary metric per value (or quartile) of each slice column, for both models."""
    out = []
    for column in spec.evaluation.slices:
        keys, kind = _slice_keys(frame[column])
        for key in sorted(set(keys)):
            mask = keys == key
            rows = int(mask.sum())
            entry: dict[str, Any] = {"column": column, "slice": str(key), "kind": kind, "rows": rows,
                                     "challenger": None, "champion": None}   # None: too few rows to say
            if rows >= min_rows:
                def on(s: Scored) -> float | None:
                    part = Scored(s.predictions[mask], None if s.proba is None else s.proba[mask], s.classes)
                    return metrics_of(y[mask], part, spec.task).get(spec.primary_metric)
                entry["challenger"] = on(challenger)
                entry["champion"] = on(champion) if champion is not None else None
            out.append(entry)
    return out


def compare(frame: Any, y: np.ndarray, challenger: Scored, champion: Scored | None,
            spec: DatasetSpec) -> dict[str, Any]:
    """The evaluator's evidence: metrics of both, the paired-bootstrap interval of the gain, slices."""
    result: dict[str, Any] = {
        "metric": spec.primary_metric, "task": spec.task, "holdout_rows": int(len(y)),
        "challenger": {"metrics": metrics_of(y, challenger, spec.task)},
        "champion": None, "difference": None,
    }
    if champion is not None:
        result["champion"] = {"metrics": metrics_of(y, champion, spec.task)}
        a, b = _bootstrap_inputs(y, challenger, champion, spec)
        result["difference"] = paired_bootstrap(
            a[0], a[1], b, spec.primary_metric, spec.evaluation.bootstrap_resamples, spec.policy.confidence,
            spec.evaluation.seed).to_dict()
    result["slices"] = slice_metrics(frame, y, challenger, champion, spec)
    return result


def _aligned(scored: Scored, classes: list[str]) -> np.ndarray:
    """A model's probabilities in the columns of ``classes`` (0 for a class it never saw)."""
    own = {c: j for j, c in enumerate(scored.classes or [])}
    out = np.zeros((len(scored.predictions), len(classes)))
    for k, c in enumerate(classes):
        if c in own:
            out[:, k] = scored.proba[:, own[c]]
    return out


def _bootstrap_inputs(y: np.ndarray, challenger: Scored, champion: Scored,
                      spec: DatasetSpec) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """What the paired bootstrap compares: predictions, or for probability metrics the positive class's
    probability (binary) or every class's (multiclass, in the challenger's class order) so that ROC AUC and log
    loss resample like the others."""
    if spec.primary_metric not in ("roc_auc", "log_loss"):
        return (y, challenger.predictions), champion.predictions
    if challenger.proba is None or champion.proba is None:
        raise ValueError(f"{spec.primary_metric} as the primary metric needs models with class probabilities")
    classes = list(challenger.classes or [])
    if len(classes) == 2 and champion.classes == classes:
        positive = (y == classes[1]).astype(float)
        return (positive, challenger.proba[:, 1]), champion.proba[:, 1]
    index = {c: k for k, c in enumerate(classes)}
    unseen = len(classes)   # a held-out class the challenger never saw: a column of zeros
    truth = np.array([index.get(str(v), unseen) for v in y])
    a, b = _aligned(challenger, classes + ["(unseen)"]), _aligned(champion, classes + ["(unseen)"])
    if spec.primary_metric == "roc_auc":
        a, b = a[:, :unseen], b[:, :unseen]
    return (truth, a), b


# ---------------------------------------------------------------- what each model relies on

def _scorer(model: Any, spec: DatasetSpec) -> Callable[[Any], Scored]:
    """How importance predicts: on the prepared path (the compiled tree walk the predictor serves, every row in one
    call) when it agrees with the model on its probe rows, else through the model's own predict."""
    from tollgate import prepared

    def own(frame: Any) -> Scored:
        return score(model, frame, spec.task)

    try:
        ready = prepared.prepare(model, spec)
    except Exception:   # a model the prepared probe cannot run (no predict_proba, …) is scored as it is
        return own
    if ready.path != "prepared":
        return own
    classes = [str(c) for c in getattr(model, "classes_", [])]

    def run(frame: Any) -> Scored:
        out = ready.predict(prepared.Columns.from_frame(frame, spec))
        if spec.task == "classification":
            return Scored(np.asarray(out.predictions).astype(str), out.probabilities, classes)
        return Scored(np.asarray(out.predictions, dtype="float64"))
    return run


def permutation_importance(challenger: Any, champion: Any | None, features: Any, y: np.ndarray,
                           spec: DatasetSpec) -> dict[str, Any]:
    """How much the primary metric worsens when one declared feature's values are shuffled among the held-out
    rows, for both models on the same rows and the same shuffles (seeded): one number per spec column, whatever
    the encoding makes of it (one-hot columns, a datetime's parts), since the raw column is what is shuffled.

    Each feature gets the mean over ``evaluation.importance_repeats`` shuffles, their standard deviation and a
    ``confidence`` interval of the mean (Student's t); positive means the model relies on it, in the metric's
    own units (a rise of an error metric counts as a loss too). The cost is one prediction of features × repeats
    copies of the rows per model, bounded by a seeded sample of at most ``evaluation.importance_rows`` rows and of
    at most ``IMPORTANCE_PREDICTIONS`` predicted rows in all."""
    import pandas as pd
    from scipy import stats

    repeats, metric = spec.evaluation.importance_repeats, spec.primary_metric
    if not repeats or not len(y):
        return {}
    rng = np.random.default_rng(spec.evaluation.seed)
    rows = np.arange(len(y))
    most = max(50, min(spec.evaluation.importance_rows, IMPORTANCE_PREDICTIONS // (repeats * features.shape[1])))
    if len(rows) > most:
        rows = np.sort(rng.choice(rows, most, replace=False))
    x, truth = features.iloc[rows].reset_index(drop=True), np.asarray(y)[rows]
    n = len(rows)
    shuffles = [rng.permutation(n) for _ in range(repeats)]   # the same for both models: a paired comparison
    sign = 1.0 if METRICS[metric] else -1.0
    spread = float(stats.t.ppf(0.5 + spec.policy.confidence / 2, repeats - 1) / np.sqrt(repeats)) if repeats > 1 \
        else 0.0

    def value(target: np.ndarray, scored: Scored) -> float:
        got = metrics_of(target, scored, spec.task).get(metric)
        return sign * float(got) if got is not None and np.isfinite(got) else float("nan")

    def of(model: Any) -> dict[str, dict[str, float]] | None:
        predict = _scorer(model, spec)
        base = value(truth, predict(x))
        if not np.isfinite(base):   # e.g. ROC AUC of rows of one class: nothing to lose
            return None
        names = list(x.columns)
        # one prediction over every feature's shuffled copies (features × repeats × rows, bounded above)
        scored = predict(pd.concat([x.assign(**{name: x[name].to_numpy()[order]}) for name in names
                                    for order in shuffles], ignore_index=True))
        out = {}
        for j, name in enumerate(names):
            parts = [slice((j * repeats + k) * n, (j * repeats + k + 1) * n) for k in range(repeats)]
            drops = np.array([base - value(truth, Scored(scored.predictions[part], None if scored.proba is None
                                                         else scored.proba[part], scored.classes))
                              for part in parts])
            mean, sd = float(np.mean(drops)), float(np.std(drops, ddof=1)) if repeats > 1 else 0.0
            out[str(name)] = {"mean": mean, "std": sd, "low": mean - spread * sd, "high": mean + spread * sd}
        return out

    mine = of(challenger)
    if mine is None:
        return {}
    theirs = of(champion) if champion is not None else None
    order = sorted(mine, key=lambda name: -mine[name]["mean"] if np.isfinite(mine[name]["mean"]) else np.inf)
    return {"metric": metric, "repeats": repeats, "rows": int(len(rows)), "confidence": spec.policy.confidence,
            "features_measured": len(order),   # the run record keeps the IMPORTANCE_KEPT most important
            "features": [{"feature": name, "challenger": mine[name],
                          "champion": None if theirs is None else theirs.get(name)}
                         for name in order[:IMPORTANCE_KEPT]]}
