"""What a spec's sections say about each other (a feature that is not a column, a metric of the other task, a
window without its time column, ...), and its rules parsed against its columns. Pure: returns problems, changes
nothing."""

from __future__ import annotations

import difflib
from typing import Any

from tollgate import rules as rule_language
from tollgate.spec.dataset import DatasetSpec
from tollgate.spec.errors import Problem
from tollgate.spec.names import ESTIMATOR_TASKS, ID_COLUMN, TASK_METRICS, TASKS


def check(spec: DatasetSpec) -> tuple[list[Problem], tuple[rule_language.Expression, ...]]:
    """What the spec's sections say about each other, as (YAML path, problem) pairs, and its rules parsed against
    its columns (in order; complete only when there is no problem)."""
    problems: list[Problem] = []
    columns = spec.columns
    declared = ", ".join(columns)

    def undeclared(path: tuple[Any, ...], name: str, what: str) -> None:
        close = difflib.get_close_matches(name, list(columns), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (declared: {declared})"
        problems.append((path, f"{what} {name!r} is not declared under columns{hint}"))

    if spec.target not in columns:
        undeclared(("target",), spec.target, "the target")
    elif spec.task == "regression" and columns[spec.target].type not in ("float", "int"):
        problems.append((("target",), f"a regression target must be a float or int column; {spec.target!r} is "
                                      f"of type {columns[spec.target].type}"))
    elif spec.task == "classification":
        allowed = columns[spec.target].allowed
        if allowed is not None and len(set(allowed)) < 2:
            problems.append((("columns", spec.target, "allowed"), "a classification target needs at least two "
                                                                  "classes"))
    if not spec.features:
        problems.append((("features",), "features.numeric or features.categorical must list at least one column"))
    for group in ("numeric", "categorical", "datetime"):
        for i, feature in enumerate(getattr(spec.feature_lists, group)):
            path = ("features", group, i)
            if feature not in columns:
                undeclared(path, feature, "the feature")
            elif feature == spec.target:
                problems.append((path, f"the target {feature!r} cannot also be a feature"))
            elif columns[feature].role != "data":
                problems.append((path, f"{feature!r} has role {columns[feature].role}: an identifier or an ignored "
                                       "column is never a feature"))
            elif group == "numeric" and columns[feature].type not in ("float", "int", "bool"):
                other = "datetime" if columns[feature].type == "datetime" else "categorical"
                problems.append((path, f"{feature!r} is a {columns[feature].type} column; list it under "
                                       f"features.{other}"))
            elif group == "datetime" and columns[feature].type != "datetime":
                problems.append((path, f"{feature!r} is a {columns[feature].type} column; features.datetime takes "
                                       "datetime columns"))
            elif group == "categorical" and columns[feature].type == "datetime":
                problems.append((path, f"{feature!r} is a datetime column; list it under features.datetime"))
    groups = [set(spec.feature_lists.numeric), set(spec.feature_lists.categorical), set(spec.feature_lists.datetime)]
    both = (groups[0] & groups[1]) | (groups[0] & groups[2]) | (groups[1] & groups[2])
    if both:
        problems.append((("features",), f"{', '.join(sorted(both))} listed in more than one feature group"))
    if spec.target in columns and columns[spec.target].role != "data":
        problems.append((("target",), f"the target {spec.target!r} has role {columns[spec.target].role}"))
    if spec.time_column is not None:
        if spec.time_column not in columns:
            undeclared(("time_column",), spec.time_column, "time_column")
        elif columns[spec.time_column].type not in ("int", "float", "datetime"):
            problems.append((("time_column",), f"time_column {spec.time_column!r} is a "
                                               f"{columns[spec.time_column].type} column; it must be a datetime (or "
                                               "an int of Unix seconds)"))
    metric = spec.primary_metric
    if metric not in TASK_METRICS[spec.task]:
        problems.append((("evaluation", "primary_metric"), f"{metric} is not a {spec.task} metric; use one of "
                                                           f"{', '.join(TASK_METRICS[spec.task])}"))
    if spec.task not in ESTIMATOR_TASKS.get(spec.model.estimator, TASKS):
        tasks = ", ".join(ESTIMATOR_TASKS[spec.model.estimator])
        problems.append((("model", "estimator"), f"{spec.model.estimator} is for {tasks} only, not {spec.task}"))
    if spec.training.window == "last_n" and spec.training.last_n < 1:
        problems.append((("training", "last_n"), "window last_n needs training.last_n >= 1"))
    if spec.training.window == "days":
        if spec.training.days <= 0:
            problems.append((("training", "days"), "window days needs training.days > 0"))
        if spec.time_column is None:
            problems.append((("training", "window"), "window days needs a time_column"))
    for i, column in enumerate(spec.evaluation.slices):
        if column not in columns:
            undeclared(("evaluation", "slices", i), column, "the slice")
    for i, column in enumerate(spec.drift.exclude):
        if column not in columns:
            undeclared(("drift", "exclude", i), column, "drift.exclude")
    monitoring = spec.monitoring
    if monitoring.retention_days is not None and monitoring.retention_days * 24 < monitoring.label_window_hours:
        problems.append((("monitoring", "retention_days"),
                         f"{monitoring.retention_days:g} days keeps less than the label window "
                         f"({monitoring.label_window_hours:g} hours), whose predictions the realised metrics "
                         "join labels to"))
    for i, column in enumerate(monitoring.id_columns):
        if column not in spec.features and column not in spec.id_columns:
            problems.append((("monitoring", "id_columns", i), f"{column!r} is neither a feature nor a column of "
                                                              "role id (labels are joined on what requests carry)"))
        elif not ID_COLUMN.fullmatch(column):   # they become JSON paths in the warehouse's SQL
            problems.append((("monitoring", "id_columns", i), f"{column!r}: id columns must be named with letters, "
                                                              "digits and underscores, not starting with a digit"))
    types_ = {c.name: c.type for c in columns.values()}
    parsed = []
    for i, rule in enumerate(spec.rules):
        try:
            parsed.append(rule_language.parse(rule.expr, types_))
        except rule_language.RuleError as exc:
            problems.append((("rules", i, "expr"), f"rule {rule.name!r}: {exc}"))
    return problems, tuple(parsed)
