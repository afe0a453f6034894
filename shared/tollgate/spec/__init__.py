"""Dataset specs: the declaration that drives validation, training, evaluation and the policy.

The spec is a tree of pydantic models, one per YAML section, so that one package answers "what can a spec say?"
(the rule language itself is tollgate.rules): every key, its type, its default and its checks, and the
description the spec reference in the docs is generated from (``docs/hooks.py``). Loading refuses what it
does not know: an unknown key gets a "did you mean", and each problem names its YAML path and line.

- ``names``: the vocabulary (tasks, column types, roles, estimator families, metrics) and dataset names;
- ``columns``, ``sections``, ``dataset``: the models, each concept under one name (``spec.model.estimator``,
  ``spec.training.max_rows``, ``spec.feature_lists.numeric``); only values derived from several fields are
  properties (``features``, ``input_numeric``, ``id_columns``, ``primary_metric``, ``sha256``);
- ``checks``: what the sections say about each other, and the rules parsed (pure: problems out, nothing changed);
- ``errors``, ``loading``: reading YAML or a mapping into a spec, every problem with its path and line.

Import it as ``from tollgate import spec as specs``.
"""

from tollgate.spec.columns import Column, Outliers, Rule, Section, datetime_seconds
from tollgate.spec.dataset import DatasetSpec
from tollgate.spec.errors import SpecError
from tollgate.spec.loading import from_dict, load, loads, replace
from tollgate.spec.names import (
    ACTIONS,
    COLUMN_TYPES,
    DATASET_NAME,
    DATASET_NAME_RULE,
    DATETIME_PARTS,
    DEFAULT_DATETIME_PARTS,
    ESTIMATOR_TASKS,
    ESTIMATORS,
    ID_COLUMN,
    MAX_COLUMNS,
    MAX_LINE_BYTES,
    METRICS,
    OUTLIER_METHODS,
    ROLES,
    SOFT_ACTIONS,
    TASK_METRICS,
    TASKS,
    check_dataset_name,
    object_name,
)
from tollgate.spec.sections import (
    Deployment,
    Drift,
    Evaluation,
    Features,
    MLflow,
    Model,
    Monitoring,
    Policy,
    Range,
    Review,
    Search,
    Thresholds,
    Tracking,
    Training,
)

__all__ = [
    "ACTIONS", "COLUMN_TYPES", "DATASET_NAME", "DATASET_NAME_RULE", "DATETIME_PARTS", "DEFAULT_DATETIME_PARTS",
    "ESTIMATORS", "ESTIMATOR_TASKS", "ID_COLUMN", "MAX_COLUMNS", "MAX_LINE_BYTES", "METRICS", "OUTLIER_METHODS",
    "ROLES", "SOFT_ACTIONS", "TASKS", "TASK_METRICS", "Column", "DatasetSpec", "Deployment", "Drift", "Evaluation",
    "Features", "MLflow", "Model", "Monitoring", "Outliers", "Policy", "Range", "Review", "Rule", "Search",
    "Section", "SpecError", "Thresholds", "Tracking", "Training", "check_dataset_name", "datetime_seconds",
    "from_dict", "load", "loads", "object_name", "replace",
]
