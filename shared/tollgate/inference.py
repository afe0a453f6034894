"""`tollgate spec infer`: a first dataset spec that describes the file as it is, as TFDV's ``infer_schema`` does
for its users, and that the file it came from passes (``tollgate spec check --data``).

- Every row counts, those without a target too: types, nullability, ranges (widened) and categories come from all
  of them; rows whose target is empty are dropped by the validator as *unlabelled*, never a reason to reject.
- A column is described by what it holds: ``datetime`` when its text parses as ISO-8601 dates or times (or its
  integers are Unix times and its name says so), ``role: id`` when it identifies rows (unique, or a row counter)
  — kept, never learned from —, a *wide* category (more values than ``model.max_categories``) encoded by target,
  and ``allowed`` values only where they are few and stable (the same in both halves of the file).
- A time-bounded baseline cross-validates candidate families on a larger sample (time-ordered folds when a
  datetime exists) and suggests the estimator and the policy's threshold: a score the first model meets on a
  holdout of the expected size with high probability (a bootstrap of the out-of-fold predictions), not the
  cross-validated mean less a guess.

The spec is a start, commented for a person to read and adjust.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

from tollgate import spec as specs
from tollgate.baseline import BASELINE_SECONDS, Baseline, baseline, rounded
from tollgate.errors import InferError

SAMPLE_ROWS = 200_000          # rows read to infer from
MAX_ALLOWED = 30               # a text column with more distinct values gets no `allowed` list
MAX_CLASS_VALUES = 20          # an int target with at most this many values is a classification by default
ID_NAME = re.compile(r"(^|[_\W])(id|uuid|guid|key)$|[a-z]Id$|^id[_\W]", re.IGNORECASE)
TIME_NAME = re.compile(r"time|date|timestamp|epoch|_at$|^at$|datetime", re.IGNORECASE)
UNIX_SECONDS = (1e8, 5e9)      # 1973 to 2128
UNIX_MILLISECONDS = (1e11, 5e12)


def dataset_name(stem: str) -> str:
    """A valid dataset name from a file name: ``Wine Quality-2024.csv`` → ``wine_quality_2024``."""
    name = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")
    name = re.sub(r"^[^a-z]+", "", name)[:30].rstrip("_")
    return name or "dataset"


# ---------------------------------------------------------------- what each column holds

def _column_type(series: pd.Series) -> str:
    """As the file holds it: integers stay int, anything written with decimals (``151.0``) is float."""
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "string"


def _datetime_unit(name: str, series: pd.Series) -> str | None:
    """``"iso"`` for text that parses as ISO-8601 (at least 95% of it), ``"s"``/``"ms"`` for integers that are
    Unix times and whose name says they are; None otherwise."""
    present = series.dropna()
    if not len(present):
        return None
    if pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series):
        sample = present.astype(str).head(2_000)
        looks = sample.str.match(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")
        if looks.mean() < 0.95:
            return None
        parsed = pd.to_datetime(sample, utc=True, errors="coerce", format="ISO8601")
        return "iso" if parsed.notna().mean() >= 0.95 else None
    if pd.api.types.is_integer_dtype(series) and TIME_NAME.search(name):
        low, high = float(present.min()), float(present.max())
        if UNIX_SECONDS[0] <= low and high <= UNIX_SECONDS[1]:
            return "s"
        if UNIX_MILLISECONDS[0] <= low and high <= UNIX_MILLISECONDS[1]:
            return "ms"
    return None


def _identifier(name: str, series: pd.Series) -> str | None:
    """Why a column identifies rows rather than describing them (None if it does not): unique per row, a row
    counter, or named as an id with a value for almost every row."""
    present = series.dropna()
    if len(present) < 20:
        return None
    distinct = present.nunique()
    ratio = distinct / len(present)
    if pd.api.types.is_integer_dtype(series):
        values = present.to_numpy()
        if distinct == len(present) and (np.all(np.diff(values) == 1) or ratio == 1 and ID_NAME.search(name)):
            return "counts rows" if np.all(np.diff(values) == 1) else "unique per row"
        if ID_NAME.search(name) and ratio > 0.5:
            return f"named as an id, {distinct:,} values for {len(present):,} rows"
        return None
    if pd.api.types.is_float_dtype(series) or pd.api.types.is_bool_dtype(series):
        return None
    if ratio >= 0.9:
        return "unique per row" if distinct == len(present) else f"{ratio:.0%} of rows have their own value"
    return None


def _stable(series: pd.Series) -> bool:
    """The values of the file's second half are those of its first: a list new batches can be held to."""
    present = series.dropna().astype(str)
    half = len(present) // 2
    if half < 10:
        return True
    first, second = set(present.iloc[:half]), set(present.iloc[half:])
    return second <= first


def _margin(low: float, high: float, kind: str) -> tuple[float | int, float | int]:
    """The observed range widened by half its span each way (a single value: by a tenth of it), never below 0
    for non-negative data, so that new batches from the same source pass and a broken unit (×1000) does not."""
    span = (high - low) or max(abs(high) * 0.2, 1.0)
    lo, hi = low - span / 2, high + span / 2
    if low >= 0:
        lo = max(lo, 0.0)
    if kind == "int":
        return math.floor(lo), math.ceil(hi)
    return rounded(lo, down=True), rounded(hi, down=False)


def infer_task(series: pd.Series) -> str:
    kind = _column_type(series)
    if kind in ("string", "bool") or (kind == "int" and series.nunique() <= MAX_CLASS_VALUES):
        return "classification"
    return "regression"


def _metric(task: str, classes: int) -> str:
    if task == "regression":
        return "r2"
    return "roc_auc" if classes == 2 else "accuracy"


@dataclasses.dataclass
class Described:
    entry: dict[str, Any]
    group: str | None        # "numeric" | "categorical" | "datetime" | None (not a feature)
    note: str = ""


def describe(name: str, series: pd.Series, target: str, task: str, max_categories: int) -> Described:
    """One column as the spec declares it, and the feature group it goes in (if any)."""
    present = series.dropna()
    entry: dict[str, Any] = {"type": _column_type(series), "nullable": bool(series.isna().any())}
    if name == target:
        entry["nullable"] = False   # a row without a target is unlabelled: dropped, counted, never a rejection
        if task == "classification":
            values = sorted(present.unique().tolist(), key=str)
            entry["allowed"] = [v.item() if hasattr(v, "item") else v for v in values]
            return Described(entry, None, f"{len(values)} classes")
        if entry["type"] == "string":
            raise InferError(f"the target {target!r} holds text; a regression needs numbers (pass --task "
                             "classification to predict its values as classes)")
        entry["type"] = "float"   # predictions are numbers: a later 151.5 must pass
    unit = _datetime_unit(name, series) if name != target else None
    if unit is not None:
        entry["type"] = "datetime"
        if unit in ("s", "ms"):
            entry["unit"] = unit
        from tollgate.contract import datetime_seconds

        seconds = datetime_seconds(present, entry.get("unit"))[0].dropna()
        if len(seconds):
            first, last = (pd.Timestamp(seconds.min(), unit="s", tz="UTC"), pd.Timestamp(seconds.max(), unit="s",
                                                                                           tz="UTC"))
            return Described(entry, "datetime", f"times {first:%Y-%m-%d} to {last:%Y-%m-%d}")
        return Described(entry, "datetime")
    why = _identifier(name, series) if name != target else None
    if why is not None:
        entry["role"] = "id"
        return Described(entry, None, f"an identifier ({why}): kept, not learned from")
    if entry["type"] in ("int", "float") and len(present) and name != target:
        entry["min"], entry["max"] = _margin(float(present.min()), float(present.max()), entry["type"])
        return Described(entry, "numeric", f"seen {present.min():g} to {present.max():g}")
    if entry["type"] in ("int", "float") and len(present):   # a regression target
        entry["min"], entry["max"] = _margin(float(present.min()), float(present.max()), entry["type"])
        return Described(entry, None, f"seen {present.min():g} to {present.max():g}")
    if entry["type"] == "bool":
        return Described(entry, "numeric")
    if entry["type"] in ("int", "float"):   # never present
        return Described(entry, None, "always empty: not a feature")
    distinct = int(present.nunique())
    if not distinct:
        return Described(entry, None, "always empty: not a feature")
    if distinct <= MAX_ALLOWED and _stable(series):
        entry["allowed"] = sorted(present.astype(str).unique().tolist())
        return Described(entry, "categorical", f"{distinct} distinct value(s)")
    if distinct > max_categories:
        entry["encoding"] = "target"
        return Described(entry, "categorical", f"{distinct:,} distinct values: a wide category, encoded by target")
    return Described(entry, "categorical", f"{distinct} distinct value(s)")


# ---------------------------------------------------------------- the spec

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
          source: str = "", seconds: float = BASELINE_SECONDS,
          progress: Callable[[str], None] | None = None) -> str:
    """The commented YAML of a spec for ``frame`` (the file, or its first rows)."""
    if target not in frame.columns:
        raise InferError(f"no column {target!r} in the data; its columns are {', '.join(map(str, frame.columns))}")
    labelled = frame[frame[target].notna()]
    if labelled.empty:
        raise InferError(f"the target {target!r} has no values")
    specs.check_dataset_name(name)
    task = task or infer_task(labelled[target])
    if task == "classification" and labelled[target].nunique() < 2:
        raise InferError(f"the target {target!r} has a single value ({labelled[target].iloc[0]!r}): there is "
                         "nothing to classify")
    max_categories = specs.Model.model_fields["max_categories"].default
    columns: dict[str, dict[str, Any]] = {}
    notes: dict[str, str] = {}
    groups: dict[str, list[str]] = {"numeric": [], "categorical": [], "datetime": []}
    for column in frame.columns:
        described = describe(str(column), frame[column], target, task, max_categories)
        columns[str(column)] = described.entry
        if described.note:
            notes[str(column)] = described.note
        if described.group is not None:
            groups[described.group].append(str(column))
    if not any(groups.values()):
        raise InferError("no column besides the target can be a feature")
    unlabelled = len(frame) - len(labelled)
    if unlabelled:
        notes[target] = (notes.get(target, "") + "; " if notes.get(target) else "") + \
            f"empty in {unlabelled:,} of {len(frame):,} rows: those are dropped as unlabelled"
    classes = int(labelled[target].nunique())
    raw: dict[str, Any] = {
        "name": name, "task": task, "target": target, "columns": columns,
        "features": {k: v for k, v in groups.items() if v or k != "datetime"},
        "evaluation": {"primary_metric": _metric(task, classes)}, "policy": {"threshold": 0.0, "refresh": True},
    }
    if groups["datetime"]:
        raw["time_column"] = groups["datetime"][0]
    spec = specs.from_dict(raw)
    result = None
    if with_baseline:
        holdout = int(round(len(labelled) * spec.evaluation.holdout_fraction))
        result = baseline(labelled, spec, holdout_rows=holdout, seconds=seconds, progress=progress)
        raw["model"] = {"estimator": result.estimator}
        raw["policy"]["threshold"] = result.threshold
        spec = specs.from_dict(raw)   # the suggestion is checked like any spec
    return _render(raw, spec, notes, result, source, len(frame))


def _render(raw: dict[str, Any], spec: specs.DatasetSpec, notes: dict[str, str], result: Baseline | None,
            source: str, rows: int) -> str:
    lines = [f"# Dataset spec inferred by `tollgate spec infer` from {source or 'a sample'} ({rows:,} rows).",
             "# A start: read each line, tighten what you know better, then `tollgate spec check` it.",
             f"name: {raw['name']}",
             f"task: {raw['task']}",
             f"target: {raw['target']}"]
    if raw.get("time_column"):
        lines.append(f"time_column: {raw['time_column']}   # the batch's time: time-ordered baseline, window by days")
    lines += ["",
              "# Every column a batch may carry; ranges are the observed ones widened by half their span.",
              "columns:"]
    for column, entry in raw["columns"].items():
        note = f"   # {notes[column]}" if column in notes else ""
        lines.append(f"  {yaml.safe_dump(column, default_style=None).splitlines()[0]}: {_flow(entry)}{note}")
    features = raw["features"]
    lines += ["", "features:", *_wrapped("numeric", features["numeric"]),
              *_wrapped("categorical", features["categorical"])]
    if features.get("datetime"):
        lines += _wrapped("datetime", features["datetime"])
    lines.append("")
    if result is not None:
        tried = ", ".join(f"{k} {v:.4f}" for k, v in result.scores.items())
        order = "time-ordered " if result.time_ordered else ""
        lines += [f"# Cross-validated {result.metric} ({order}3 folds, {result.rows:,} rows): {tried}"
                  + (f"; not tried in the time: {', '.join(result.skipped)}" if result.skipped else "") + ".",
                  f"# Other families: {', '.join(e for e in specs.ESTIMATORS if e not in result.scores)}.",
                  "model:", f"  estimator: {result.estimator}   # the baseline's best", ""]
    metric = raw["evaluation"]["primary_metric"]
    lines += ["evaluation:", f"  primary_metric: {metric}   # {', '.join(specs.TASK_METRICS[spec.task])}",
              "  holdout_fraction: 0.3", "", "policy:"]
    if result is not None:
        lines.append(f"  threshold: {raw['policy']['threshold']:g}   # what the first model meets on its holdout in "
                     f"97.5% of draws (cross-validated {result.score:.4f} ± {result.std:.4f})")
    else:
        lines.append("  threshold: 0   # set the primary metric a model must reach to serve")
    lines += ["  margin: 0.0", "  confidence: 0.95",
              "  refresh: true   # the same model trained again on more batches serves when it scores at least as well",
              ""]
    text = "\n".join(lines)
    specs.loads(text)   # what is written is what was checked
    return text


def sniff_delimiter(head: bytes) -> str | None:
    """The delimiter of a CSV's first lines when it is not a comma (``;``, tab, ``|``), else None."""
    line = head.split(b"\n", 1)[0]
    counts = {d: line.count(d.encode()) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if best != "," and counts[best] > counts[","] else None


def read_sample(path: str, rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    """The first ``rows`` rows of a CSV (gzip too) or Parquet file (numbers as numbers, empty cells as missing,
    as the validator reads them).
    A CSV separated by anything but commas is refused, since the validator reads comma-separated files only."""
    if str(path).endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)
        return next(table.iter_batches(batch_size=rows)).to_pandas()
    import gzip

    with open(path, "rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        stream = gzip.GzipFile(fileobj=fh) if head == b"\x1f\x8b" else fh
        first = stream.read(64 * 1024)
    delimiter = sniff_delimiter(first)
    if delimiter is not None:
        label = {";": "semicolons", "\t": "tabs", "|": "pipes"}[delimiter]
        raise InferError(f"{path} is separated by {label}, and the validator reads comma-separated CSV: save it "
                         "with commas (e.g. in pandas: pd.read_csv(path, sep=...).to_csv(new, index=False)), then "
                         "infer from that file")
    # empty cells are missing, nothing else: "N/A" or "null" is text to the validator, so it is text here too
    return pd.read_csv(path, nrows=rows, keep_default_na=False, na_values=[""])
