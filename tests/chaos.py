"""Fault injection on a running local cloud: a burst of drops while job and function processes are SIGKILLed at
random moments (and one function's master, a dead part `tollgate up` must restart alone), then the invariants
that must hold however the chain was interrupted.

Used by tests/test_chaos_e2e.py (one seed, bounded) and by ``make chaos`` (several seeds, more drops):

    python -m tests.chaos --seeds 1 2 3 --drops 8      (starts its own local cloud in a temporary home)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from tollgate.topology import ROOT

CHAIN_FUNCTIONS = ("ingest", "launch-trainer", "launch-evaluator", "decider")
JOBS = ("validator", "trainer", "evaluator")


@dataclasses.dataclass
class Report:
    seed: int
    dataset: str
    run_ids: list[str]
    kills: list[str]
    restarted: list[str]
    statuses: dict[str, str]
    violations: list[str]
    seconds: float


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _job_pids(home: Path) -> list[tuple[str, int]]:
    """(job, pid) of every job task process of this local cloud (its env names the job and this home)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = dict(item.split("=", 1) for item in (entry / "environ").read_bytes().decode(errors="replace")
                       .split("\0") if "=" in item)
        except OSError:
            continue
        if env.get("TOLLGATE_HOME") == str(home) and env.get("CLOUD_RUN_JOB") in JOBS:
            found.append((env["CLOUD_RUN_JOB"], int(entry.name)))
    return found


class Monkey:
    """SIGKILLs a random job task or function worker every 0.5–2.5 s until stopped, and once the master of a
    chain function (its whole process group: a dead part)."""

    def __init__(self, local_cloud: Any, rng: random.Random) -> None:
        self.local_cloud, self.rng = local_cloud, rng
        self.kills: list[str] = []
        self.dead_part: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="chaos-monkey")

    def _loop(self) -> None:
        while not self.stop.wait(self.rng.uniform(0.5, 2.5)):
            choice = self.rng.random()
            if choice < 0.55:
                jobs = _job_pids(self.local_cloud.home)
                if jobs:
                    job, pid = self.rng.choice(jobs)
                    self._kill(pid, f"job {job} task {pid}")
            elif choice < 0.9 or self.dead_part is not None:
                function = self.rng.choice(CHAIN_FUNCTIONS)
                part = self.local_cloud.parts.get(f"function-{function}")
                workers = _children(part.pid) if part else []
                if workers:
                    self._kill(workers[0], f"function {function} worker {workers[0]}")
            else:
                function = self.rng.choice(CHAIN_FUNCTIONS)
                part = self.local_cloud.parts[f"function-{function}"]
                try:
                    os.killpg(part.pid, signal.SIGKILL)
                    self.dead_part = f"function-{function}"
                    self.kills.append(f"function {function} master (the whole part)")
                except ProcessLookupError:
                    pass

    def _kill(self, pid: int, what: str) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
            self.kills.append(what)
        except ProcessLookupError:
            pass


def tollgate(local_cloud: Any, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tollgate", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **local_cloud.env(), "PYTHONPATH": f"{ROOT}:{ROOT / 'shared'}"})


def burst_files(folder: Path, drops: int, seed: int) -> list[Path]:
    from examples.wine import wine_frame

    frame = wine_frame(300 * drops, seed=seed)
    paths = []
    for i in range(drops):
        path = folder / f"batch-{i}.csv"
        frame.iloc[i * 300:(i + 1) * 300].to_csv(path, index=False)
        paths.append(path)
    return paths


def push_spec(local_cloud: Any, folder: Path, dataset: str, sample: Path) -> None:
    import pandas as pd

    from tollgate import inference

    spec = yaml.safe_load(inference.infer(pd.read_csv(sample), dataset, "cultivar", with_baseline=False))
    spec["model"] = {"estimator": "hist_gradient_boosting", "params": {"max_iter": 30}}
    spec["evaluation"]["bootstrap_resamples"] = 200
    spec["policy"].update(threshold=0.0, margin=-1.0)   # most decisions promote: serving moves under fire
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    done = tollgate(local_cloud, "spec", "push", str(path))
    if done.returncode != 0:
        raise RuntimeError(done.stderr)


def settle(local_cloud: Any, state: Any, dataset: str, run_ids: list[str], timeout: float) -> dict[str, str]:
    """Restart dead parts, then reconcile (what the scheduled reconcile tick does) until every run has ended and
    the dataset's deployment is no longer pending (a decider killed between its commit and the redeploy leaves it
    so, for the reconciler to finish)."""
    from tollgate import lifecycle

    deadline = time.monotonic() + timeout
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        local_cloud.restart_dead()
        statuses = {r: (state.get_run(r) or {}).get("status", "missing") for r in run_ids}
        deployment = (state.get_dataset(dataset).get("deployment") or {}).get("status")
        if all(s in lifecycle.TERMINAL for s in statuses.values()) and deployment in (None, "done"):
            return statuses
        tollgate(local_cloud, "reconcile", "--grace", "20")   # by hand, as an operator would: no 5-minute wait
        time.sleep(3)
    return statuses


def invariants(cloud: Any, state: Any, dataset: str, run_ids: list[str], statuses: dict[str, str]) -> list[str]:
    """What must hold after any interruption; each violation as a sentence."""
    import requests

    from tollgate import artifacts, events, lifecycle, serving
    from tollgate.cloud import run as cloudrun

    problems = []
    bucket = cloud.settings.bucket
    for blob in cloud.bucket.list_blobs(prefix=f"incoming/{dataset}/", versions=True):
        run_id = events.run_id(bucket, blob.name, blob.generation)
        if run_id not in statuses:
            problems.append(f"{blob.name}#{blob.generation} has no run among the dropped ones")
    for run_id, status in statuses.items():
        if status not in lifecycle.TERMINAL:
            problems.append(f"run {run_id} is still {status}")
    in_flight = [r["run_id"] for r in state.list_runs(limit=500, dataset=dataset)
                 if r["status"] not in lifecycle.TERMINAL]
    if in_flight:
        problems.append(f"runs in flight: {in_flight}")
    versions = state.list_versions(dataset)
    numbers = [v["version"] for v in versions]
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"registry versions are not contiguous: {numbers}")
    for record in versions:
        try:
            artifacts.loads(artifacts.read_verified(cloud, record), record["sha256"], artifacts.record_spec(record))
        except artifacts.ArtifactError as exc:
            problems.append(f"v{record['version']} does not verify: {exc}")
    stored = {int(name.split("/")[2]) for name in cloud.list_names(f"models/{dataset}/")
              if name.endswith("/model.skops")}
    if stored - set(numbers):
        problems.append(f"artifacts without a registry record: {sorted(stored - set(numbers))}")
    ledger = state.ledger(dataset)
    decided = [e.get("run_id") for e in ledger if e.get("kind") == "decision"]
    twice = sorted({r for r in decided if decided.count(r) > 1})
    if twice:
        problems.append(f"decided twice in the ledger: {twice}")
    deployment = state.get_dataset(dataset).get("deployment") or {}
    if deployment.get("status") not in (None, "done"):
        problems.append(f"the deployment is still {deployment.get('status')}: {deployment.get('error', '')}")
    pointers = serving.serving_summary(state.get_dataset(dataset))
    moves = [e for e in ledger if e.get("serving_after") is not None]
    if moves:
        last = moves[-1]["serving_after"]   # the ledger is in time order
        if (last.get("version"), (last.get("canary") or {}).get("version")) != \
                (pointers["version"], (pointers["canary"] or {}).get("version")):
            problems.append(f"serving {pointers} is not the ledger's last move {last}")
    if pointers["version"] is not None:
        service = cloudrun.get_service(cloud, dataset)
        answer = requests.get(f"{service.uri}/v2/models/{dataset}", timeout=120) if service else None
        if answer is None or answer.status_code != 200:
            problems.append(f"the predictor does not answer ({answer.status_code if answer else 'no service'})")
        elif pointers["canary"] is None and str(answer.json().get("versions", [None])[0]) != str(pointers["version"]):
            problems.append(f"the predictor answers with {answer.json().get('versions')}, serving says "
                            f"{pointers['version']}")
    return problems


def run(local_cloud: Any, cloud: Any, state: Any, seed: int, drops: int = 5, chaos_seconds: float = 45,
        settle_seconds: float = 420) -> Report:
    started = time.monotonic()
    rng = random.Random(seed)
    dataset = f"chaos_{seed}_{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="tollgate-chaos-") as tmp:
        paths = burst_files(Path(tmp), drops, seed)
        push_spec(local_cloud, Path(tmp), dataset, paths[0])
        monkey = Monkey(local_cloud, rng)
        monkey.thread.start()
        run_ids = []
        try:
            for path in paths:
                done = tollgate(local_cloud, "drop", str(path), "--dataset", dataset, "--json")
                if done.returncode != 0:
                    raise RuntimeError(done.stderr)
                run_ids.append(json.loads(done.stdout)["run_id"])
                time.sleep(rng.uniform(0, 2))
            monkey.stop.wait(max(0.0, chaos_seconds - (time.monotonic() - started)))
        finally:
            monkey.stop.set()
            monkey.thread.join()
        restarted = local_cloud.restart_dead()
        statuses = settle(local_cloud, state, dataset, run_ids, settle_seconds)
        violations = invariants(cloud, state, dataset, run_ids, statuses)
    return Report(seed, dataset, run_ids, monkey.kills, restarted, statuses, violations,
                  round(time.monotonic() - started, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--drops", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=90)
    args = parser.parse_args(argv)
    from localcloud.cloud import LocalCloud
    from tollgate.cloud import Cloud
    from tollgate.cloud.state import State
    from tollgate.settings import Settings

    with tempfile.TemporaryDirectory(prefix="tollgate-chaos-home-") as home:
        local = LocalCloud(home, project=f"tollgate-chaos-{uuid.uuid4().hex[:6]}", bucket="tollgate-chaos",
                           echo=lambda m: None, paused_schedules=("monitor", "reconcile"))
        local.up()
        os.environ.update(local.env())
        cloud = Cloud(Settings.from_env())
        state = State(cloud.firestore)
        failed = False
        try:
            for seed in args.seeds:
                report = run(local, cloud, state, seed, args.drops, args.seconds)
                counts = {s: list(report.statuses.values()).count(s) for s in set(report.statuses.values())}
                print(f"seed {seed}: {len(report.kills)} kills, restarted {report.restarted or 'nothing'}, runs "
                      f"{counts}, {report.seconds:.0f} s: "
                      + ("all invariants hold" if not report.violations else "VIOLATED"))
                for violation in report.violations:
                    print(f"  - {violation}")
                failed |= bool(report.violations)
        finally:
            local.down(export=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
