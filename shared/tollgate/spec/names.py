"""The spec's vocabulary: its tasks, column types, roles, estimator families and metrics, and what a dataset may be
called. Pure."""

from __future__ import annotations

import re
from typing import Any, Literal

from tollgate.spec.errors import SpecError

TASKS = ("regression", "classification")
COLUMN_TYPES = ("float", "int", "string", "bool", "datetime")
ROLES = ("data", "id", "ignore")
DATETIME_PARTS = ("year", "month", "day", "day_of_week", "hour", "minute", "day_of_year", "elapsed_days")
DEFAULT_DATETIME_PARTS = ("year", "month", "day", "day_of_week", "hour")   # elapsed_days (a trend) on request
ACTIONS = ("drop", "reject")
SOFT_ACTIONS = ("report", "drop", "reject")   # rules and outlier checks may also only report
OUTLIER_METHODS = ("iqr", "mad")
ESTIMATORS = ("hist_gradient_boosting", "gradient_boosting", "random_forest", "decision_tree", "linear",
              "svm", "knn", "naive_bayes")
# metric name → True if higher is better
METRICS = {"r2": True, "rmse": False, "mae": False,
           "accuracy": True, "f1": True, "roc_auc": True, "log_loss": False}
TASK_METRICS = {"regression": ("r2", "rmse", "mae"), "classification": ("accuracy", "f1", "roc_auc", "log_loss")}
ESTIMATOR_TASKS = {"naive_bayes": ("classification",)}

Task = Literal["regression", "classification"]
ColumnType = Literal["float", "int", "string", "bool", "datetime"]
Role = Literal["data", "id", "ignore"]
DatetimePart = Literal["year", "month", "day", "day_of_week", "hour", "minute", "day_of_year", "elapsed_days"]
Action = Literal["drop", "reject"]
SoftAction = Literal["report", "drop", "reject"]
Estimator = Literal["hist_gradient_boosting", "gradient_boosting", "random_forest", "decision_tree", "linear",
                    "svm", "knn", "naive_bayes"]
Metric = Literal["r2", "rmse", "mae", "accuracy", "f1", "roc_auc", "log_loss"]


# A dataset's name is its folder under incoming/, its spec's object name, its Firestore document and, with
# `_` turned into `-`, its Cloud Run service `predictor-<name>` whose traffic tags are `v<version>`. Cloud Run
# allows 46 characters for a service name and a tag together: `predictor-` (10) + the name (30) + `v` and a
# version of up to 5 digits (6). Underscores, never doubled, map one-to-one onto hyphens.
DATASET_NAME = re.compile(r"(?=.{1,30}\Z)[a-z](?:_?[a-z0-9])*")
DATASET_NAME_RULE = ("1 to 30 characters: lowercase letters, digits and single underscores, starting with a "
                     "letter and not ending with an underscore (e.g. chicago_taxi)")
MAX_LINE_BYTES = 1 * 2**20     # default longest line of a CSV batch
ID_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")   # monitoring.id_columns: JSON paths in SQL
MAX_COLUMNS = 1_000            # default most columns a batch's header may have


def object_name(dataset: str) -> str:
    """Where a dataset's spec lives in the bucket (what `tollgate spec push` writes, ingest reads)."""
    return f"specs/{dataset}.yaml"


def check_dataset_name(name: Any) -> str:
    """``name`` if it is a valid dataset name; otherwise a :class:`SpecError` that gives the pattern."""
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise SpecError(f"{name!r} is not a valid dataset name: {DATASET_NAME_RULE}; it names the "
                        "incoming/<dataset>/ folder and the Cloud Run service predictor-<dataset>")
    return name
