"""Memory you can plan: the trainer's estimate of what a fit needs before it starts, the stop it makes with a reason
past its job's limit, `spec check`'s warning at push time, and the local Cloud Run's watchdog that stops a process
over its limit with Cloud Run's own message."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from localcloud import memory
from tollgate import capacity
from tollgate import spec as specs
from tollgate.errors import StepFailed

GiB = 2**30


def wide_spec(estimator: str, **params) -> specs.DatasetSpec:
    """1,000,000 rows × 30 features, three of them categories of 10,000 values: the issue's planning target."""
    columns = {f"n{i}": {} for i in range(27)} | {f"c{i}": {"type": "string"} for i in range(3)} | {"y": {}}
    return specs.from_dict({"name": "wide", "task": "regression", "target": "y", "columns": columns,
                            "features": {"numeric": [f"n{i}" for i in range(27)],
                                         "categorical": ["c0", "c1", "c2"]},
                            "model": {"estimator": estimator, "params": params}, "policy": {"threshold": 0}})


DISTINCT = {"c0": 10_000, "c1": 10_000, "c2": 10_000}


def test_gradient_boosting_plans_a_million_wide_rows_within_two_gib_and_linear_says_it_cannot():
    # `make bench-memory` measures both: boosting peaks near 1.5 GiB, linear near 2.2 GiB (its solver's copies)
    spec = wide_spec("hist_gradient_boosting")
    planned = capacity.estimate(spec, 1_000_000, DISTINCT)
    assert capacity.window(spec, 1_000_000) + planned.bytes < 2 * GiB * capacity.HEADROOM
    assert capacity.problem(spec, 1_000_000, 2 * GiB, DISTINCT) is None
    # the one-hot width is bounded by model.max_categories, whatever the categories hold
    linear = capacity.estimate(wide_spec("linear"), 1_000_000, DISTINCT)
    assert max(linear.widths.values()) <= spec.model.max_categories + 1
    why = capacity.problem(wide_spec("linear"), 1_000_000, 2 * GiB, DISTINCT)
    assert why and "training.max_rows to at most" in why
    fits = capacity.rows_within(wide_spec("linear"), 2 * GiB, DISTINCT)
    assert 200_000 < fits < 1_000_000 and capacity.problem(wide_spec("linear"), fits, 2 * GiB, DISTINCT) is None


def test_a_measured_window_replaces_the_planned_one():
    spec = wide_spec("hist_gradient_boosting")
    assert capacity.problem(spec, 1_000_000, 2 * GiB, DISTINCT, resident=0) is None
    assert "needs about" in capacity.problem(spec, 1_000_000, 2 * GiB, DISTINCT, resident=int(1.2 * GiB))


def test_a_family_that_cannot_says_so_with_the_settings_to_change():
    why = capacity.problem(wide_spec("random_forest"), 1_000_000, 2 * GiB, DISTINCT)
    assert why and "training.max_rows to at most" in why and "min_samples_leaf or max_depth" in why
    assert "c0 (65 columns)" in why   # the widest columns are named
    fits = capacity.rows_within(wide_spec("random_forest"), 2 * GiB, DISTINCT)
    assert capacity.problem(wide_spec("random_forest"), fits, 2 * GiB, DISTINCT) is None
    assert "scales with the square of the rows" in capacity.problem(wide_spec("svm"), 1_000_000, 64 * GiB, DISTINCT)


def test_the_trainer_stops_with_a_reason_instead_of_being_killed(monkeypatch):
    from tollgate.jobs import trainer

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"n{i}": rng.normal(size=2000) for i in range(27)}
                         | {f"c{i}": rng.choice([f"v{j}" for j in range(500)], 2000) for i in range(3)}
                         | {"y": rng.normal(size=2000)})
    monkeypatch.setenv("TOLLGATE_MEMORY_LIMIT", str(2 * GiB))
    trainer.plan_memory(wide_spec("hist_gradient_boosting"), frame)          # fits: nothing happens
    monkeypatch.setenv("TOLLGATE_MEMORY_LIMIT", str(64 * 2**20))
    with pytest.raises(StepFailed, match="will not fit in the trainer's memory.*training.max_rows"):
        trainer.plan_memory(wide_spec("random_forest"), frame)


def test_spec_check_warns_when_the_window_will_not_fit_the_trainer(tmp_path):
    import yaml

    spec = wide_spec("random_forest")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.raw))
    done = subprocess.run([sys.executable, "-m", "tollgate", "spec", "check", str(path)], capture_output=True,
                          text=True)
    assert done.returncode == 0 and "memory: at training.max_rows 2,000,000" in done.stderr, done.stderr


def test_a_process_over_its_limit_is_stopped_with_cloud_runs_message():
    hog = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import time
        held = [bytearray(50 * 2**20) for _ in range(12)]   # 600 MiB, touched
        time.sleep(30)
    """)])
    watchdog = memory.Watchdog(hog.pid, 200 * 2**20, interval=0.05)
    assert hog.wait(timeout=30) == -9
    watchdog.stop()
    assert watchdog.exceeded and watchdog.peak > 200 * 2**20
    assert watchdog.message.startswith("Memory limit of 200 MiB exceeded with ")


def test_a_process_within_its_limit_is_left_alone():
    quiet = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    watchdog = memory.Watchdog(quiet.pid, 2 * GiB, interval=0.05)
    assert quiet.wait(timeout=30) == 0 and not watchdog.exceeded


def test_a_childs_peak_is_its_own_not_the_parents_that_started_it():
    """ru_maxrss survives exec (a child of a 400 MiB parent reports 400 MiB); peak_resident reads the child's own."""
    parent = textwrap.dedent("""
        import json, resource, subprocess, sys
        held = bytearray(400 * 2**20)
        for i in range(0, len(held), 4096):
            held[i] = 1
        child = "import json, resource; from localcloud import memory; print(json.dumps(" \\
                "[memory.peak_resident(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]))"
        print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout)
    """)
    done = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, check=True,
                          cwd=str(Path(memory.__file__).parents[1]))
    own, inherited = json.loads(done.stdout)
    assert inherited > 400 * 2**20          # what the harnesses read before
    assert own < 150 * 2**20, own / 2**20   # an interpreter that imported almost nothing
