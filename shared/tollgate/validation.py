"""Validation: hold a batch against the dataset spec's data contract and the champion's data.

The contract is a pandera schema built from the spec (ranges, allowed categories, uniqueness,
cross-field rules); it is applied chunk by chunk so a batch of any size validates in bounded
memory, with every failing check counted and a few failing rows kept as examples. Each check's
``on_fail`` says whether offending rows are dropped, only reported, or reject the whole batch;
``max_drop_fraction`` and ``min_rows`` then judge what is left. Robust outlier fences (declared per
column) are computed from the batch in a second, columnar pass. The batch is profiled on the way
and compared with the reference profile for drift (see ``tollgate.drift``).

Pure: file objects and DataFrames in, a ``ValidationResult`` out; no cloud client here.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np
import pandas as pd
import pandera.pandas as pda
import pyarrow as pa
import pyarrow.parquet as pq

from tollgate import drift
from tollgate.reading import BatchRejected, MalformedRows, check_columns, iter_chunks, prefetch
from tollgate.rules import Expression
from tollgate.spec import Column, DatasetSpec

__all__ = ["BatchRejected", "CheckResult", "ValidationResult", "contract_schema", "validate", "validate_file"]

_EXAMPLES = 5
# what each spec type is curated as: a datetime as Unix seconds (UTC)
_ARROW = {"float": pa.float64(), "int": pa.int64(), "string": pa.string(), "bool": pa.bool_(), "datetime": pa.float64()}


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


def _coerce(series: pd.Series, column: Column) -> tuple[pd.Series, pd.Series | None]:
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


class _Validation:
    """One batch's validation, fed chunk by chunk, then screened for outliers, then judged."""

    def __init__(self, spec: DatasetSpec, reference: dict[str, Any] | None) -> None:
        self.spec = spec
        self.reference = reference
        self.schema = contract_schema(spec)
        self.checks: dict[str, CheckResult] = {}
        self.rows_in = 0
        self.rows_out = 0
        self.unlabelled = 0   # rows without a target: dropped, but not counted against max_drop_fraction
        self.malformed = MalformedRows()
        self.outlier_columns = [c for c in spec.columns.values() if c.outliers]
        columns = drift.profiled_columns(spec)
        columns.update({c.name: "numeric" for c in self.outlier_columns})
        if spec.time_column and spec.columns[spec.time_column].type in ("float", "int", "datetime"):
            columns.setdefault(spec.time_column, "numeric")   # its range goes on the curated batch
        self.profile = drift.ProfileBuilder(columns, reference, spec.drift.sample_size, seed=spec.evaluation.seed)
        self.fences: dict[str, tuple[float, float]] = {}
        # what is curated, in name order: a spec read back from Firestore has its columns in no set order, and the
        # same rows must make the same bytes (the dataset keeps a batch once, by its content's sha256)
        self.kept = sorted(c.name for c in spec.columns.values() if c.role != "ignore")
        self.arrow_schema = pa.schema([(name, _ARROW[spec.columns[name].type]) for name in self.kept])

    def _record(self, name: str, kind: str, action: str, mask: np.ndarray, message: str, frame: pd.DataFrame,
                columns: list[str], column: str | None = None, first_row: int | None = None) -> None:
        """Count a check's failures; keep the first few failing rows (1-based ``row`` when known)."""
        count = int(np.count_nonzero(mask))
        if not count:
            return
        check = self.checks.setdefault(name, CheckResult(name=name, kind=kind, action=action, failed_rows=0,
                                                         message=message, column=column))
        check.failed_rows += count
        if len(check.examples) < _EXAMPLES:
            positions = np.flatnonzero(mask)[: _EXAMPLES - len(check.examples)]
            rows = frame.iloc[positions][[c for c in columns if c in frame]]
            for position, values in zip(positions, rows.to_dict("records")):
                example = {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
                           for k, v in values.items()}
                check.examples.append(example if first_row is None
                                      else {"row": first_row + int(position), **example})

    def feed(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray | None]:
        """The chunk typed as the spec declares, and which rows pass the contract (None: all of them);
        failures are recorded and kept rows profiled."""
        if not self.rows_in:
            check_columns([str(c) for c in raw.columns], self.spec)
            ignored = [str(c) for c in raw.columns if c not in self.spec.columns]
            if ignored:   # extra_columns: ignore (check_columns refused them otherwise)
                self.checks["ignored_columns"] = CheckResult(
                    name="ignored_columns", kind="columns", action="report", failed_rows=0,
                    message=f"not declared in the spec, left out (extra_columns: ignore): {', '.join(ignored)}")
        if any(c not in self.spec.columns for c in raw.columns):
            raw = raw[[c for c in raw.columns if c in self.spec.columns]]
        raw = raw.reset_index(drop=True)
        first_row = self.rows_in + 1
        self.rows_in += len(raw)
        cast: dict[str, pd.Series] = {}      # only the columns whose values change
        drop = np.zeros(len(raw), dtype=bool)

        def record(name: str, kind: str, action: str, mask: np.ndarray, message: str, columns: list[str],
                   column: str | None = None) -> None:
            self._record(name, kind, action, mask, message, raw, columns, column, first_row)
            if action != "report":
                drop[mask] = True

        for col in self.spec.columns.values():
            if col.role == "ignore":   # may be there, is never checked nor curated
                continue
            if col.name not in raw:
                numeric = col.type in ("float", "int", "datetime")
                cast[col.name] = pd.Series(np.nan if numeric else None, index=raw.index,
                                           dtype="float64" if numeric else "str")
                continue
            given = raw[col.name]
            values, bad_type = _coerce(given, col)
            if values is not given:
                cast[col.name] = values
            present = values.notna().to_numpy()
            if bad_type is not None:
                bad_type = bad_type.to_numpy(dtype=bool)
                record(f"{col.name}:type", "column", col.on_fail, bad_type, f"are not of type {col.type}",
                       [col.name], col.name)
            if col.name == self.spec.target and col.on_fail == "drop":   # no label: nothing to learn from
                missing = ~present if bad_type is None else ~present & ~bad_type
                self.unlabelled += int(np.count_nonzero(missing))
                record(f"{col.name}:unlabelled", "rows", "drop", missing,
                       "have no target: unlabelled, left out (never a reason to reject the batch)", [col.name],
                       col.name)
            elif not col.nullable:
                missing = ~present if bad_type is None else ~present & ~bad_type
                record(f"{col.name}:not_null", "column", col.on_fail, missing,
                       "are empty but the column may not be", [col.name], col.name)
            for check in self.schema.columns[col.name].checks:   # ignore_na=False: full-length outputs
                failed = ~check(values).check_output.to_numpy(dtype=bool) & present
                record(check.name, "column", col.on_fail, failed, check.error, [col.name], col.name)
        frame = raw.assign(**cast)[self.kept] if cast or len(self.kept) != len(raw.columns) else raw
        for rule, expression, check in zip(self.spec.rules, self.spec.parsed_rules, self.schema.checks):
            try:
                failed = ~check(frame).check_output.to_numpy(dtype=bool)
            except Exception as exc:  # a spec error, not a data error: reject with the spec's fault named
                raise BatchRejected("bad_rule", f"rule {rule.name!r} cannot be evaluated ({exc}); "
                                                "fix the dataset spec") from exc
            record(rule.name, "rule", rule.on_fail, failed, check.error, list(expression.columns))
        keep = ~drop if drop.any() else None
        self.profile.add(frame, keep)
        self.rows_out += len(frame) if keep is None else int(np.count_nonzero(keep))
        return frame, keep

    def to_arrow(self, frame: pd.DataFrame, keep: np.ndarray | None = None) -> pa.Table:
        table = pa.Table.from_pandas(frame, schema=self.arrow_schema, preserve_index=False)
        return table if keep is None else table.filter(pa.array(keep))

    def compute_fences(self, batch_profile: dict[str, Any]) -> None:
        for col in self.outlier_columns:
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
            if hi > lo:   # zero spread (e.g. mostly zeros): robust fences are undefined, flag nothing
                self.fences[col.name] = (float(lo), float(hi))

    @property
    def drops_outliers(self) -> bool:
        return any(c.outliers.on_fail != "report" for c in self.outlier_columns if c.name in self.fences)

    def screen(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Count (and, where the spec says so, drop) rows outside the robust fences."""
        drop = np.zeros(len(frame), dtype=bool)
        for col in self.outlier_columns:
            if col.name not in self.fences:
                continue
            lo, hi = self.fences[col.name]
            values = frame[col.name].to_numpy(dtype="float64", na_value=np.nan)
            mask = (values < lo) | (values > hi)          # NaN compares False: missing values are no outliers
            self._record(f"{col.name}:outlier", "outlier", col.outliers.on_fail, mask,
                         f"lie outside the robust fences [{lo:.4g}, {hi:.4g}] ({col.outliers.method}, "
                         f"k={col.outliers.k:g})", frame, [col.name], col.name)
            if col.outliers.on_fail != "report":
                drop |= mask
        self.rows_out -= int(np.count_nonzero(drop))
        return frame.iloc[np.flatnonzero(~drop)] if drop.any() else frame

    def finish(self, batch_profile: dict[str, Any]) -> ValidationResult:
        spec = self.spec
        if self.malformed.count:
            self.rows_in += self.malformed.count
            self.checks["malformed_lines"] = CheckResult(
                name="malformed_lines", kind="rows", action="drop", failed_rows=self.malformed.count,
                message="have a different number of fields than the header", examples=self.malformed.examples)
        checks = list(self.checks.values())
        drift_result = drift.compare(self.reference, batch_profile, spec.drift)
        result = ValidationResult("valid", self.rows_in, self.rows_out, checks, drift=drift_result,
                                  profile=batch_profile)
        rejecting = [c for c in checks if c.action == "reject"]
        dropped = self.rows_in - self.rows_out
        labelled = self.rows_in - self.unlabelled
        failing = dropped - self.unlabelled
        if rejecting:
            result.reason = "rule_rejected"
            result.message = "; ".join(f"{c.name}: {c.failed_rows} row(s) {c.message}" for c in rejecting)
        elif labelled and failing / labelled > spec.max_drop_fraction:
            result.reason = "too_many_dropped"
            result.message = (f"{failing} of {labelled} labelled rows ({failing / labelled:.0%}) fail row checks, "
                              f"more than the {spec.max_drop_fraction:.0%} the spec allows; "
                              "see the failed checks for examples")
        elif self.rows_out < spec.min_rows:
            result.reason = "too_few_rows"
            result.message = f"{self.rows_out} usable rows, fewer than the {spec.min_rows} the spec requires"
        if result.reason:
            result.status = "rejected"
            return result
        result.message = (f"{self.rows_out} of {self.rows_in} rows valid" + (f", {dropped} dropped" if dropped else "")
                          + (f" ({self.unlabelled} unlabelled)" if self.unlabelled else "")
                          + f"; drift {drift_result['verdict']}")
        return result


def validate(df: pd.DataFrame, spec: DatasetSpec, reference: dict[str, Any] | None = None) -> ValidationResult:
    """Validate a batch already in memory; a valid result carries the clean rows in ``data``."""
    return _validate_chunks([df], spec, reference, sink=None)


def validate_file(fh: IO[bytes], spec: DatasetSpec, out: Path | str, reference: dict[str, Any] | None = None,
                  size: int | None = None, chunk_bytes: int | None = None) -> ValidationResult:
    """Validate a file in chunks; the clean rows of a valid batch are written to ``out`` as Parquet.

    Memory stays bounded by the chunk size whatever the file's; nothing is written to ``out`` for a
    rejected batch.
    """
    out = Path(out)
    kwargs = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    try:
        return _validate_chunks(None, spec, reference, sink=out, source=(fh, size, kwargs))
    except BatchRejected as exc:
        return ValidationResult.rejected_file(exc)


def _validate_chunks(frames: Iterable[pd.DataFrame] | None, spec: DatasetSpec, reference: dict[str, Any] | None,
                     sink: Path | None, source: tuple[IO[bytes], int | None, dict[str, Any]] | None = None,
                     ) -> ValidationResult:
    run = _Validation(spec, reference)
    if source is not None:
        fh, size, kwargs = source
        frames = prefetch(iter_chunks(fh, spec, size=size, malformed=run.malformed, **kwargs))
    if sink is None:   # in memory
        try:
            clean = [run.to_arrow(*run.feed(frame)) for frame in frames]
        except BatchRejected as exc:
            return ValidationResult.rejected_file(exc)
        batch_profile = run.profile.result()
        run.compute_fences(batch_profile)
        data = run.screen(pa.concat_tables(clean).to_pandas())
        result = run.finish(batch_profile)
        if result.status == "valid":
            result.data = data.reset_index(drop=True)
        return result
    staged = sink.with_name(sink.name + ".contract")
    try:
        with pq.ParquetWriter(staged, run.arrow_schema, compression="zstd") as writer, \
                ThreadPoolExecutor(1, thread_name_prefix="tollgate-writer") as background:
            pending = None     # one chunk is written while the next is validated
            for frame in frames:
                frame, keep = run.feed(frame)
                if pending is not None:
                    pending.result()
                pending = background.submit(lambda f=frame, k=keep: writer.write_table(run.to_arrow(f, k)))
            if pending is not None:
                pending.result()
        batch_profile = run.profile.result()
        run.compute_fences(batch_profile)
        if run.drops_outliers:
            with pq.ParquetWriter(sink, run.arrow_schema, compression="zstd") as writer:
                for batch in pq.ParquetFile(staged).iter_batches():
                    writer.write_table(run.to_arrow(run.screen(batch.to_pandas())))
        else:   # outliers are only reported: count them on their own columns, keep the file
            if run.fences:
                for batch in pq.ParquetFile(staged).iter_batches(columns=list(run.fences)):
                    run.screen(batch.to_pandas())
            os.replace(staged, sink)
        result = run.finish(batch_profile)
    finally:
        staged.unlink(missing_ok=True)
    if result.status != "valid":
        sink.unlink(missing_ok=True)
    return result
