"""A prepared inference path for a fitted Tollgate pipeline: same predictions, a fraction of the cost.

``model.predict`` on one row spends most of its time in the ColumnTransformer (DataFrame
checks, per-transformer dispatch) and, for gradient boosting, in calling each of its hundreds
of trees separately. ``prepare`` reads the fitted pipeline once and builds:

* the model's input matrix straight from validated columns: numeric values with the fitted
  imputer/scaler statistics applied, categorical values through a lookup table read off the
  fitted imputer + one-hot encoder, or off the ordinal encoder that gives gradient boosting one code
  column per feature (unknown and missing values map exactly as the encoder maps them);
* for histogram gradient boosting, every tree flattened into one set of node arrays walked
  level by level for all trees at once (children renumbered so that right = left + 1), with the
  leaves summed in scikit-learn's own order, so raw scores match bit for bit.

Nothing is trusted: ``prepare`` predicts a sample built from the spec's ranges and the trees'
own split thresholds (both sides of each, and missing values) with both paths, and returns no
prepared path (the caller keeps plain ``predict``) unless they agree — regression to 1e-9,
classification with identical labels and probabilities to 1e-9. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from tollgate.spec import DatasetSpec

TOLERANCE = 1e-9
UNKNOWN = "\x00tollgate-unknown\x00"   # a category no encoder has seen


@dataclasses.dataclass
class Outputs:
    """Predictions for a batch: regression values, or class labels with their probabilities."""
    predictions: np.ndarray
    probabilities: np.ndarray | None = None


class Columns:
    """Validated instances as columns: a float matrix of the numeric features then the datetime ones (as Unix
    seconds; NaN = missing) in spec order (``spec.input_numeric``), and one list per categorical feature (None =
    missing)."""

    __slots__ = ("numeric", "categorical", "ids")

    def __init__(self, numeric: np.ndarray, categorical: list[list[Any]],
                 ids: dict[str, list[Any]] | None = None) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.ids = ids or {}   # identifier columns (role: id) a request carried: logged, never predicted from

    def __len__(self) -> int:
        return self.numeric.shape[0]

    @staticmethod
    def concat(parts: list["Columns"]) -> "Columns":
        if len(parts) == 1:
            return parts[0]
        numeric = np.concatenate([p.numeric for p in parts])
        categorical = [sum((p.categorical[j] for p in parts), []) for j in range(len(parts[0].categorical))]
        ids = {name: sum((p.ids.get(name) or [None] * len(p) for p in parts), []) for name in parts[0].ids}
        return Columns(numeric, categorical, ids)

    @staticmethod
    def from_frame(frame: Any, spec: DatasetSpec) -> "Columns":
        """A frame's rows as validated columns: ``training.features_frame`` dtypes (numbers and datetimes as Unix
        seconds; categories as text, missing as NaN), as the trainer and the monitor hold them."""
        import pandas as pd

        numeric = np.column_stack([pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64")
                                   for name in spec.input_numeric]) if spec.input_numeric else \
            np.zeros((len(frame), 0))
        categorical = [[None if pd.isna(v) else str(v) for v in frame[name].tolist()]
                       for name in spec.feature_lists.categorical]
        return Columns(numeric, categorical)

    def frame(self, spec: DatasetSpec) -> Any:
        """The DataFrame the registered pipeline expects (``training.features_frame`` dtypes)."""
        import pandas as pd

        data: dict[str, Any] = {name: self.numeric[:, j] for j, name in enumerate(spec.input_numeric)}
        for j, name in enumerate(spec.feature_lists.categorical):
            data[name] = pd.Series([np.nan if v is None else v for v in self.categorical[j]], dtype=object)
        return pd.DataFrame(data, index=pd.RangeIndex(len(self)))


def plain(pipeline: Any, spec: DatasetSpec) -> Callable[[Columns], Outputs]:
    """The registered model's own predict (and predict_proba): the reference and the fallback."""
    classification = spec.task == "classification"

    def run(columns: Columns) -> Outputs:
        frame = columns.frame(spec)
        if classification:
            return Outputs(np.asarray(pipeline.predict(frame)), np.asarray(pipeline.predict_proba(frame)))
        return Outputs(np.asarray(pipeline.predict(frame), dtype="float64"))

    return run


# ---------------------------------------------------------------- the preprocessing

class Unsupported(Exception):
    pass


def _numeric_block(transformer: Any, width: int) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    steps = transformer.steps if isinstance(transformer, Pipeline) else [(None, transformer)]
    ops: list[Callable[[np.ndarray], np.ndarray]] = []
    for _, step in steps:
        if step == "passthrough" or (isinstance(step, FunctionTransformer) and step.func is None):
            continue
        if isinstance(step, SimpleImputer) and step.add_indicator is False and len(step.statistics_) == width:
            fill = np.asarray(step.statistics_, dtype="float64")
            ops.append(lambda x, fill=fill: np.where(np.isnan(x), fill, x))
        elif isinstance(step, StandardScaler):
            mean = step.mean_ if step.with_mean else None
            scale = step.scale_ if step.with_std else None

            def scaled(x: np.ndarray, mean: Any = mean, scale: Any = scale) -> np.ndarray:
                x = x.copy()
                if mean is not None:
                    x -= mean
                if scale is not None:
                    x /= scale
                return x
            ops.append(scaled)
        else:
            raise Unsupported(f"numeric step {type(step).__name__}")

    def apply(x: np.ndarray) -> np.ndarray:
        for op in ops:
            x = op(x)
        return x
    return apply


def _probe(encoder: Any, names: list[str], j: int, values: list[Any]) -> Any:
    """A frame for asking a fitted encoder how it maps ``values`` of column ``names[j]``: the other columns
    hold one of their known categories."""
    import pandas as pd

    probe = pd.DataFrame({other: [encoder.categories_[k][0]] * len(values) for k, other in enumerate(names)})
    probe[names[j]] = pd.Series(values, dtype=object)
    return probe


def _codes_block(encoder: Any, names: list[str], positions: list[int]) -> tuple[
        int, Callable[[list[list[Any]], np.ndarray, int], None], list[str]]:
    """(output width, fill(columns, out, offset)): each category's code (NaN: unknown or missing) through
    lookup tables read off the fitted ordinal encoder's own output. ``positions``: where each of ``names`` is among
    the validated categorical columns."""

    if encoder.handle_unknown != "use_encoded_value" or not np.isnan(encoder.unknown_value) \
            or not np.isnan(encoder.encoded_missing_value):
        raise Unsupported("ordinal encoder does not code unknown and missing values as NaN")
    tables: list[tuple[dict[Any, float], float, float]] = []   # value → code, unknown's code, missing's code
    for j in range(len(names)):
        values = [v for v in encoder.categories_[j] if isinstance(v, str)] + [UNKNOWN, None]
        probe = _probe(encoder, names, j, [np.nan if v is None else v for v in values])
        codes = np.asarray(encoder.transform(probe), dtype="float64")[:, j]
        tables.append((dict(zip(values[:-2], codes[:-2].tolist())), float(codes[-2]), float(codes[-1])))

    def fill(categorical: list[list[Any]], out: np.ndarray, start: int) -> None:
        for j, (table, unknown, missing) in enumerate(tables):
            get = table.get
            out[:, start + j] = np.fromiter((missing if v is None else get(v, unknown)
                                             for v in categorical[positions[j]]), dtype="float64", count=out.shape[0])
    return len(names), fill, list(names)


def _categorical_block(transformer: Any, names: list[str], positions: list[int]) -> tuple[
        int, Callable[[list[list[Any]], np.ndarray, int], None], list[str]]:
    """(output width, fill(columns, out, offset), the feature of each output column): one-hot through lookup
    tables read off the encoder, or one code column per feature (``_codes_block``)."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if isinstance(transformer, OrdinalEncoder):
        return _codes_block(transformer, names, positions)
    if not isinstance(transformer, Pipeline) or len(transformer.steps) != 2:
        raise Unsupported("categorical transformer is not imputer + one-hot")
    imputer, encoder = transformer.steps[0][1], transformer.steps[1][1]
    if not (isinstance(imputer, SimpleImputer) and imputer.strategy == "constant"
            and isinstance(encoder, OneHotEncoder) and encoder.drop is None):
        raise Unsupported("categorical transformer is not constant imputer + one-hot without drop")
    widths = list(getattr(encoder, "_n_features_outs", []))
    if len(widths) != len(names):
        raise Unsupported("one-hot block widths unknown")
    fill_value = imputer.fill_value
    tables: list[tuple[dict[Any, int], int]] = []   # value → column in its block (-1: all zeros), default
    offset = 0
    for j, name in enumerate(names):
        values = [v for v in encoder.categories_[j] if isinstance(v, str)] + [UNKNOWN, fill_value]
        encoded = encoder.transform(imputer.transform(_probe(encoder, names, j, values)))
        block = np.asarray(encoded.toarray() if hasattr(encoded, "toarray") else encoded)[:, offset:offset + widths[j]]
        if not np.all((block == 0) | (block == 1)) or np.any(block.sum(axis=1) > 1):
            raise Unsupported(f"one-hot block of {name} is not one-hot")
        index = [int(np.argmax(row)) if row.any() else -1 for row in block]
        table = dict(zip(values, index))
        tables.append((table, table[UNKNOWN]))
        offset += widths[j]

    def fill(categorical: list[list[Any]], out: np.ndarray, start: int) -> None:
        rows = np.arange(out.shape[0])
        position = start
        for j, (table, default) in enumerate(tables):
            get = table.get
            cols = np.fromiter((get(fill_value if v is None else v, default) for v in categorical[positions[j]]),
                               dtype=np.intp, count=out.shape[0])
            hit = cols >= 0
            out[rows[hit], position + cols[hit]] = 1.0
            position += widths[j]
    return offset, fill, [name for name, w in zip(names, widths) for _ in range(w)]


def _datetime_part_block(transformer: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A datetime feature's block: its DatetimeParts (numpy, the fitted transformer itself), then the numeric steps
    that follow it (imputer, scaler) as ``_numeric_block`` applies them."""
    from sklearn.pipeline import Pipeline

    from tollgate.transformers import DatetimeParts

    steps = transformer.steps if isinstance(transformer, Pipeline) else [(None, transformer)]
    parts = steps[0][1]
    if not isinstance(parts, DatetimeParts):
        raise Unsupported("datetime block does not start with DatetimeParts")
    width = len(parts.get_feature_names_out())
    rest = _numeric_block(Pipeline(steps[1:]), width) if len(steps) > 1 else (lambda x: x)
    return lambda seconds: rest(parts.transform(seconds.reshape(-1, 1)))


def preprocessor(pre: Any, spec: DatasetSpec) -> tuple[int, Callable[[Columns], np.ndarray], list[str]]:
    """(the model's input width, transform(columns) → its input matrix, the declared feature each input column
    comes from)."""
    from sklearn.compose import ColumnTransformer

    if not isinstance(pre, ColumnTransformer) or pre.remainder != "drop":   # a sparse one is served dense: its
        raise Unsupported("preprocessor is not a ColumnTransformer dropping the remainder")   # width is bounded
    numeric, categorical = list(spec.feature_lists.numeric), list(spec.feature_lists.categorical)
    inputs = list(spec.input_numeric)
    blocks: list[tuple[str, int, Any]] = []   # (kind, width, apply)
    owners: list[str] = []
    for name, transformer, cols in pre.transformers_:
        if transformer == "drop" or name == "remainder":
            continue
        cols = list(cols)
        if cols == numeric:
            blocks.append(("numeric", len(cols), _numeric_block(transformer, len(cols))))
            owners += cols
        elif cols and set(cols) <= set(categorical) and name != "target":
            width, fill, of = _categorical_block(transformer, cols, [categorical.index(c) for c in cols])
            blocks.append(("categorical", width, fill))
            owners += of
        elif len(cols) == 1 and cols[0] in spec.feature_lists.datetime:
            apply = _datetime_part_block(transformer)
            column = inputs.index(cols[0])
            width = apply(np.zeros(1)).shape[1]
            blocks.append(("datetime", width, lambda x, a=apply, c=column: a(x[:, c])))
            owners += [cols[0]] * width
        else:
            raise Unsupported(f"transformer {name} takes columns {cols}")
    width = sum(w for _, w, _ in blocks)

    def transform(columns: Columns) -> np.ndarray:
        out = np.zeros((len(columns), width), dtype="float64")
        position = 0
        for kind, w, apply in blocks:
            if kind == "numeric":
                out[:, position:position + w] = apply(columns.numeric[:, :len(numeric)])
            elif kind == "datetime":
                out[:, position:position + w] = apply(columns.numeric)
            else:
                apply(columns.categorical, out, position)
            position += w
        return out
    return width, transform, owners


# ---------------------------------------------------------------- the trees

class Forest:
    """Every tree of a fitted HistGradientBoosting model in flat node arrays, walked by one compiled loop."""

    def __init__(self, model: Any) -> None:
        try:
            from tollgate import treewalk
        except ImportError as exc:   # numba missing or broken: scikit-learn's own predict serves
            raise Unsupported(f"compiled tree walk unavailable: {exc}") from exc
        self._walk = treewalk.walk
        predictors = model._predictors   # [iteration][class] → TreePredictor
        self.k = model.n_trees_per_iteration_
        self.baseline = np.asarray(model._baseline_prediction, dtype="float64").reshape(-1)
        parts, roots, start = [], [], 0
        for iteration in predictors:
            for predictor in iteration:
                nodes = predictor.nodes
                if nodes["is_categorical"].any():
                    raise Unsupported("native categorical splits")
                parts.append(nodes)
                roots.append(start)
                start += len(nodes)
        nodes = np.concatenate(parts)
        offsets = np.repeat(np.asarray(roots, dtype=np.int64), [len(p) for p in parts])
        leaf = nodes["is_leaf"].astype(bool)
        self.feature = np.where(leaf, -1, nodes["feature_idx"]).astype(np.int32)
        self.threshold = nodes["num_threshold"].astype("float64")
        self.missing_left = nodes["missing_go_to_left"].astype(np.uint8)
        self.left = np.where(leaf, 0, nodes["left"].astype(np.int64) + offsets).astype(np.int32)
        self.right = np.where(leaf, 0, nodes["right"].astype(np.int64) + offsets).astype(np.int32)
        self.value = nodes["value"].astype("float64")
        self.count = nodes["count"].astype("float64")   # training rows through each node (TreeSHAP's weights)
        self.roots = np.asarray(roots, dtype=np.int32)
        self.n_features = model.n_features_in_
        self.thresholds = {f: np.unique(self.threshold[self.feature == f]) for f in range(self.n_features)}

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw scores (n, classes): baseline plus each tree's leaf, added in scikit-learn's order."""
        x = np.ascontiguousarray(x, dtype="float64")
        out = np.empty((x.shape[0], self.k), dtype="float64")
        self._walk(x, self.feature, self.threshold, self.missing_left, self.left, self.right, self.value,
                   self.roots, self.baseline, out)
        return out


def _estimator(model: Any, spec: DatasetSpec) -> tuple[Callable[[np.ndarray], Outputs], Any]:
    """predict(X) → Outputs for the final estimator, and the forest if one was flattened."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    classification = spec.task == "classification"
    if not isinstance(model, (HistGradientBoostingRegressor, HistGradientBoostingClassifier)):
        if classification:
            return (lambda x: Outputs(np.asarray(model.predict(x)), np.asarray(model.predict_proba(x)))), None
        return (lambda x: Outputs(np.asarray(model.predict(x), dtype="float64"))), None
    forest = Forest(model)
    if classification:
        def predict(x: np.ndarray) -> Outputs:
            scores = forest.raw(x)
            encoded = (scores.ravel() > 0).astype(int) if scores.shape[1] == 1 else np.argmax(scores, axis=1)
            return Outputs(model.classes_[encoded], np.asarray(model._loss.predict_proba(scores)))
    else:
        def predict(x: np.ndarray) -> Outputs:
            return Outputs(np.asarray(model._loss.link.inverse(forest.raw(x).ravel()), dtype="float64"))
    return predict, forest


# ---------------------------------------------------------------- building and checking

@dataclasses.dataclass
class Prepared:
    predict: Callable[[Columns], Outputs]
    path: str                 # "prepared" or "plain"
    reason: str               # why plain was kept, or what was checked


def sample(spec: DatasetSpec, pipeline: Any, forest: Any = None, rows: int = 512, seed: int = 0) -> Columns:
    """Instances that exercise every branch a mismatch could hide in: values from each feature's range,
    exactly on and just either side of every split threshold, missing values, unknown categories."""
    rng = np.random.default_rng(seed)
    numeric = np.empty((rows, len(spec.input_numeric)))
    for j, name in enumerate(spec.input_numeric):
        column = spec.columns[name]
        default = (946_684_800.0, 2_524_608_000.0) if column.type == "datetime" else (-1e3, 1e3)   # 2000 to 2050
        low = column.min if column.min is not None else default[0]
        high = column.max if column.max is not None else default[1]
        values = rng.uniform(low, high, rows)
        if forest is not None and j < len(spec.feature_lists.numeric) and len(forest.thresholds.get(j, ())):
            t = rng.choice(forest.thresholds[j], rows)
            values = np.where(rng.random(rows) < 0.7, t + rng.choice([-1.0, 0.0, 1.0], rows) * np.spacing(t),
                              values)
        if column.nullable:
            values[rng.random(rows) < 0.1] = np.nan
        numeric[:, j] = values
    categorical: list[list[Any]] = []
    pre = pipeline[0]
    encoders = {}   # categorical feature → (its encoder, its index among the encoder's columns)
    for _, t, cols in pre.transformers_:
        cols = list(cols) if not isinstance(cols, str) else [cols]
        encoder = t.steps[-1][1] if hasattr(t, "steps") else t
        for k, c in enumerate(cols):
            if c in spec.feature_lists.categorical and hasattr(encoder, "categories_"):
                encoders[c] = (encoder, k)
    for j, name in enumerate(spec.feature_lists.categorical):
        known: list[Any] = list(spec.columns[name].allowed or [])
        if name in encoders:
            encoder, k = encoders[name]
            known += [v for v in encoder.categories_[k] if isinstance(v, str)]
        choices = known + ["never-seen-category", None]
        categorical.append([choices[i] for i in rng.integers(0, len(choices), rows)])
    return Columns(numeric, categorical)


def agree(expected: Outputs, actual: Outputs, task: str) -> str | None:
    """None if two outputs agree within the tolerance, else what differs."""
    if task == "regression":
        diff = float(np.max(np.abs(expected.predictions - actual.predictions))) if len(expected.predictions) else 0.0
        return None if diff <= TOLERANCE else f"max abs difference {diff:.3g} > {TOLERANCE}"
    if not np.array_equal(expected.predictions, actual.predictions):
        return f"{int(np.sum(expected.predictions != actual.predictions))} labels differ"
    diff = float(np.max(np.abs(expected.probabilities - actual.probabilities)))
    return None if diff <= TOLERANCE else f"probabilities differ by {diff:.3g} > {TOLERANCE}"


def prepare(pipeline: Any, spec: DatasetSpec, rows: int = 512) -> Prepared:
    """The fastest path that gives the registered model's predictions, checked on a sample now."""
    reference = plain(pipeline, spec)
    try:
        width, transform, _ = preprocessor(pipeline[0], spec)
        model = pipeline[-1]
        if width != model.n_features_in_:
            raise Unsupported(f"{width} prepared columns, the model takes {model.n_features_in_}")
        estimate, forest = _estimator(model, spec)
    except Unsupported as exc:
        return Prepared(reference, "plain", f"not prepared: {exc}")
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:   # a scikit-learn internal moved
        return Prepared(reference, "plain", f"not prepared: {type(exc).__name__}: {exc}")

    def predict(columns: Columns) -> Outputs:
        return estimate(transform(columns))

    check = sample(spec, pipeline, forest, rows)
    expected = reference(check)
    for size in (1, 7, rows):
        part = Columns(check.numeric[:size], [c[:size] for c in check.categorical])
        head = Outputs(expected.predictions[:size],
                       None if expected.probabilities is None else expected.probabilities[:size])
        try:
            problem = agree(head, predict(part), spec.task)
        except Exception as exc:   # what the model's own predict accepts, the prepared path must too, or go
            problem = f"{type(exc).__name__}: {str(exc)[:200]}"
        if problem:
            return Prepared(reference, "plain", f"prepared path disagrees with the model on {size} rows: {problem}")
    return Prepared(predict, "prepared", f"agrees with the registered model on {rows} sample rows")
