"""A spec's columns: each column's type, role, checks and encoding, and the cross-field rules over them."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tollgate.spec.names import (
    DATETIME_PARTS,
    DEFAULT_DATETIME_PARTS,
    Action,
    ColumnType,
    DatetimePart,
    Role,
    SoftAction,
)


class Section(BaseModel):
    """A part of the spec: unknown keys are refused, values are read-only once loaded."""
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Outliers(Section):
    """Robust per-feature outlier fences, computed on each batch: ``iqr`` flags values beyond
    Q1 - k·IQR and Q3 + k·IQR; ``mad`` flags |x - median| > k · 1.4826 · MAD. ``outliers: true`` takes the
    defaults."""
    method: Literal["iqr", "mad"] = Field("iqr", description="`iqr` (interquartile range) or `mad` (median "
                                                              "absolute deviation)")
    k: float = Field(3.0, gt=0, description="How many spreads from the middle a value may lie")
    on_fail: SoftAction = Field("report", description="`report` outliers, `drop` their rows or `reject` the batch")


class Column(Section):
    """A column a batch may carry. A failed check drops the offending rows or rejects the batch (``on_fail``).

    A ``datetime`` column holds ISO-8601 times or dates (``2013-01-01T06:00:00Z``, ``2013-01-01``) or Unix times
    (numbers, in ``unit`` seconds or milliseconds); Tollgate keeps it as Unix seconds (UTC) and, listed under
    ``features.datetime``, the model learns from its ``parts`` (one transformer, the same in training and
    serving). ``role: id`` marks an identifier: kept in the data and the prediction log, never learned from;
    ``role: ignore`` a column a batch may carry that is left out."""
    name: str = Field("", exclude=True, json_schema_extra={"hidden": True})   # the key under `columns`
    type: ColumnType = Field("float", description="`float`, `int`, `string`, `bool` or `datetime`; values that do "
                                                  "not parse as it fail the column")
    role: Role = Field("data", description="`data`; `id`: an identifier, kept but never a feature; `ignore`: "
                                           "left out of the curated data")
    unit: Literal["s", "ms"] | None = Field(None, description="datetime columns holding numbers: Unix `s` "
                                                              "(default) or `ms`")
    parts: tuple[DatetimePart, ...] = Field(DEFAULT_DATETIME_PARTS, description="What the model learns from a "
                                            "datetime feature: " + ", ".join(f"`{p}`" for p in DATETIME_PARTS))
    cyclical: bool = Field(False, description="datetime features: month, day of week and hour also as sine and "
                                              "cosine (so December is next to January)")
    encoding: Literal["auto", "one_hot", "codes", "target"] = Field(
        "auto", description="Categorical features: `auto` (codes for gradient boosting, one-hot for the others), "
                            "`one_hot` (the `model.max_categories` most frequent values each a column, the rest "
                            "shared), `codes` (one column of codes), or `target` (scikit-learn's cross-fitted "
                            "TargetEncoder: one number per category, any width)")
    required: bool = Field(True, description="A batch without this column is rejected")
    nullable: bool = Field(True, description="Empty values are allowed")
    min: float | None = Field(None, description="Smallest allowed value (numeric columns; a datetime's as ISO "
                                                "text or Unix seconds)")
    max: float | None = Field(None, description="Largest allowed value (numeric columns; a datetime's as ISO text "
                                                "or Unix seconds)")
    allowed: tuple[Union[bool, int, float, str], ...] | None = Field(
        None, description="The only values allowed, written as the column's type (e.g. `[0, 1, 2]` for an int "
                          "label, `[Cash, Card]` for a string)")
    unique: bool = Field(False, description="No value may repeat within a batch")
    outliers: Outliers | None = Field(None, description="Robust outlier fences (numeric columns); `true` for "
                                                        "the defaults")
    on_fail: Action = Field("drop", description="`drop` the failing rows or `reject` the whole batch")

    @field_validator("outliers", mode="before")
    @classmethod
    def _outliers_flag(cls, value: Any) -> Any:
        return {} if value is True else None if value is False else value

    @field_validator("min", "max", mode="before")
    @classmethod
    def _datetime_bound(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("type") == "datetime" and isinstance(value, (str, date)):
            seconds = datetime_seconds(value)
            if seconds is None:
                raise ValueError(f"{value!r} is not an ISO-8601 date or time")
            return seconds
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        numeric = self.type in ("float", "int", "datetime")
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError(f"min and max apply to numeric and datetime columns; this one is of type {self.type}")
        if self.unit is not None and self.type != "datetime":
            raise ValueError("unit applies to datetime columns")
        if self.type == "datetime" and (self.allowed is not None or self.outliers is not None):
            raise ValueError("a datetime column takes min and max, not allowed values or outlier fences")
        if self.role != "data" and self.outliers is not None:
            raise ValueError(f"a column with role {self.role} is not checked for outliers")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is greater than max ({self.max:g})")
        if self.outliers is not None and not numeric:
            raise ValueError("outlier fences need a numeric column (type float or int)")
        return self

    @field_validator("allowed")
    @classmethod
    def _allowed_typed(cls, allowed: tuple[Any, ...] | None, info: ValidationInfo) -> tuple[Any, ...] | None:
        if allowed is None:
            return None
        if not allowed:
            raise ValueError("allowed lists no value; leave it out to allow any")
        return tuple(_typed(v, info.data.get("type", "float")) for v in allowed)


def datetime_seconds(value: Any) -> float | None:
    """An ISO-8601 date or time (naive ones are UTC) as Unix seconds; None when it is not one."""
    import datetime as dt

    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _typed(value: Any, kind: str) -> Any:
    """An ``allowed`` value as its column's type, as the validator reads the column's values."""
    if kind == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"allowed value {value!r} is not of the column's type {kind}")


class Rule(Section):
    """A cross-field rule every row must satisfy, in the closed rule language: comparisons, arithmetic,
    ``and``/``or``/``not``, ``in``, ``isnull(c)``/``notnull(c)`` and ``abs``, over the declared columns."""
    name: str = Field(min_length=1, description="Names the check in reports")
    expr: str = Field(min_length=1, description="e.g. `fare <= 100 or trip_miles >= 5`")
    description: str = Field("", description="Why the rule holds, shown with its failures")
    on_fail: SoftAction = Field("drop", description="`report`, `drop` the failing rows or `reject` the batch")
