"""`tollgate spec infer`: a first dataset spec written from a sample of the data, as TFDV's ``infer_schema`` does
for its users: column types, nullability, ranges with a margin, categories, and a cross-validated baseline that
suggests the estimator, the primary metric and the policy's threshold. The spec is a start, commented for a person
to read and adjust; what it writes passes ``tollgate spec check``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pandas as pd
import yaml

from tollgate import spec as specs

SAMPLE_ROWS = 200_000          # rows read to infer from
BASELINE_ROWS = 5_000          # rows the baseline models are cross-validated on
MAX_CATEGORIES = 30            # a string column with more distinct values gets no `allowed` list
MAX_CLASS_VALUES = 20          # an int target with at most this many values is a classification by default
CANDIDATES = ("hist_gradient_boosting", "random_forest", "linear")


class InferError(ValueError):
    """The data cannot give a spec; the message says why and what to do."""


@dataclasses.dataclass
class Baseline:
    estimator: str
    metric: str
    score: float
    std: float
    scores: dict[str, float]


def dataset_name(stem: str) -> str:
    """A valid dataset name from a file name: ``Wine Quality-2024.csv`` → ``wine_quality_2024``."""
    name = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")
    name = re.sub(r"^[^a-z]+", "", name)[:30].rstrip("_")
    return name or "dataset"


def _column_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        present = series.dropna()
        return "int" if len(present) and bool((present % 1 == 0).all()) and present.abs().max() < 2**53 else "float"
    return "string"


def _margin(low: float, high: float, kind: str) -> tuple[float | int, float | int]:
    """The observed range widened by half its span each way (never below 0 for non-negative data), so that new
    batches from the same source pass and a broken unit (×1000) does not."""
    span = (high - low) or abs(high) or 1.0
    lo, hi = low - span / 2, high + span / 2
    if low >= 0:
        lo = max(lo, 0.0)
    if kind == "int":
        return math.floor(lo), math.ceil(hi)
    return _round(lo, down=True), _round(hi, down=False)


def _round(value: float, down: bool) -> float:
    """``value`` rounded outward to 2 significant digits."""
    if value == 0:
        return 0.0
    step = 10 ** (math.floor(math.log10(abs(value))) - 1)
    return float(f"{(math.floor if down else math.ceil)(value / step) * step:.12g}")


def infer_task(series: pd.Series) -> str:
    kind = _column_type(series)
    if kind in ("string", "bool") or (kind == "int" and series.nunique() <= MAX_CLASS_VALUES):
        return "classification"
    return "regression"


def _metric(task: str, classes: int) -> str:
    if task == "regression":
        return "r2"
    return "roc_auc" if classes == 2 else "accuracy"


def baseline(frame: pd.DataFrame, spec: specs.DatasetSpec, seed: int = 0) -> Baseline:
    """Each candidate family cross-validated (3 folds) on a sample; the best one, its mean and spread."""
    from tollgate import training

    sample = frame.sample(n=min(len(frame), BASELINE_ROWS), random_state=seed)
    scores: dict[str, float] = {}
    best: dict[str, Any] | None = None
    for estimator in CANDIDATES:
        candidate = specs.replace(spec, model__estimator=estimator, model__params={})
        try:
            result = training.cross_validate(sample, candidate, {})
        except ValueError:   # e.g. a class with fewer rows than folds
            continue
        scores[estimator] = result["score"]
        if best is None or result["score"] > best["score"]:
            best = {**result, "estimator": estimator}
    if best is None:
        raise InferError("no baseline model could be cross-validated on this data (each class needs at least 3 "
                         "rows); add rows or pass --no-baseline")
    sign = 1 if specs.METRICS[spec.primary_metric] else -1    # scikit-learn scorers are higher-is-better
    return Baseline(best["estimator"], spec.primary_metric, sign * best["score"], best["std"],
                    {k: sign * v for k, v in scores.items()})


def threshold(result: Baseline) -> float:
    """The policy's threshold: the baseline's cross-validated score less two spreads, and at least 5% of the
    score (a model that serves must do about as well as the first one could, not perfectly), rounded outward."""
    higher = specs.METRICS[result.metric]
    slack = max(2 * result.std, 0.05 * abs(result.score))
    value = result.score - slack if higher else result.score + slack
    return _round(value, down=higher) if value else 0.0


def _flow(mapping: dict[str, Any] | list[Any]) -> str:
    return yaml.safe_dump(mapping, default_flow_style=True, sort_keys=False, width=10_000).strip()


def _wrapped(key: str, items: list[str], width: int = 110) -> list[str]:
    """``  key: [a, b, ...]`` as a flow sequence broken over lines of at most ``width`` characters."""
    if not items:
        return [f"  {key}: []"]
    lines, line = [], f"  {key}: ["
    for i, item in enumerate(items):
        text = _flow([item])[1:-1] + ("]" if i == len(items) - 1 else ",")
        if len(line) + len(text) + 1 > width and not line.endswith("["):
            lines.append(line)
            line = " " * (len(key) + 5) + text
        else:
            line += ("" if line.endswith("[") else " ") + text
    return lines + [line]


def infer(frame: pd.DataFrame, name: str, target: str, task: str | None = None, with_baseline: bool = True,
          source: str = "") -> str:
    """The commented YAML of a spec for ``frame`` (a sample of the data)."""
    if target not in frame.columns:
        raise InferError(f"no column {target!r} in the data; its columns are {', '.join(map(str, frame.columns))}")
    if frame[target].isna().all():
        raise InferError(f"the target {target!r} has no values")
    specs.check_dataset_name(name)
    task = task or infer_task(frame[target])
    frame = frame[frame[target].notna()]
    columns: dict[str, dict[str, Any]] = {}
    notes: dict[str, str] = {}
    numeric: list[str] = []
    categorical: list[str] = []
    for column in frame.columns:
        series = frame[column]
        kind = _column_type(series)
        entry: dict[str, Any] = {"type": kind, "nullable": bool(series.isna().any())}
        present = series.dropna()
        distinct = int(present.nunique())
        if column == target:
            entry["nullable"] = False
            if task == "classification":
                if distinct < 2:
                    raise InferError(f"the target {target!r} has a single value ({present.iloc[0]!r}): there is "
                                     "nothing to classify")
                values = sorted(present.unique().tolist(), key=str)
                entry["allowed"] = [v.item() if hasattr(v, "item") else v for v in values]
                entry["on_fail"] = "reject"
            elif kind == "string":
                raise InferError(f"the target {target!r} holds text; a regression needs numbers (pass "
                                 "--task classification to predict its values as classes)")
        if kind in ("int", "float") and len(present) and (column != target or task == "regression"):
            entry["min"], entry["max"] = _margin(float(present.min()), float(present.max()), kind)
            notes[column] = f"seen {present.min():g} to {present.max():g}"
        if kind == "string" and column != target:
            if distinct <= MAX_CATEGORIES:
                entry["allowed"] = sorted(present.astype(str).unique().tolist())
            notes[column] = f"{distinct} distinct value(s)"
        if kind == "string" and len(present) and distinct == len(present) and len(present) > MAX_CATEGORIES:
            notes[column] = "unique per row (an identifier?): not a feature"
        elif column != target:
            (categorical if kind == "string" else numeric).append(column)
        columns[str(column)] = entry
    if not numeric and not categorical:
        raise InferError("no column besides the target can be a feature")
    classes = int(frame[target].nunique())
    raw: dict[str, Any] = {
        "name": name, "task": task, "target": target, "columns": columns,
        "features": {"numeric": numeric, "categorical": categorical},
        "evaluation": {"primary_metric": _metric(task, classes)}, "policy": {"threshold": 0.0},
    }
    spec = specs.from_dict(raw)
    result = baseline(frame, spec) if with_baseline else None
    if result is not None:
        raw["model"] = {"estimator": result.estimator}
        raw["policy"]["threshold"] = threshold(result)
        spec = specs.from_dict(raw)   # the suggestion is checked like any spec
    return _render(raw, spec, notes, result, source, len(frame))


def _render(raw: dict[str, Any], spec: specs.DatasetSpec, notes: dict[str, str], result: Baseline | None,
            source: str, rows: int) -> str:
    lines = [f"# Dataset spec inferred by `tollgate spec infer` from {source or 'a sample'} ({rows} rows).",
             "# A start: read each line, tighten what you know better, then `tollgate spec check` it.",
             f"name: {raw['name']}",
             f"task: {raw['task']}",
             f"target: {raw['target']}",
             "",
             "# Every column a batch may carry; ranges are the observed ones widened by half their span.",
             "columns:"]
    for column, entry in raw["columns"].items():
        note = f"   # {notes[column]}" if column in notes else ""
        lines.append(f"  {yaml.safe_dump(column, default_style=None).splitlines()[0]}: {_flow(entry)}{note}")
    features = raw["features"]
    lines += ["", "features:", *_wrapped("numeric", features["numeric"]),
              *_wrapped("categorical", features["categorical"]), ""]
    if result is not None:
        tried = ", ".join(f"{k} {v:.4f}" for k, v in result.scores.items())
        lines += [f"# Cross-validated {result.metric} (3 folds, up to {BASELINE_ROWS} rows): {tried}.",
                  f"# Other families: {', '.join(e for e in specs.ESTIMATORS if e not in result.scores)}.",
                  "model:", f"  estimator: {result.estimator}   # the baseline's best", ""]
    metric = raw["evaluation"]["primary_metric"]
    lines += ["evaluation:", f"  primary_metric: {metric}   # {', '.join(specs.TASK_METRICS[spec.task])}",
              "  holdout_fraction: 0.3", "", "policy:"]
    if result is not None:
        lines.append(f"  threshold: {raw['policy']['threshold']:g}   # the baseline's {result.score:.4f} less two "
                     f"spreads ({result.std:.4f}) or 5%")
    else:
        lines.append("  threshold: 0   # set the primary metric a model must reach to serve")
    lines += ["  margin: 0.0", "  confidence: 0.95", ""]
    text = "\n".join(lines)
    specs.loads(text)   # what is written is what was checked
    return text


def read_sample(path: str, rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    """The first ``rows`` rows of a CSV or Parquet file (numbers as numbers, empty cells as missing)."""
    if str(path).endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)
        return next(table.iter_batches(batch_size=rows)).to_pandas()
    return pd.read_csv(path, nrows=rows)

