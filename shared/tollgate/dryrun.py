"""`tollgate spec check --data FILE --train`: what the chain would do with a file as a dataset's first batch, run
offline with the pipeline's own steps — the validator's contract, the trainer's holdout, tuning and fit, the
evaluator's metrics and the decider's policy — and no cloud. What it prints is what `drop --wait` would end with:
the first model's held-out score and the decision (promote, or a review and why). Pure: a file and a spec in.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

from tollgate import contract, evaluation, policy, training, validation
from tollgate.spec import DatasetSpec


@dataclasses.dataclass
class DryRun:
    validation: contract.ValidationResult
    decision: policy.Decision | None = None
    evaluation: dict[str, Any] | None = None
    train_rows: int = 0
    holdout_rows: int = 0
    params: dict[str, Any] | None = None
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"validation": self.validation.status, "reason": self.validation.reason,
                               "train_rows": self.train_rows, "holdout_rows": self.holdout_rows,
                               "params": self.params, "seconds": round(self.seconds, 1)}
        if self.decision is not None:
            out.update(decision=self.decision.verdict, why=self.decision.reason,
                       metrics=(self.evaluation or {}).get("challenger", {}).get("metrics"),
                       importance=(self.evaluation or {}).get("importance"))
        return out


def first_batch(path: Path, spec: DatasetSpec) -> DryRun:
    """The file through validation, training and evaluation as its dataset's first batch, and the decision."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, path.open("rb") as fh:
        checked = validation.validate_file(fh, spec, Path(tmp) / "curated.parquet", size=path.stat().st_size)
        if checked.status != "valid":
            return DryRun(checked, seconds=time.monotonic() - started)
        import pandas as pd

        curated = pd.read_parquet(Path(tmp) / "curated.parquet")
    train, holdout = training.split_newest(curated, spec)
    searching = training.tuning(spec, len(train))
    params = dict(spec.model.params)
    if searching.model.search is not None:   # the trainer's search (or its little tuning), in one task
        scored = (training.optuna_search(train, searching) if searching.model.search.method == "optuna" else
                  [training.cross_validate(train, searching, c) for c in training.candidates(searching)])
        params = max(scored, key=lambda r: r["score"])["params"]
    model = training.fit(train, spec, params)
    y, x = training.target(holdout, spec), training.features_frame(holdout, spec)
    result = evaluation.compare(holdout, y, evaluation.score(model, x, spec.task), None, spec)
    result["importance"] = evaluation.permutation_importance(model, None, x, y, spec)
    run = {"evaluation": result, "validation": {"drift": checked.drift}}
    decision = policy.decide(spec.policy, policy.evidence_of(run, spec))
    return DryRun(checked, decision, result, len(train), len(holdout), params, time.monotonic() - started)
