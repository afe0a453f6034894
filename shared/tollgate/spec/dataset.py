"""A dataset spec as a whole: its sections, and the few values derived from them."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, field_validator

from tollgate import rules as rule_language
from tollgate.spec.columns import Column, Rule, Section
from tollgate.spec.names import DATASET_NAME, DATASET_NAME_RULE, MAX_COLUMNS, MAX_LINE_BYTES, METRICS, Task
from tollgate.spec.sections import (
    Deployment,
    Drift,
    Evaluation,
    Features,
    Model,
    Monitoring,
    Policy,
    Review,
    Tracking,
    Training,
)


class DatasetSpec(Section):
    """A dataset spec: ``datasets/<name>.yaml``, uploaded by ``tollgate spec push``."""
    name: str = Field(description="The dataset: its incoming/<name>/ folder and its predictor service; "
                      + DATASET_NAME_RULE)
    description: str = Field("", description="What the model predicts, for people")
    task: Task = Field(description="`regression` or `classification`")
    target: str = Field(description="The column to predict; declared under columns")
    time_column: str | None = Field(None, description="The batch's time: a datetime column (or an int of Unix "
                                                      "seconds), for `training.window: days` and time-ordered "
                                                      "evaluation")
    columns: dict[str, Column] = Field(min_length=1, description="Every column a batch may carry")
    extra_columns: Literal["reject", "ignore"] = Field("reject", description="A batch with columns the spec does "
                                                       "not declare: `reject` it, or `ignore` those columns")
    rules: tuple[Rule, ...] = Field((), description="Cross-field rules")
    min_rows: int = Field(1, gt=0, description="Fewer valid rows reject the batch")
    max_drop_fraction: float = Field(0.2, ge=0, le=1, description="More rows than this failing `drop` checks "
                                                                  "reject the batch")
    max_file_bytes: int = Field(10 * 2**30, gt=0, description="Larger files (or gzip contents) are rejected")
    max_line_bytes: int = Field(MAX_LINE_BYTES, gt=0, description="Longest CSV line")
    max_columns: int = Field(MAX_COLUMNS, gt=0, description="Most columns a header may have")
    feature_lists: Features = Field(alias="features", description="The model's inputs")
    model: Model = Field(Model(), description="The estimator and its parameters")
    training: Training = Field(Training(), description="Which data trains")
    evaluation: Evaluation = Field(Evaluation(), description="How the challenger and champion are scored")
    policy: Policy = Field(description="When a challenger serves without a person")
    drift: Drift = Field(Drift(), description="Drift of each batch against the champion's training data")
    deployment: Deployment = Field(Deployment(), description="Canary rollouts")
    review: Review = Field(Review(), description="Human review")
    monitoring: Monitoring = Field(Monitoring(), description="The monitor's judgement of live traffic")
    tracking: Tracking = Field(Tracking(), description="Mirrors in experiment trackers (MLflow)")
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)
    _rules: tuple[rule_language.Expression, ...] = PrivateAttr(default=())

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not DATASET_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid dataset name: {DATASET_NAME_RULE}")
        return value

    @field_validator("columns")
    @classmethod
    def _named(cls, columns: dict[str, Column]) -> dict[str, Column]:
        return {name: column.model_copy(update={"name": name}) for name, column in columns.items()}

    @property
    def raw(self) -> dict[str, Any]:
        """The spec as loaded (what run records carry)."""
        return self._raw

    @property
    def parsed_rules(self) -> tuple[rule_language.Expression, ...]:
        """Each of ``rules`` parsed against the columns (tollgate.spec.checks, when the spec is loaded), in order."""
        return self._rules

    @property
    def input_numeric(self) -> tuple[str, ...]:
        """The features a request carries as numbers once read: numeric ones, then datetime ones (as Unix
        seconds): the numeric block of the predictor's validated columns."""
        return self.feature_lists.numeric + self.feature_lists.datetime

    @property
    def features(self) -> tuple[str, ...]:
        return self.feature_lists.numeric + self.feature_lists.categorical + self.feature_lists.datetime

    @property
    def id_columns(self) -> tuple[str, ...]:
        """Identifier columns (``role: id``): kept with each row and logged with each prediction."""
        return tuple(sorted(c.name for c in self.columns.values() if c.role == "id"))

    @property
    def primary_metric(self) -> str:
        default = "r2" if self.task == "regression" else "accuracy"
        return self.evaluation.primary_metric or default

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.primary_metric]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(yaml.safe_dump(self.raw, sort_keys=True).encode()).hexdigest()
