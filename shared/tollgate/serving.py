"""Request checking for the predictor: instances against the dataset spec's features. Pure."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from tollgate.spec import DatasetSpec

MAX_INSTANCES = 1000


class BadRequest(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def instances_frame(body: Any, spec: DatasetSpec, max_instances: int = MAX_INSTANCES) -> pd.DataFrame:
    """Check a ``{"instances": [{feature: value, ...}, ...]}`` body; every problem is listed."""
    if not isinstance(body, dict):
        raise BadRequest(["the body must be a JSON object with an `instances` list"])
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise BadRequest(["`instances` must be a non-empty list of objects keyed by feature name"])
    if len(instances) > max_instances:
        raise BadRequest([f"{len(instances)} instances, more than the limit of {max_instances}"])
    problems: list[str] = []
    features = set(spec.features)
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            problems.append(f"instances[{i}]: must be an object keyed by feature name")
            continue
        for key in inst:
            if key not in features and key != spec.target:
                problems.append(f"instances[{i}].{key}: unknown field (features: {', '.join(spec.features)})")
        for name in spec.features:
            column = spec.columns[name]
            value = inst.get(name)
            if value is None:
                if not column.nullable:
                    problems.append(f"instances[{i}].{name}: required")
                continue
            if name in spec.numeric_features:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    problems.append(f"instances[{i}].{name}: must be a finite number, got {value!r}")
                    continue
                if column.min is not None and value < column.min:
                    problems.append(f"instances[{i}].{name}: {value} is below the minimum {column.min}")
                if column.max is not None and value > column.max:
                    problems.append(f"instances[{i}].{name}: {value} is above the maximum {column.max}")
            elif not isinstance(value, str):
                problems.append(f"instances[{i}].{name}: must be a string, got {value!r}")
    if problems:
        raise BadRequest(problems)
    return pd.DataFrame([{name: inst.get(name) for name in spec.features} for inst in instances])
