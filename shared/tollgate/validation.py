"""Validation: hold a batch, chunk by chunk, against the dataset spec's data contract and the champion's data.

The contract itself is pure and lives in ``tollgate.contract`` (the pandera schema, typing, outlier fences, the
verdict); here it is applied to a batch of any size in bounded memory: each chunk is typed and checked, every
failing check counted with a few failing rows kept as examples, kept rows profiled; then outliers are screened in
a second, columnar pass, the batch's profile is compared with the reference for drift (``tollgate.drift``) and
the verdict is taken. Each check's ``on_fail`` says whether offending rows are dropped, only reported, or reject
the whole batch.

The edge: ``validate`` takes a DataFrame, ``validate_file`` a file object and writes the clean rows of a valid
batch to a local Parquet file (nothing for a rejected one); no cloud client here.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tollgate import drift
from tollgate.contract import CheckResult, ValidationResult, coerce, contract_schema, outlier_fences, verdict
from tollgate.reading import BatchRejected, MalformedRows, check_columns, iter_chunks, prefetch
from tollgate.spec import DatasetSpec

__all__ = ["BatchRejected", "validate", "validate_file"]

_EXAMPLES = 5
# what each spec type is curated as: a datetime as Unix seconds (UTC)
_ARROW = {"float": pa.float64(), "int": pa.int64(), "string": pa.string(), "bool": pa.bool_(), "datetime": pa.float64()}


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
            values, bad_type = coerce(given, col)
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
        self.fences = outlier_fences(self.outlier_columns, batch_profile)

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
        if self.malformed.count:
            self.rows_in += self.malformed.count
            self.checks["malformed_lines"] = CheckResult(
                name="malformed_lines", kind="rows", action="drop", failed_rows=self.malformed.count,
                message="have a different number of fields than the header", examples=self.malformed.examples)
        return verdict(self.spec, list(self.checks.values()), self.rows_in, self.rows_out, self.unlabelled,
                       drift.compare(self.reference, batch_profile, self.spec.drift), batch_profile)


# ---------------------------------------------------------------- the edge: frames and files in

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
