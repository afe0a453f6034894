"""Fuzz tests: seeded mutations of real model artifacts and real data files, each handed to a worker process
(``tests/fuzzing.py``). None may crash or hang it; an artifact is either refused or predicts finite values
through both inference paths, and a data file always ends in a validation result (valid, or rejected with a
reason) read in bounded memory. ``make fuzz`` runs more mutations (FUZZ_CASES, FUZZ_SEED)."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest

from tests import fuzzing, mutations
from tests.test_artifacts import CASES, frame, tiny
from tollgate import artifacts, training
from tollgate import spec as specs

CASES_EACH = int(os.environ.get("FUZZ_CASES", "1000"))
SEED = int(os.environ.get("FUZZ_SEED", "20261202"))


def _report(outcomes: list[fuzzing.Outcome], bad: set[str]) -> str:
    counts = collections.Counter(o.status for o in outcomes)
    findings = [f"{o.label}: {o.status} ({o.detail})" for o in outcomes if o.status in bad]
    return f"{dict(counts)}; findings:\n  " + "\n  ".join(findings[:20])


def artifact_cases(count: int, seed: int):
    """Every family the trainer produces, for each task, mutated in turn."""
    rng = np.random.default_rng(seed)
    bases = []
    for task, estimator, params in CASES:
        classes = {"regression": 0, "binary": 2, "multiclass": 3}[task]
        spec = tiny("regression" if not classes else "classification", estimator,
                    **({"n_estimators": 5} if estimator in ("random_forest", "gradient_boosting") else params))
        model = training.fit(frame(n=120, classes=classes), spec)
        rows = frame(n=40, classes=classes, seed=7).drop(columns="y")
        records = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
                   for r in rows.to_dict("records")]
        bases.append((f"{estimator}/{task}", spec, artifacts.dumps(model), records))
    for i in range(count):
        name, spec, blob, rows = bases[i % len(bases)]
        label, mutated = mutations.mutate_artifact(blob, rng)
        yield f"#{i} {name}: {label}", {"spec": spec.raw, "rows": rows}, mutated


def test_mutated_artifacts_are_refused_or_predict_finite_values_and_never_crash_or_hang():
    outcomes = fuzzing.run_all("artifact", artifact_cases(CASES_EACH, SEED), timeout=60)
    assert len(outcomes) == CASES_EACH
    bad = {"crash", "hang", "error", "not_finite"}
    assert not [o for o in outcomes if o.status in bad], _report(outcomes, bad)
    statuses = collections.Counter(o.status for o in outcomes)
    assert statuses["refused"] > CASES_EACH // 3 and statuses["finite"] > 0, statuses   # both kinds were reached


def test_an_unmutated_artifact_loads_and_predicts_in_the_worker():
    """The harness's own check: a sound model comes back finite, on the prepared path."""
    spec = tiny("regression", "hist_gradient_boosting")
    blob = artifacts.dumps(training.fit(frame(n=120), spec))
    rows = [{"a": 0.5, "b": None, "c": "x"}, {"a": None, "b": 1.0, "c": "never-seen"}]
    [outcome] = fuzzing.run_all("artifact", [("base", {"spec": spec.raw, "rows": rows}, blob)])
    assert outcome.status == "finite" and outcome.detail == "prepared", outcome


TAXI_FUZZ_ROWS = 300


@pytest.fixture(scope="module")
def data_spec(taxi_spec):
    """The taxi spec with a 1 MiB file limit: what a file decodes to must be bounded by it, not by its size."""
    return specs.replace(taxi_spec, max_file_bytes=2**20, max_line_bytes=2**20)


def test_mutated_data_files_always_end_in_a_result_in_bounded_memory(taxi, data_spec):
    sample = taxi.head(TAXI_FUZZ_ROWS)
    csv = sample.to_csv(index=False).encode()
    cases = [(label, {"spec": data_spec.raw, "chunk_bytes": 64 * 1024}, data)
             for label, _, data in mutations.data_cases(csv, sample, CASES_EACH, SEED)]
    outcomes = fuzzing.run_all("data", cases, timeout=60)
    bad = {"crash", "hang", "error"}
    assert not [o for o in outcomes if o.status in bad], _report(outcomes, bad)
    statuses = collections.Counter(o.status for o in outcomes)
    assert statuses["rejected"] and statuses["valid"], statuses
    # a file that decodes to far more than max_file_bytes is refused before it is held: the worker's peak stays
    # near what importing pandas, pyarrow and pandera costs
    assert max(o.peak_rss_mb for o in outcomes) < 700, max(o.peak_rss_mb for o in outcomes)
