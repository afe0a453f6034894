"""A burst of files for one dataset on the local cloud: one training at a time, the queued batches coalesced
into the next training's window, every file ending in exactly one terminal status that says why."""

from __future__ import annotations

import json
import os
import signal

import pytest
import yaml

from localcloud import processes
from tests.conftest import taxi_period, write_csv
from tests.test_chain_e2e import tollgate
from tests.test_decisions_e2e import push_spec
from tests.test_recovery_e2e import wait_for
from tollgate import lifecycle

pytestmark = pytest.mark.e2e

QUARTERS = [("2014-01-01", "2014-04-01"), ("2014-04-01", "2014-07-01"), ("2014-07-01", "2014-10-01"),
            ("2014-10-01", "2015-01-01")]


def dropped(local_cloud, path, dataset) -> str:
    done = tollgate(local_cloud, "drop", str(path), "--dataset", dataset, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["run_id"]


def test_a_burst_trains_once_behind_the_running_training(local_cloud, cloud, state, taxi, taxi_spec, tmp_path,
                                                         unique):
    dataset = f"burst_{unique}"
    push_spec(local_cloud, taxi_spec, tmp_path, dataset)
    paths = [write_csv(taxi_period(taxi, start, end), tmp_path / f"q{i}.csv")
             for i, (start, end) in enumerate(QUARTERS)]
    first = dropped(local_cloud, paths[0], dataset)
    # the first run trains; its trainer is paused (SIGSTOP) so that the burst arrives while it holds the slot
    pids = wait_for(lambda: processes.task_pids({"RUN_ID": first, "CLOUD_RUN_JOB": "trainer"}), what="the trainer")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        burst = [dropped(local_cloud, path, dataset) for path in paths[1:]]
        wait_for(lambda: all((state.get_run(r) or {}).get("status") == lifecycle.QUEUED for r in burst),
                 what="the burst to queue behind the training")
        shown = json.loads(tollgate(local_cloud, "run", "show", burst[0], "--json").stdout)
        assert shown["status"] == lifecycle.QUEUED and shown["queued_behind"] == first
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    # `run show --wait` on a queued run follows it to the run that trains on its batch, and exits 0 once decided
    done = tollgate(local_cloud, "run", "show", burst[0], "--wait", "--json")
    assert done.returncode == 0, done.stderr
    followed = json.loads(done.stdout)
    runs = {r: state.get_run(r) for r in [first, *burst]}
    assert all(run["status"] in (lifecycle.DECIDED, lifecycle.SUPERSEDED) for run in runs.values()), \
        {r: run["status"] for r, run in runs.items()}

    # the batch registered last trains once, on a window that holds every batch; the other two are superseded
    order = [b["run_id"] for b in state.list_batches(dataset)]
    newest = order[-1]
    assert newest in burst and runs[newest]["status"] == lifecycle.DECIDED
    trained = [r for r, run in runs.items() if run.get("challenger_version")]
    assert sorted(trained) == sorted([first, newest])
    superseded = [r for r in burst if r != newest]
    assert all(runs[r]["status"] == lifecycle.SUPERSEDED and runs[r]["superseded_by"] == newest for r in superseded)
    assert followed["run_id"] == (newest if burst[0] != newest else burst[0])
    if burst[0] != newest:
        assert followed["followed_from"] == burst[0]
    version = state.get_version(dataset, runs[newest]["challenger_version"])
    manifest = cloud.read_json(version["training_window"]["manifest"].split("/", 3)[3])
    in_window = {b["sha256"] for b in manifest["batches"]}
    assert {runs[r]["curated"]["sha256"] for r in runs} <= in_window
    assert version["sampling"]["read"] == "warehouse query"   # the older batches in one query (DuckDB locally)

    # the trainings never overlapped: the newest started training after the first run was decided
    def at(run, status):
        return next(h["at"] for h in run["history"] if h["status"] == status)
    assert at(runs[newest], lifecycle.TRAINING) >= at(runs[first], lifecycle.DECIDED)

    # each superseded run has a ledger line, and the slot is free again
    lines = {e["run_id"]: e for e in state.ledger(dataset) if e["kind"] == "superseded"}
    assert set(lines) == set(superseded) and all(lines[r]["superseded_by"] == newest for r in superseded)
    wait_for(lambda: "training" not in (state.get_dataset(dataset) or {}), timeout=30, what="the slot to free")


def test_a_training_that_fails_passes_the_slot_at_once(local_cloud, state, taxi, taxi_spec, tmp_path, unique):
    """The queued run trains as soon as the trainer that held the slot fails its run, not on the reconciler's
    next pass (the test session's reconciler only runs when a test calls it)."""
    dataset = f"failing_{unique}"
    push_spec(local_cloud, taxi_spec, tmp_path, dataset)
    raw = {**taxi_spec.raw, "name": dataset, "model": {"estimator": "hist_gradient_boosting",
                                                       "params": {"max_iter": -5}}}   # every fit raises
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    assert tollgate(local_cloud, "spec", "push", str(tmp_path / "bad.yaml")).returncode == 0
    first = dropped(local_cloud, write_csv(taxi_period(taxi, *QUARTERS[0]), tmp_path / "a.csv"), dataset)
    pids = wait_for(lambda: processes.task_pids({"RUN_ID": first, "CLOUD_RUN_JOB": "trainer"}), what="the trainer")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        second = dropped(local_cloud, write_csv(taxi_period(taxi, *QUARTERS[1]), tmp_path / "b.csv"), dataset)
        wait_for(lambda: (state.get_run(second) or {}).get("status") == lifecycle.QUEUED, what="the second to queue")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    def ended():
        runs = {i: state.get_run(i) for i in (first, second)}
        return runs if all(run["status"] in lifecycle.TERMINAL for run in runs.values()) else None

    runs = wait_for(ended, timeout=300, what="both runs to end")
    assert runs[first]["status"] == lifecycle.FAILED and runs[first]["error"]["step"] == "trainer"
    assert "by" not in runs[first]["error"]   # the trainer's last attempt failed it, not the reconciler
    statuses = [h["status"] for h in runs[second]["history"]]
    assert statuses.index(lifecycle.TRAINING) > statuses.index(lifecycle.QUEUED), statuses
    assert runs[second]["status"] == lifecycle.FAILED and runs[second]["error"]["step"] == "trainer"
