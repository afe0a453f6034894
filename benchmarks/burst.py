"""`make bench-burst` (and part of `make bench-scale`): many files for one dataset dropped at once on a fresh
local cloud, the whole chain for each, until every run has ended.

The real Chicago taxi trips of the bundled sample, cut by time into ``--files`` batches (default 50), uploaded to
``incoming/burst_bench/`` one right after another (no waiting on any run), with the bundled taxi spec (its
model at 60 boosting iterations, so that the chain, not one fit, is what is measured). Reported: how many
trainings ran (one per file before the training slot), how many ran at the same time, the runs that ended
decided / superseded / otherwise, how often a run was sent back to its evaluator because the champion moved
(and how many of those then went to review), the seconds from the first upload until every run had ended, and
that every superseded run's batch is in the window of the run that superseded it.

Last line: ``burst files=<n> trainings=<n> max_concurrent=<n> decided=<n> superseded=<n> other=<n>
reevaluations=<n> reviews_after_reevaluation=<n> seconds=<s>``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TAXI = ROOT / "examples" / "data" / "chicago_taxi" / "chicago_taxi_trips.csv"
HOME = ROOT / ".bench" / "burst"
DATASET = "burst_bench"


def _intervals(runs: list[dict[str, Any]]) -> list[tuple[dt.datetime, dt.datetime]]:
    """When each run trained: from its claim of the trainer to its next status."""
    from tollgate import lifecycle

    spans = []
    for run in runs:
        history = run.get("history") or []
        for i, step in enumerate(history):
            if step["status"] == lifecycle.TRAINING:
                end = history[i + 1]["at"] if i + 1 < len(history) else dt.datetime.now(dt.timezone.utc)
                spans.append((step["at"], end))
    return spans


def max_concurrent(spans: list[tuple[dt.datetime, dt.datetime]]) -> int:
    """The most spans open at one instant."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def measure(files: int, echo: Callable[[str], None] = print, timeout: float = 3600) -> dict[str, Any]:
    from localcloud.cloud import LocalCloud
    from tollgate import lifecycle
    from tollgate import spec as specs
    from tollgate.cloud import Cloud
    from tollgate.cloud.state import State
    from tollgate.events import run_id as derive_run_id
    from tollgate.settings import Settings

    shutil.rmtree(HOME, ignore_errors=True)
    folder = HOME / "files"
    folder.mkdir(parents=True)
    trips = pd.read_csv(TAXI).sort_values("trip_start_timestamp")
    paths = []
    for i in range(files):
        chunk = trips.iloc[i * len(trips) // files:(i + 1) * len(trips) // files]
        paths.append(folder / f"batch-{i:03d}.csv")
        chunk.to_csv(paths[-1], index=False)
    raw = yaml.safe_load((ROOT / "datasets" / "chicago_taxi.yaml").read_text())
    raw = {**raw, "name": DATASET, "model": {**raw["model"], "params": {**raw["model"]["params"], "max_iter": 60}}}
    local = LocalCloud(HOME / "home", project=f"tollgate-burst-{uuid.uuid4().hex[:6]}", bucket="tollgate-burst",
                       echo=lambda m: None, paused_schedules=("monitor",))
    echo("starting a local cloud for the burst")
    local.up()
    try:
        os.environ.update(local.env())
        cloud = Cloud(Settings.from_env())
        state = State(cloud.firestore)
        spec = specs.from_dict(raw)
        cloud.bucket.blob(specs.object_name(spec.name)).upload_from_string(yaml.safe_dump(spec.raw),
                                                                            content_type="application/yaml")
        echo(f"dropping {files} files of ~{len(trips) // files} trips each for {DATASET}")
        started = time.monotonic()
        run_ids = []
        for path in paths:
            name = f"incoming/{DATASET}/{path.name}"
            blob = cloud.upload_file(path, name)
            run_ids.append(derive_run_id(cloud.settings.bucket, name, blob.generation))
        deadline, runs, said = started + timeout, [], ""
        while time.monotonic() < deadline:
            runs = [state.get_run(r) or {"run_id": r, "status": "not yet received"} for r in run_ids]
            counts = pd.Series([r["status"] for r in runs]).value_counts().to_dict()
            line = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            if line != said:
                echo(f"  {time.monotonic() - started:6.1f}s  {line}")
                said = line
            if all(r["status"] in lifecycle.TERMINAL for r in runs):
                break
            time.sleep(1)
        else:
            raise SystemExit(f"the burst did not end within {timeout:.0f}s: {said}")
        seconds = time.monotonic() - started
        by_id = {r["run_id"]: r for r in runs}
        superseded = [r for r in runs if r["status"] == lifecycle.SUPERSEDED]
        for run in superseded:   # each superseded batch is in the window of the run that took it over
            winner = by_id.get(run["superseded_by"]) or state.get_run(run["superseded_by"]) or {}
            version = state.get_version(DATASET, winner["challenger_version"])
            manifest = cloud.read_json(version["training_window"]["manifest"].split("/", 3)[3])
            if run["curated"]["sha256"] not in {b["sha256"] for b in manifest["batches"]}:
                raise SystemExit(f"run {run['run_id']} was superseded by {winner['run_id']}, whose window lacks "
                                 "its batch")
        trainings = _intervals(runs)
        return {"files": files, "trainings": len(trainings), "max_concurrent": max_concurrent(trainings),
                "decided": sum(r["status"] == lifecycle.DECIDED for r in runs), "superseded": len(superseded),
                "other": sum(r["status"] not in (lifecycle.DECIDED, lifecycle.SUPERSEDED) for r in runs),
                "reevaluations": sum(int(r.get("reevaluations") or 0) for r in runs),
                "reviews_after_reevaluation": sum(r.get("decision") == "review" and int(r.get("reevaluations") or 0) > 0
                                                  for r in runs),
                "seconds": round(seconds, 1)}
    finally:
        local.down(export=False)


def line(result: dict[str, Any]) -> str:
    return "burst " + " ".join(f"{k}={v}" for k, v in result.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=50, help="files dropped at once")
    args = parser.parse_args()
    print(line(measure(args.files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
