"""Crash recovery on the local cloud: jobs killed outright (SIGKILL, as an out-of-memory kill or a task timeout
does) while nobody waits on the run, and a decider killed between its Firestore commit and the Cloud Run update.
The reconciler (`tollgate reconcile`, what the scheduled reconcile-tick runs) brings each to a decision, or to
`failed` with a reason that names the execution; `tollgate run show` says which."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from localcloud import processes
from tests.conftest import taxi_period, write_csv
from tests.test_chain_e2e import INSTANCE, tollgate
from tests.test_decisions_e2e import predictor_url, push_spec
from tollgate import lifecycle
from tollgate.cloud import run as cloudrun

pytestmark = pytest.mark.e2e


class Killer:
    """SIGKILLs every task process of ``job`` for ``run_id`` as soon as it appears, ``times`` times (None: until
    stopped): what an out-of-memory kill does to each attempt."""

    def __init__(self, run_id: str, job: str, times: int | None) -> None:
        self.run_id, self.job, self.times, self.killed = run_id, job, times, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set() and (self.times is None or len(self.killed) < self.times):
            for pid in processes.task_pids({"RUN_ID": self.run_id, "CLOUD_RUN_JOB": self.job}):
                if pid not in self.killed:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        self.killed.append(pid)
                    except ProcessLookupError:
                        pass
            time.sleep(0.02)


def drop_and_leave(local_cloud, taxi, taxi_spec, tmp_path, dataset: str) -> str:
    """A dataset of its own and a batch for it, dropped with `tollgate drop` without --wait: nobody follows
    the run."""
    push_spec(local_cloud, taxi_spec, tmp_path, dataset)
    path = write_csv(taxi_period(taxi, "2014-01-01", "2014-07-01"), tmp_path / "batch.csv")
    done = tollgate(local_cloud, "drop", str(path), "--dataset", dataset, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["run_id"]


def wait_for(predicate, timeout: float = 240, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def failed_execution(cloud, state, run_id: str, job: str, after: str | None = None) -> str:
    """Wait until the run's execution of ``job`` (other than ``after``) has failed; returns its name."""
    def check():
        execution = ((state.get_run(run_id) or {}).get("executions") or {}).get(job)   # ingest creates the run
        if execution and execution != after and cloudrun.execution_state(cloud, execution) == "failed":
            return execution
        return None
    return wait_for(check, what=f"the {job} execution of {run_id} to fail")


def reconcile(local_cloud) -> dict:
    done = tollgate(local_cloud, "reconcile", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_trainer_killed_on_every_attempt_is_relaunched_and_the_run_decides(local_cloud, cloud, state, taxi,
                                                                             taxi_spec, tmp_path, unique):
    run_id = drop_and_leave(local_cloud, taxi, taxi_spec, tmp_path, f"killed_{unique}")
    killer = Killer(run_id, "trainer", times=2)   # both attempts of its first execution (max_retries 1)
    execution = failed_execution(cloud, state, run_id, "trainer")
    killer.stop.set()
    assert len(killer.killed) == 2
    run = state.get_run(run_id)
    assert run["status"] == lifecycle.TRAINING and "error" not in run   # killed: nothing could mark it

    report = reconcile(local_cloud)
    [action] = [r for r in report["runs"] if r["run_id"] == run_id]
    assert action["action"] == "relaunched" and execution.rsplit("/", 1)[-1] in action["why"]
    run = wait_for(lambda: (r := state.get_run(run_id))["status"] in lifecycle.TERMINAL and r, what="a decision")
    assert run["status"] == lifecycle.DECIDED and run["decision"] == "promote", run
    assert run["executions"]["trainer"] != execution and run["relaunches"] == {"trainer": 1}
    shown = tollgate(local_cloud, "run", "show", run_id)
    assert "relaunched the trainer step" in shown.stdout and execution.rsplit("/", 1)[-1] in shown.stdout
    assert all(r["run_id"] != run_id for r in reconcile(local_cloud)["runs"])   # decided: nothing to repair


def test_a_step_that_keeps_dying_fails_with_a_reason_naming_its_execution(local_cloud, cloud, state, taxi,
                                                                         taxi_spec, tmp_path, unique):
    dataset = f"doomed_{unique}"
    run_id = drop_and_leave(local_cloud, taxi, taxi_spec, tmp_path, dataset)
    killer = Killer(run_id, "evaluator", times=None)
    # a second batch arrives while the doomed run holds the dataset's training slot: it queues behind it
    holding = (lifecycle.TRAINING, lifecycle.TRAINED, lifecycle.EVALUATING)
    wait_for(lambda: (state.get_run(run_id) or {}).get("status") in holding, what="the doomed run to train")
    later = write_csv(taxi_period(taxi, "2014-07-01", "2015-01-01"), tmp_path / "later.csv")
    done = tollgate(local_cloud, "drop", str(later), "--dataset", dataset, "--json")
    queued = json.loads(done.stdout)["run_id"]
    wait_for(lambda: (state.get_run(queued) or {}).get("status") == lifecycle.QUEUED, what="the batch to queue")
    try:
        seen = None
        for relaunch in range(3):   # the first execution and MAX_RELAUNCHES (2) more
            seen = failed_execution(cloud, state, run_id, "evaluator", after=seen)
            report = reconcile(local_cloud)
            [action] = [r for r in report["runs"] if r["run_id"] == run_id]
            assert action["action"] == ("relaunched" if relaunch < 2 else "failed"), action
    finally:
        killer.stop.set()
    # the pass that failed it passed the slot on: the queued batch trains and is decided
    [passed] = [r for r in report["runs"] if r["run_id"] == queued]
    assert passed["action"] == "next-training" and run_id in passed["why"]
    decided = wait_for(lambda: (r := state.get_run(queued))["status"] in lifecycle.TERMINAL and r, what="a decision")
    assert decided["status"] == lifecycle.DECIDED, decided
    run = state.get_run(run_id)
    assert run["status"] == lifecycle.FAILED and run["error"]["by"] == "reconciler"
    assert lifecycle.failed_step(run["error"]) == "evaluator"
    assert run["error"]["execution"] == seen and seen.rsplit("/", 1)[-1] in run["error"]["message"]
    assert "relaunched 2 time(s)" in run["error"]["message"]
    shown = tollgate(local_cloud, "run", "show", run_id)
    assert "failed the evaluator step" in shown.stdout and seen.rsplit("/", 1)[-1] in shown.stdout
    assert len(killer.killed) == 6   # three executions, two attempts each


KILL_AT_CLOUD_RUN = """
import os, signal, sys
from tollgate import chain, runtime
from tollgate.cloud import run as cloudrun

def killed(*args, **kwargs):   # the Firestore commit is done; Cloud Run is next: die as an OOM kill would
    os.kill(os.getpid(), signal.SIGKILL)

cloudrun.set_traffic = killed
chain.decide(runtime.cloud(), runtime.state(), sys.argv[1])
"""


def test_a_decider_killed_between_its_commit_and_cloud_run_is_converged(local_cloud, cloud, state, taxi,
                                                                        taxi_spec, tmp_path, unique):
    """The real decider code, in its own process, killed with SIGKILL right after its Firestore transaction."""
    from tests.test_trust_e2e import evaluated_run

    dataset = f"decider_{unique}"
    push_spec(local_cloud, taxi_spec, tmp_path, dataset)
    run_id = evaluated_run(cloud, state, taxi, taxi_spec, dataset, unique)
    done = subprocess.run([sys.executable, "-c", KILL_AT_CLOUD_RUN, run_id], env={**os.environ, **local_cloud.env()},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    run, ds = state.get_run(run_id), state.get_dataset(dataset)
    assert run["status"] == lifecycle.DECIDED and run["decision"] == "promote"
    assert run["deployment"]["status"] == "pending" and ds["deployment"]["status"] == "pending"
    assert state.last_unannounced(dataset)["run_id"] == run_id    # its model-decided never went out
    url = predictor_url(local_cloud, dataset)
    assert url is None or requests.post(f"{url}/predict", json={"instances": [INSTANCE]}, timeout=30).status_code == 503

    done = tollgate(local_cloud, "reconcile", "--grace", "0", "--json")
    assert done.returncode == 0, done.stderr
    [action] = [d for d in json.loads(done.stdout)["deployments"] if d["dataset"] == dataset]
    assert action["action"] == "converged" and action["announced"] == run["ledger_id"]
    assert state.get_run(run_id)["deployment"]["status"] == "done"
    assert state.get_dataset(dataset)["deployment"]["status"] == "done" and state.last_unannounced(dataset) is None
    answer = requests.post(f"{predictor_url(local_cloud, dataset)}/predict", json={"instances": [INSTANCE]},
                           timeout=60)
    assert answer.status_code == 200 and answer.headers["X-Model-Version"] == str(run["challenger_version"])


def test_a_trainer_over_its_memory_limit_is_stopped_and_the_run_says_so(local_cloud, cloud, state, taxi,
                                                                          taxi_spec, tmp_path, unique):
    """The local Cloud Run holds each job to its memory (topology.yaml, or `cloudrun/limits.json` as `gcloud run
    jobs update --memory` sets it): a trainer past it is stopped as Cloud Run stops one, both attempts; the
    reconciler fails the run at once (the same window would overrun again) with Cloud Run's message and what to
    change."""
    limits = local_cloud.home / "cloudrun" / "limits.json"
    limits.write_text(json.dumps({"trainer": "150Mi"}))
    try:
        run_id = drop_and_leave(local_cloud, taxi, taxi_spec, tmp_path, f"hungry_{unique}")
        execution = failed_execution(cloud, state, run_id, "trainer")
    finally:
        limits.unlink()
    from tollgate.cloud import run as cloudrun

    seen = cloudrun.describe_execution(cloud, execution)
    assert seen["retried"] == 1 and cloudrun.memory_exceeded(seen["message"]), seen
    report = reconcile(local_cloud)
    [action] = [r for r in report["runs"] if r["run_id"] == run_id]
    assert action["action"] == "failed"   # not relaunched: a relaunch would overrun again
    run = state.get_run(run_id)
    assert run["status"] == lifecycle.FAILED and lifecycle.failed_step(run["error"]) == "trainer"
    assert "Memory limit of 150 MiB exceeded" in run["error"]["message"]
    assert "training.max_rows" in run["error"]["message"]
    log = (local_cloud.home / "logs" / "jobs").glob(f"{execution.rsplit('/', 1)[-1]}-task0.log")
    assert "stopped: Memory limit of 150 MiB exceeded" in next(log).read_text()
