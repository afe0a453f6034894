"""Memory you can plan: what a training run will need, estimated from the spec and the size of its window before
anything is fitted, so that a trainer over its job's memory stops with a reason instead of being killed (and
retried, and killed again), and `spec check` says at push time which settings will not fit.

The estimate counts what grows with the rows: the encoded design matrix (one column per numeric feature, per
datetime part, per kept category of a one-hot feature — at most ``model.max_categories`` —, one per code or target
encoding), the copies each family makes of it (float32 for the trees, the validated and binned copies of gradient
boosting, the solver's for linear models), what each builds on it (gradients, a forest's trees that grow with the
rows, nearest neighbours' stored rows, libsvm's cache), and, before the trainer can measure it, the window itself.
The factors are calibrated against `make bench-memory`, which prints the plan beside what each fit used; they
are a plan, not a measurement, and err on the generous side. Pure.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tollgate.spec import DatasetSpec

HEADROOM = 0.85             # of the job's limit: what the allocator fragments and the estimate misses
BASE_BYTES = 300 * 2**20    # the trainer's interpreter and libraries, resident before any data
TREE_NODE_BYTES = 72        # a scikit-learn tree node and its value
SCALING_ROWS = {"svm": 50_000, "knn": 200_000}   # beyond these, time (not memory) makes a family impractical


@dataclasses.dataclass(frozen=True)
class Estimate:
    bytes: int
    width: int                      # columns of the encoded design matrix
    widths: dict[str, int]          # per feature
    rows: int
    note: str                       # what dominates, in words


def feature_widths(spec: DatasetSpec, distinct: dict[str, int] | None = None, classes: int = 2) -> dict[str, int]:
    """Columns each feature becomes: ``distinct`` gives each categorical's number of values (default: as many as
    ``model.max_categories`` allows, the widest it can be)."""
    from tollgate import training
    from tollgate.transformers import PERIODS

    widths = {name: 1 for name in spec.feature_lists.numeric}
    for name in spec.feature_lists.datetime:
        column = spec.columns[name]
        widths[name] = len(column.parts) + (2 * sum(p in PERIODS for p in column.parts) if column.cyclical else 0)
    cap = spec.model.max_categories
    target_width = 1 if spec.task == "regression" or classes <= 2 else classes
    for name, encoding in training.encodings(spec).items():
        if encoding == "one_hot":
            seen = (distinct or {}).get(name, cap)
            widths[name] = min(seen, cap) + 1   # the kept values, and the infrequent ones' shared column
        elif encoding == "target":
            widths[name] = target_width
        else:
            widths[name] = 1
    return widths


def _param(spec: DatasetSpec, name: str, default: Any) -> Any:
    return spec.model.params.get(name, default)


def window(spec: DatasetSpec, rows: int) -> int:
    """What a process holding ``rows`` rows of the window uses before any fit: the interpreter and its libraries,
    eight bytes a row per number (datetimes are curated as Unix seconds), and a shared string's reference per text
    column (curated Parquet keeps text as dictionaries, so values repeat by reference). For `spec check`, which has
    no process to measure."""
    text = sum(1 for c in spec.columns.values() if c.type == "string")
    return int(BASE_BYTES + rows * ((len(spec.columns) - text) * 8 + text * 16) * 1.25)


def estimate(spec: DatasetSpec, rows: int, distinct: dict[str, int] | None = None, classes: int = 2) -> Estimate:
    """Bytes a fit of ``spec`` on ``rows`` rows adds to what the window already holds. Calibrated against
    `make bench-memory`, which fits each family and prints this plan beside what the fit used."""
    from tollgate import training

    widths = feature_widths(spec, distinct, classes)
    width = max(sum(widths.values()), 1)
    k = 1 if spec.task == "regression" or classes <= 2 else classes
    family = spec.model.estimator
    features = rows * max(len(spec.features), 1) * 8      # the feature frame the pipeline copies out of the window
    dense = rows * width * 8                              # the encoded design matrix, float64
    if family == "linear":   # the one-hot block is sparse: one stored value (and its index) per row and feature
        onehot = sum(widths[n] for n, encoding in training.encodings(spec).items() if encoding == "one_hot")
        stored = rows * (width - onehot) * 8
        total = features + stored * 2.5 + rows * len(spec.features) * 12 * 3
        note = "the design matrix and the solver's copies"
    elif family == "hist_gradient_boosting":
        copies = 3.25 if rows >= training.EARLY_STOPPING_ROWS else 2.5    # early stopping splits off a tenth
        total = features + dense * copies + rows * width + rows * k * 24
        note = "the design matrix, its validated copies, the binned copy and the gradients"
    elif family in ("random_forest", "decision_tree"):
        trees = int(_param(spec, "n_estimators", 100)) if family == "random_forest" else 1
        leaf = max(int(_param(spec, "min_samples_leaf", 1)), 1)
        depth = _param(spec, "max_depth", None)
        nodes = 2 * rows // leaf if depth is None else min(2 * rows // leaf, 2 ** (int(depth) + 1))
        value = TREE_NODE_BYTES + 8 * k
        total = features + dense * 1.5 + rows * width * 4 + trees * nodes * value
        note = f"the design matrix, its float32 copy and {trees} tree(s) of up to {nodes:,} nodes each"
    elif family == "gradient_boosting":
        total = features + dense * 1.5 + rows * width * 4 + rows * k * 24
        note = "the design matrix, its float32 copy and the gradients"
    elif family == "knn":
        total, note = features + dense * 2.1, "the stored training rows"
    elif family == "svm":
        total, note = features + dense * 2.5 + 200 * 2**20, "the support vectors and libsvm's cache"
    else:
        total, note = features + dense * 2.5, "the design matrix"
    return Estimate(int(total), width, widths, rows, note)


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def problem(spec: DatasetSpec, rows: int, limit: int, distinct: dict[str, int] | None = None,
            classes: int = 2, resident: int | None = None) -> str | None:
    """None if training ``rows`` fits in a job of ``limit`` bytes (``resident`` already used: measured by the
    trainer, planned with `window` when None); else why not and what to change, naming the widest columns and the
    settings."""
    planned = estimate(spec, rows, distinct, classes)
    resident = window(spec, rows) if resident is None else resident
    budget = limit * HEADROOM - resident
    slow = SCALING_ROWS.get(spec.model.estimator)
    if planned.bytes <= budget and (slow is None or rows <= slow):
        return None
    fits = rows_within(spec, limit, distinct, classes, resident)
    widest = sorted(planned.widths.items(), key=lambda kv: -kv[1])[:3]
    columns = ", ".join(f"{n} ({w} column{'s' if w != 1 else ''})" for n, w in widest if w > 1)
    if slow is not None and rows > slow and planned.bytes <= budget:
        return (f"{spec.model.estimator} on {rows:,} rows would take hours: it scales with the square of the rows; set "
                f"training.max_rows to at most {slow:,}, or choose hist_gradient_boosting or linear")
    advice = [f"training.max_rows to at most {fits:,}" if fits else "a smaller training.max_rows"]
    if columns:
        advice.append(f"encoding: target (or codes) or a lower model.max_categories for {columns}")
    if spec.model.estimator in ("random_forest", "decision_tree"):
        advice.append("model.params min_samples_leaf or max_depth (the trees grow with the rows)")
    return (f"{spec.model.estimator} on {rows:,} rows × {planned.width} encoded columns needs about "
            f"{_gib(planned.bytes)} for {planned.note}, more than the {_gib(budget)} this job can plan with (of its "
            f"{_gib(limit)}); set " + "; or ".join(advice))


def rows_within(spec: DatasetSpec, limit: int, distinct: dict[str, int] | None = None, classes: int = 2,
                resident: int | None = None) -> int:
    """The most rows that fit in ``limit`` (a bisection over the estimate and, when ``resident`` is not measured,
    the window's plan)."""
    low, high = 0, 100_000_000
    while low < high:
        middle = (low + high + 1) // 2
        held = window(spec, middle) if resident is None else resident
        if estimate(spec, middle, distinct, classes).bytes <= limit * HEADROOM - held:
            low = middle
        else:
            high = middle - 1
    slow = SCALING_ROWS.get(spec.model.estimator)
    return min(low, slow) if slow else low
