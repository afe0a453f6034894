"""The data contract's pure parts on five-row frames: typing, the schema's checks, outlier fences and the verdict."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

from tollgate import contract
from tollgate import spec as specs

SPEC = specs.loads(textwrap.dedent("""\
    name: tiny
    task: regression
    target: y
    min_rows: 2
    max_drop_fraction: 0.25
    columns:
      y: {type: float}
      n: {type: int, min: 0, max: 10, outliers: {method: iqr, k: 1.5, on_fail: drop}}
      m: {type: float, outliers: {method: mad, k: 3}}
      flag: {type: bool}
      at: {type: datetime}
      colour: {type: string, allowed: [red, green]}
    features:
      numeric: [n, m, flag]
      categorical: [colour]
      datetime: [at]
    evaluation:
      primary_metric: r2
    policy:
      threshold: 0
    """))


@pytest.mark.parametrize(("column", "values", "cast", "bad"), [
    ("n", ["3", "3.5", "x", None, "9223372036854775808"], [3.0, None, None, None, None], [0, 1, 1, 0, 1]),
    ("n", [1, 2, 3, 4, 5], [1, 2, 3, 4, 5], None),
    ("y", ["1.5", "$2", "", None, "1e3"], [1.5, None, None, None, 1000.0], [0, 1, 1, 0, 0]),
    ("flag", ["true", "0", "FALSE", "yes", None], [True, False, False, None, None], [0, 0, 0, 1, 0]),
    ("at", ["2024-01-01", "2024-01-01T00:00:01Z", "1704067200", "soon", None],
     [1704067200.0, 1704067201.0, 1704067200.0, None, None], [0, 0, 0, 1, 0]),
])
def test_values_are_typed_as_declared_and_those_that_are_not_are_named(column, values, cast, bad):
    typed, failed = contract.coerce(pd.Series(values, dtype=object if column != "n" or bad else "int64"),
                                    SPEC.columns[column])
    assert [None if pd.isna(v) else v for v in typed.tolist()] == cast
    assert (failed is None) == (bad is None)
    if bad is not None:
        assert failed.astype(int).tolist() == bad


def test_the_schema_checks_ranges_and_allowed_values_row_by_row():
    schema = contract.contract_schema(SPEC)
    [in_range] = schema.columns["n"].checks
    assert in_range(pd.Series([0, 5, 10, 11, -1])).check_output.tolist() == [True, True, True, False, False]
    [allowed] = schema.columns["colour"].checks
    assert allowed(pd.Series(["red", "green", "Red", "blue", "red"])).check_output.tolist() == \
        [True, True, False, False, True]


def test_fences_need_ten_values_and_a_spread():
    profile = {"columns": {"n": {"sample": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}, "m": {"sample": [4.0] * 9 + [5.0]}}}
    fences = contract.outlier_fences([SPEC.columns["n"], SPEC.columns["m"]], profile)
    q1, q3 = np.quantile(np.arange(1, 11), [0.25, 0.75])
    assert fences == {"n": (q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1))}   # m: MAD is 0, no fences
    assert contract.outlier_fences([SPEC.columns["n"]], {"columns": {"n": {"sample": [1, 2, 3]}}}) == {}
    mad = contract.outlier_fences([SPEC.columns["m"]], {"columns": {"m": {"sample": list(range(1, 11))}}})
    assert mad["m"] == pytest.approx((5.5 - 3 * 1.4826 * 2.5, 5.5 + 3 * 1.4826 * 2.5))


def check(name: str, action: str, failed: int) -> contract.CheckResult:
    return contract.CheckResult(name=name, kind="column", action=action, failed_rows=failed, message="are bad")


DRIFT = {"verdict": "none", "features": []}


@pytest.mark.parametrize(("checks", "rows_in", "rows_out", "unlabelled", "reason"), [
    ([], 5, 5, 0, None),
    ([check("n:range", "reject", 1)], 5, 5, 0, "rule_rejected"),
    ([check("n:range", "drop", 2)], 5, 3, 0, "too_many_dropped"),              # 2 of 5 > 25%
    ([check("y:unlabelled", "drop", 3), check("n:range", "drop", 1)], 8, 4, 3, None),   # 1 of 5 labelled
    ([check("y:unlabelled", "drop", 4)], 5, 1, 4, "too_few_rows"),           # unlabelled never reject, but 1 < 2
    ([check("n:range", "report", 5)], 5, 5, 0, None),
])
def test_the_verdict_counts_labelled_rows_only(checks, rows_in, rows_out, unlabelled, reason):
    result = contract.verdict(SPEC, checks, rows_in, rows_out, unlabelled, DRIFT)
    assert result.reason == reason and result.status == ("valid" if reason is None else "rejected")
    if reason is None:
        assert result.message.startswith(f"{rows_out} of {rows_in} rows valid") and "drift none" in result.message
        assert ("unlabelled" in result.message) == bool(unlabelled)
    else:
        assert result.message
