"""Validation: read a dropped batch and hold it against the dataset spec's contract.

Pure: bytes/paths and DataFrames in, a ``ValidationResult`` out; no cloud client here.
Every way a batch can fail has a machine-readable ``reason`` and a message a person can act on.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tollgate.spec import Column, DatasetSpec

_EXAMPLES = 5
_SNIFF = 64 * 1024


class BatchRejected(Exception):
    """The batch as a whole cannot be used; ``reason`` is a stable code, the message is for people."""

    def __init__(self, reason: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.detail = detail


@dataclasses.dataclass
class CheckResult:
    name: str
    kind: str                 # "column" | "rule" | "rows"
    action: str               # "drop" | "reject"
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
    data: pd.DataFrame | None = dataclasses.field(default=None, repr=False)

    @property
    def rows_dropped(self) -> int:
        return self.rows_in - self.rows_out

    def summary(self) -> dict[str, Any]:
        """What goes on the run record and into validation.json (everything but the data)."""
        return {
            "status": self.status, "reason": self.reason, "message": self.message,
            "rows_in": self.rows_in, "rows_out": self.rows_out, "rows_dropped": self.rows_dropped,
            "checks": [c.to_dict() for c in self.checks],
        }


def read_table(path: Path | str) -> pd.DataFrame:
    """Read CSV (UTF-8, with or without BOM), gzip-compressed CSV or Parquet, all as strings for CSV.

    Raises ``BatchRejected`` with a specific reason for each way a file can be unreadable.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise BatchRejected("empty_file", "the file is empty (0 bytes): nothing to validate")
    with path.open("rb") as fh:
        head = fh.read(4)
    if head == b"PAR1":
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise BatchRejected("unreadable_parquet", f"the file looks like Parquet but cannot be read: {exc}") from exc
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        except (OSError, EOFError) as exc:
            raise BatchRejected("corrupt_gzip", f"the file is gzip-compressed but cannot be decompressed: {exc}") from exc
    else:
        raw = path.read_bytes()
    return _read_csv_bytes(raw)


def _read_csv_bytes(raw: bytes) -> pd.DataFrame:
    if not raw.strip():
        raise BatchRejected("empty_file", "the file has no content (only whitespace)")
    sample = raw[:_SNIFF]
    if b"\x00" in sample:
        raise BatchRejected("not_a_table", "the file is binary, not CSV, gzip-compressed CSV or Parquet")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchRejected(
            "bad_encoding",
            f"the file is not UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
            "re-save it as UTF-8 (e.g. `iconv -f LATIN1 -t UTF-8`) and drop it again",
        ) from exc
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError as exc:
        raise BatchRejected("empty_file", "the file has no header row") from exc
    except pd.errors.ParserError as exc:
        raise BatchRejected("malformed_csv", f"the CSV cannot be parsed: {exc}") from exc
    if len(df.columns) == 1:
        header = str(df.columns[0])
        for delimiter, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if delimiter in header:
                raise BatchRejected("wrong_delimiter",
                                    f"the header is split by {label}, not commas; save the file as comma-separated CSV")
    if df.empty:
        raise BatchRejected("no_rows", "the file has a header but no data rows")
    return df


def _coerce(series: pd.Series, column: Column) -> tuple[pd.Series, pd.Series]:
    """Cast to the declared type; returns (cast series, mask of values that did not parse)."""
    present = series.notna()
    if column.type in ("float", "int"):
        cast = pd.to_numeric(series, errors="coerce").astype("float64")
        bad = present & cast.isna()
        if column.type == "int":
            bad |= cast.notna() & (cast % 1 != 0)
        return cast, bad
    if column.type == "bool":
        lowered = series.astype("string").str.lower()
        cast = lowered.map({"true": True, "1": True, "false": False, "0": False})
        return cast, present & cast.isna()
    return series.astype("string"), pd.Series(False, index=series.index)


def _examples(df: pd.DataFrame, mask: pd.Series, columns: list[str]) -> list[dict[str, Any]]:
    rows = df.loc[mask, columns].head(_EXAMPLES)
    return [{"row": int(i) + 2, **{k: (None if pd.isna(v) else v) for k, v in r.items()}}  # +2: 1-based, header
            for i, r in zip(rows.index, rows.to_dict("records"))]


def validate(df: pd.DataFrame, spec: DatasetSpec) -> ValidationResult:
    """Hold a raw batch (as read by ``read_table``) against the spec; never raises for bad data."""
    rows_in = len(df)
    columns = [str(c) for c in df.columns]
    missing = [c.name for c in spec.columns.values() if c.required and c.name not in columns]
    unexpected = [c for c in columns if c not in spec.columns]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing required column(s): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected column(s): {', '.join(unexpected)}")
        reason = "missing_columns" if missing else "unexpected_columns"
        return ValidationResult("rejected", rows_in, 0, [], reason=reason,
                                message="; ".join(parts) + f" (spec {spec.name} declares: {', '.join(spec.columns)})")

    raw = df.reset_index(drop=True)
    cast = pd.DataFrame(index=raw.index)
    checks: list[CheckResult] = []
    drop = pd.Series(False, index=raw.index)
    reject_reasons: list[str] = []

    def record(name: str, kind: str, action: str, mask: pd.Series, message: str, cols: list[str],
               column: str | None = None) -> None:
        count = int(mask.sum())
        if not count:
            return
        checks.append(CheckResult(name=name, kind=kind, action=action, failed_rows=count, column=column,
                                  message=message, examples=_examples(raw, mask, cols)))
        if action == "reject":
            reject_reasons.append(f"{name}: {count} row(s) {message}")
        else:
            drop.loc[mask] = True

    for column in spec.columns.values():
        if column.name not in raw.columns:
            continue
        values, bad_type = _coerce(raw[column.name], column)
        cast[column.name] = values
        cols = [column.name]
        record(f"{column.name}:type", "column", column.on_fail, bad_type,
               f"are not of type {column.type}", cols, column.name)
        if not column.nullable:
            record(f"{column.name}:not_null", "column", column.on_fail, values.isna() & ~bad_type,
                   "are empty but the column may not be", cols, column.name)
        if column.min is not None:
            record(f"{column.name}:min", "column", column.on_fail, values.notna() & (values < column.min),
                   f"are below the minimum {column.min}", cols, column.name)
        if column.max is not None:
            record(f"{column.name}:max", "column", column.on_fail, values.notna() & (values > column.max),
                   f"are above the maximum {column.max}", cols, column.name)
        if column.allowed is not None:
            record(f"{column.name}:allowed", "column", column.on_fail,
                   values.notna() & ~values.isin(list(column.allowed)),
                   f"are not among the allowed values ({', '.join(column.allowed)})", cols, column.name)

    for rule in spec.rules:
        try:
            holds = cast.eval(rule.expr, engine="python")
        except Exception as exc:  # a spec error, not a data error: reject with the spec's fault named
            return ValidationResult("rejected", rows_in, 0, checks, reason="bad_rule",
                                    message=f"rule {rule.name!r} cannot be evaluated ({exc}); fix the dataset spec")
        holds = pd.Series(holds, index=cast.index).fillna(True).astype(bool)
        record(rule.name, "rule", rule.on_fail, ~holds,
               f"break the rule `{rule.expr}`" + (f" ({rule.description})" if rule.description else ""),
               [c for c in spec.columns if c in rule.expr and c in raw.columns])

    if reject_reasons:
        return ValidationResult("rejected", rows_in, 0, checks, reason="rule_rejected",
                                message="; ".join(reject_reasons))
    rows_out = int((~drop).sum())
    dropped = rows_in - rows_out
    if rows_in and dropped / rows_in > spec.max_drop_fraction:
        return ValidationResult(
            "rejected", rows_in, rows_out, checks, reason="too_many_dropped",
            message=f"{dropped} of {rows_in} rows ({dropped / rows_in:.0%}) fail row rules, more than the "
                    f"{spec.max_drop_fraction:.0%} the spec allows; see the failed checks for examples")
    if rows_out < spec.min_rows:
        return ValidationResult(
            "rejected", rows_in, rows_out, checks, reason="too_few_rows",
            message=f"{rows_out} usable rows, fewer than the {spec.min_rows} the spec requires")
    clean = cast.loc[~drop].reset_index(drop=True)
    for column in spec.columns.values():
        if column.name in clean and column.type == "int" and not clean[column.name].isna().any():
            clean[column.name] = clean[column.name].astype(np.int64)
    message = f"{rows_out} of {rows_in} rows valid" + (f", {dropped} dropped" if dropped else "")
    return ValidationResult("valid", rows_in, rows_out, checks, message=message, data=clean)


def to_parquet_bytes(df: pd.DataFrame) -> bytes:
    """Deterministic Parquet bytes (same frame → same bytes → same content address)."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, compression="zstd")
    return buf.getvalue()
