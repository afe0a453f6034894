"""Tollgate's own scikit-learn transformers: what a model learns from a datetime, the same in training, the
evaluator, the predictor and batch scoring because it is part of the fitted pipeline.

They hold plain attributes only (strings, numbers, tuples), so their skops nodes are plain data, and they are on
the artifact allow-list by their exact names (``tollgate.artifacts``). Pure numpy: no I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

DAY = 86_400.0
PERIODS = {"month": 12.0, "day_of_week": 7.0, "hour": 24.0}   # the parts a cyclical encoding wraps around


def calendar_parts(seconds: np.ndarray, parts: tuple[str, ...], origin: float) -> dict[str, np.ndarray]:
    """Each part of Unix times (UTC) as floats; NaN where the time is missing. ``elapsed_days`` counts from
    ``origin`` (the earliest training time), so a model can follow a trend."""
    seconds = np.asarray(seconds, dtype="float64")
    missing = ~np.isfinite(seconds)
    stamp = np.where(missing, 0, np.round(seconds * 1e6)).astype("int64").astype("datetime64[us]")
    days = stamp.astype("datetime64[D]")
    out: dict[str, np.ndarray] = {}
    for part in parts:
        if part == "year":
            value = stamp.astype("datetime64[Y]").astype("int64") + 1970
        elif part == "month":
            value = stamp.astype("datetime64[M]").astype("int64") % 12 + 1
        elif part == "day":
            value = (days - stamp.astype("datetime64[M]").astype("datetime64[D]")).astype("int64") + 1
        elif part == "day_of_week":   # Monday 0 ... Sunday 6 (1970-01-01 was a Thursday)
            value = (days.astype("int64") + 3) % 7
        elif part == "hour":
            value = (stamp - days).astype("timedelta64[h]").astype("int64")
        elif part == "minute":
            value = (stamp - days).astype("timedelta64[m]").astype("int64") % 60
        elif part == "day_of_year":
            value = (days - stamp.astype("datetime64[Y]").astype("datetime64[D]")).astype("int64") + 1
        elif part == "elapsed_days":
            value = (seconds - origin) / DAY
        else:
            raise ValueError(f"unknown datetime part {part!r}")
        out[part] = np.where(missing, np.nan, np.asarray(value, dtype="float64"))
    return out


class DatetimeParts(TransformerMixin, BaseEstimator):
    """Datetime columns (Unix seconds) → their calendar parts, and with ``cyclical`` month, day of week and hour
    also as sine and cosine. Missing times give missing parts (gradient boosting routes them; other families
    impute after this step)."""

    def __init__(self, parts: tuple[str, ...] = ("year", "month", "day", "day_of_week", "hour"),
                 cyclical: bool = False) -> None:
        self.parts = parts
        self.cyclical = cyclical

    def fit(self, X: Any, y: Any = None) -> "DatetimeParts":
        values = self._values(X)
        self.n_features_in_ = int(values.shape[1])
        if hasattr(X, "columns"):
            self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        finite = values[np.isfinite(values)]
        self.origin_ = float(finite.min()) if finite.size else 0.0
        return self

    @staticmethod
    def _values(X: Any) -> np.ndarray:
        values = np.asarray(X, dtype="float64")
        return values.reshape(-1, 1) if values.ndim == 1 else values

    def _names(self) -> list[str]:
        names = list(self.parts)
        if self.cyclical:
            names += [f"{p}_{f}" for p in self.parts if p in PERIODS for f in ("sin", "cos")]
        return names

    def transform(self, X: Any) -> np.ndarray:
        values = self._values(X)
        if values.shape[1] != self.n_features_in_:
            raise ValueError(f"DatetimeParts was fitted on {self.n_features_in_} columns, got {values.shape[1]}")
        blocks = []
        for j in range(values.shape[1]):
            parts = calendar_parts(values[:, j], tuple(self.parts), self.origin_)
            blocks.extend(parts[p] for p in self.parts)
            if self.cyclical:
                for p in self.parts:
                    if p in PERIODS:
                        angle = 2 * np.pi * parts[p] / PERIODS[p]
                        blocks.extend((np.sin(angle), np.cos(angle)))
        return np.column_stack(blocks) if blocks else np.empty((values.shape[0], 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        columns = (list(input_features) if input_features is not None
                   else list(getattr(self, "feature_names_in_", [f"x{j}" for j in range(self.n_features_in_)])))
        return np.asarray([f"{c}_{n}" for c in columns for n in self._names()], dtype=object)
