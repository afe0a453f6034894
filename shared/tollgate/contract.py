"""The data contract, pure: what a batch is held to and what the counts make of it, on frames and dicts only.

- ``contract_schema``: the spec's ranges, allowed values, uniqueness and cross-field rules as a pandera schema;
- ``coerce`` and ``datetime_seconds``: values typed as the spec declares, with the mask of those that are not;
- ``outlier_fences``: each screened column's robust fences from the batch's profile sample;
- ``verdict``: valid or rejected (and why) from the counted checks and row counts.

``tollgate.validation`` feeds these chunk by chunk from files; here nothing reads, writes or keeps state across
batches, so each part is tested on a five-row frame.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pandera.pandas as pda

from tollgate.reading import BatchRejected
from tollgate.rules import Expression
from tollgate.spec import Column, DatasetSpec

__all__ = ["CheckResult", "ValidationResult", "coerce", "contract_schema", "datetime_seconds", "outlier_fences",
           "verdict"]


@dataclasses.dataclass
class CheckResult:
    name: str
    kind: str                 # "column" | "rule" | "outlier" | "rows" | "columns" (ignored ones)
    action: str               # "drop" | "reject" | "report"
    failed_rows: int
    message: str
    column: str | None = None
    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ValidationResult:
    status: str               # "valid" | "rejected"
    rows_in: int
    rows_out: int
    checks: list[CheckResult]
    reason: str | None = None
    message: str = ""
    drift: dict[str, Any] = dataclasses.field(default_factory=lambda: {"verdict": "none", "features": []})
    profile: dict[str, Any] | None = dataclasses.field(default=None, repr=False)
    data: pd.DataFrame | None = dataclasses.field(default=None, repr=False)

    @property
    def rows_dropped(self) -> int:
        return self.rows_in - self.rows_out

    def summary(self) -> dict[str, Any]:
        """What goes into validation.json: everything but the data and the batch's samples."""
        return {
            "status": self.status, "reason": self.reason, "message": self.message,
            "rows_in": self.rows_in, "rows_out": self.rows_out, "rows_dropped": self.rows_dropped,
            "checks": [c.to_dict() for c in self.checks], "drift": self.drift,
            "profile": _without_samples(self.profile),
        }

    @classmethod
    def rejected_file(cls, exc: BatchRejected) -> "ValidationResult":
        return cls("rejected", 0, 0, [], reason=exc.reason, message=exc.message,
                   drift={"verdict": "none", "reason": "not_read", "message": "the file could not be read",
                          "features": []})


def _without_samples(profile: dict[str, Any] | None) -> dict[str, Any] | None:
    if profile is None:
        return None
    return {**profile, "columns": {k: {f: v for f, v in c.items() if f != "sample"}
                                   for k, c in profile["columns"].items()}}


class _SeenKeys:
    """A pandera check for a unique column across every chunk of a batch: a value passes the first
    time it is seen; empty values always pass (as NULLs in SQL). Keeps one 64-bit hash per value."""

    def __init__(self) -> None:
        self.seen = np.empty(0, dtype=np.uint64)

    def __call__(self, series: pd.Series) -> pd.Series:
        hashes = pd.util.hash_pandas_object(series, index=False).to_numpy()
        first = ~pd.Series(hashes).duplicated().to_numpy() & ~np.isin(hashes, self.seen)
        self.seen = np.union1d(self.seen, hashes[first])
        return pd.Series(first | series.isna().to_numpy(), index=series.index)


def _rule_check(expression: Expression):
    """A cross-field rule as a pandera check: evaluated in the closed rule language (tollgate.rules), parsed when
    the spec was loaded; never with eval."""

    def holds(df: pd.DataFrame) -> pd.Series:
        return expression.holds(df)
    return holds


def contract_schema(spec: DatasetSpec) -> pda.DataFrameSchema:
    """The spec's data contract as a pandera schema (types are enforced before, when values are read).

    Each check is named ``<column>:<kind>`` or after its rule; a rule that only reports is a pandera
    warning check. What a failure does (drop or reject) is the column's or rule's ``on_fail``.
    """
    columns = {}
    for col in spec.columns.values():
        checks = []
        if col.min is not None and col.max is not None:
            checks.append(pda.Check.in_range(col.min, col.max, name=f"{col.name}:range", ignore_na=False,
                                             error=f"are outside the range [{col.min:g}, {col.max:g}]"))
        elif col.min is not None:
            checks.append(pda.Check.ge(col.min, name=f"{col.name}:min", error=f"are below the minimum {col.min:g}",
                                       ignore_na=False))
        elif col.max is not None:
            checks.append(pda.Check.le(col.max, name=f"{col.name}:max", error=f"are above the maximum {col.max:g}",
                                       ignore_na=False))
        if col.allowed is not None:
            listed = ", ".join(map(str, col.allowed))
            checks.append(pda.Check.isin(list(col.allowed), name=f"{col.name}:allowed", ignore_na=False,
                                         error=f"are not among the allowed values ({listed})"))
        if col.unique:
            checks.append(pda.Check(_SeenKeys(), name=f"{col.name}:unique", ignore_na=False,
                                    error="repeat a value seen earlier in the batch (the column must be unique)"))
        columns[col.name] = pda.Column(checks=checks, nullable=col.nullable, required=col.required, unique=False)
    if len(spec.parsed_rules) != len(spec.rules):   # a spec built by hand, not loaded: its rules are unchecked
        raise ValueError(f"spec {spec.name}: its rules were not parsed; load it with tollgate.spec.from_dict")
    rules = [pda.Check(_rule_check(e), name=r.name, raise_warning=r.on_fail == "report",
                       error=f"break the rule `{e.text}`" + (f" ({r.description})" if r.description else ""))
             for r, e in zip(spec.rules, spec.parsed_rules)]
    return pda.DataFrameSchema(columns, checks=rules, name=spec.name)


def datetime_seconds(series: pd.Series, unit: str | None) -> tuple[pd.Series, pd.Series]:
    """A datetime column's values as Unix seconds (UTC): numbers in ``unit`` (``s`` by default, ``ms``), ISO-8601
    text (a naive time is UTC; a date is its midnight); (seconds, mask of values that did not parse)."""
    scale = 1000.0 if unit == "ms" else 1.0
    if series.dtype.kind in "fiu":
        seconds = series.astype("float64") / scale
        return seconds, series.notna() & ~np.isfinite(seconds)
    text = series.astype("string").str.strip()
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    times = text.where(numbers.isna() & text.notna())
    parsed = pd.to_datetime(times, utc=True, errors="coerce", format="ISO8601")
    seconds = (numbers / scale).where(numbers.notna(),
                                      pd.Series(parsed.to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9,
                                                index=series.index).where(parsed.notna()))
    return seconds.astype("float64"), (series.notna() & seconds.isna()).astype(bool)


def coerce(series: pd.Series, column: Column) -> tuple[pd.Series, pd.Series | None]:
    """Cast to the declared type; returns (cast series, mask of values that did not parse, or None)."""
    kind = series.dtype.kind
    if column.type == "datetime":
        seconds, bad = datetime_seconds(series, column.unit)
        return seconds, bad
    if column.type == "float":
        if kind in "fiu":
            return (series if series.dtype == np.float64 else series.astype("float64")), None
        cast = pd.to_numeric(series, errors="coerce").astype("float64")
        return cast, series.notna() & cast.isna()
    if column.type == "int":
        if kind in "iu":
            return series, None
        cast = series.astype("float64") if kind == "f" else pd.to_numeric(series, errors="coerce").astype("float64")
        bad = series.notna() & cast.isna()
        bad |= cast.notna() & ((cast % 1 != 0) | (cast.abs() >= 2.0**63))   # whole, and within int64
        return cast.mask(bad), bad   # a value that failed its type is never written (nor overflows int64)
    if column.type == "bool":
        if kind == "b":
            return series, None
        cast = series.astype("str").str.lower().map({"true": True, "1": True, "false": False, "0": False})
        return cast, series.notna() & cast.isna()
    if isinstance(series.dtype, pd.StringDtype):
        return series, None
    return series.astype("str").where(series.notna(), None).astype("str"), None


# ---------------------------------------------------------------- the fences and the verdict

def outlier_fences(columns: Iterable[Column], batch_profile: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Each outlier-screened column's robust fences [low, high] from the batch's profile sample (IQR: the
    quartiles widened by k spreads; MAD: the median ± k scaled absolute deviations). A column with fewer than
    ten values, or with no spread (mostly one value), gets none: it flags nothing."""
    fences: dict[str, tuple[float, float]] = {}
    for col in columns:
        entry = batch_profile["columns"].get(col.name, {})
        sample = np.asarray(entry.get("sample") or [], dtype=float)
        if sample.size < 10:
            continue
        if col.outliers.method == "iqr":
            q1, q3 = np.quantile(sample, [0.25, 0.75])
            lo, hi = q1 - col.outliers.k * (q3 - q1), q3 + col.outliers.k * (q3 - q1)
        else:
            median = float(np.median(sample))
            mad = 1.4826 * float(np.median(np.abs(sample - median)))
            lo, hi = median - col.outliers.k * mad, median + col.outliers.k * mad
        if hi > lo:
            fences[col.name] = (float(lo), float(hi))
    return fences


def verdict(spec: DatasetSpec, checks: list[CheckResult], rows_in: int, rows_out: int, unlabelled: int,
            drift_result: dict[str, Any], profile: dict[str, Any] | None = None) -> ValidationResult:
    """What the counted checks make of the batch: rejected when a check rejects, when more of its labelled rows
    fail row checks than ``max_drop_fraction`` (rows without a target never count), or when fewer than
    ``min_rows`` are left; valid otherwise."""
    result = ValidationResult("valid", rows_in, rows_out, checks, drift=drift_result, profile=profile)
    rejecting = [c for c in checks if c.action == "reject"]
    dropped = rows_in - rows_out
    labelled = rows_in - unlabelled
    failing = dropped - unlabelled
    if rejecting:
        result.reason = "rule_rejected"
        result.message = "; ".join(f"{c.name}: {c.failed_rows} row(s) {c.message}" for c in rejecting)
    elif labelled and failing / labelled > spec.max_drop_fraction:
        result.reason = "too_many_dropped"
        result.message = (f"{failing} of {labelled} labelled rows ({failing / labelled:.0%}) fail row checks, "
                          f"more than the {spec.max_drop_fraction:.0%} the spec allows; "
                          "see the failed checks for examples")
    elif rows_out < spec.min_rows:
        result.reason = "too_few_rows"
        result.message = f"{rows_out} usable rows, fewer than the {spec.min_rows} the spec requires"
    if result.reason:
        result.status = "rejected"
        return result
    result.message = (f"{rows_out} of {rows_in} rows valid" + (f", {dropped} dropped" if dropped else "")
                      + (f" ({unlabelled} unlabelled)" if unlabelled else "")
                      + f"; drift {drift_result['verdict']}")
    return result
