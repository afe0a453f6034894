"""`make demo`: the whole chain on the local cloud with the real Chicago taxi data.

Starts the local cloud (or reuses it), replays the trips as a time-ordered series of
half-year batches dropped into the bucket, with one deliberately corrupted export among them,
shows each run's decision as it happens, then a summary and a real HTTP prediction.
The local cloud keeps running afterwards; `make down` stops it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import requests
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples import breast_cancer  # noqa: E402
from localcloud.cloud import LocalCloud, LocalCloudError  # noqa: E402

DATA = ROOT / "examples" / "data" / "chicago_taxi" / "chicago_taxi_trips.csv"
TOLLGATE = str(Path(sys.executable).parent / "tollgate")
console = Console()
DRIFT_COLOURS = {"none": "green", "warn": "yellow", "severe": "red"}
VERDICT_COLOURS = {"promote": "green", "keep": "cyan", "review": "yellow"}

PERIODS = [
    ("2013-H1", "2013-01-01", "2013-07-01"), ("2013-H2", "2013-07-01", "2014-01-01"),
    ("2014-H1", "2014-01-01", "2014-07-01"), ("2014-H2", "2014-07-01", "2015-01-01"),
    ("2015-H1", "2015-01-01", "2015-07-01"), ("2015-H2", "2015-07-01", "2016-01-01"),
    ("2016", "2016-01-01", "2017-01-01"),
]
SAMPLE = {"trip_miles": 3.2, "trip_seconds": 900, "trip_start_hour": 14, "trip_start_day": 3,
          "trip_start_month": 6, "pickup_community_area": 8, "dropoff_community_area": 32,
          "pickup_latitude": 41.89, "pickup_longitude": -87.63, "dropoff_latitude": 41.88,
          "dropoff_longitude": -87.62, "payment_type": "Credit Card", "company": "Flash Cab"}


def make_batches(folder: Path) -> list[tuple[str, Path]]:
    """Half-year batches in time order (CSV, 2015-H1 as Parquet, 2015-H2 gzip-compressed), and a
    corrupted export (semicolons) after 2014-H1."""
    folder.mkdir(parents=True, exist_ok=True)
    trips = pd.read_csv(DATA).sort_values("trip_start_timestamp", kind="stable")
    when = pd.to_datetime(trips["trip_start_timestamp"], unit="s")
    batches = []
    for label, start, end in PERIODS:
        period = trips[(when >= start) & (when < end)]
        if label == "2015-H1":
            path = folder / f"taxi-{label}.parquet"
            period.to_parquet(path, index=False)
        else:
            path = folder / (f"taxi-{label}.csv.gz" if label == "2015-H2" else f"taxi-{label}.csv")
            period.to_csv(path, index=False)
        batches.append((label, path))
        if label == "2014-H1":
            broken = folder / "taxi-2014-H1-export-broken.csv"
            trips[(when >= start) & (when < end)].to_csv(broken, index=False, sep=";")
            batches.append(("2014-H1 (broken export)", broken))
    return batches


def fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("–" if value is None else str(value))


def drop_batch(label: str, path: Path, dataset: str, env: dict[str, str]) -> dict | None:
    """`tollgate drop --wait --json` as a user runs it; prints the verdict and why."""
    console.print(f"[bold]▶ {label}[/]  dropping {path.name}")
    done = subprocess.run([TOLLGATE, "drop", str(path), "--dataset", dataset, "--wait", "--json"],
                          stdout=subprocess.PIPE, text=True, env=env, check=False)
    if not done.stdout.strip():
        console.print(f"[red]the drop of {path.name} failed (exit {done.returncode})[/]")
        return None
    run = json.loads(done.stdout)
    verdict = run.get("decision") or run["status"]
    why = run.get("reason") if run.get("decision") else (run.get("message") or run.get("error"))
    console.print(f"  [{VERDICT_COLOURS.get(verdict, 'red')}]{verdict}[/]: {why}\n")
    return run


def summary_row(label: str, run: dict) -> tuple[str, ...]:
    diff = run.get("difference") or {}
    interval = f"[{diff['low']:+.3f}, {diff['high']:+.3f}]" if diff else "–"
    verdict = run.get("decision") or run["status"]
    colour = VERDICT_COLOURS.get(verdict, "red")
    drift = run.get("drift") or "–"
    return (label, fmt(run.get("rows_out") if run["status"] != "rejected" else 0),
            f"[{DRIFT_COLOURS.get(drift, 'white')}]{drift}[/]",
            fmt(run.get("challenger_metric")), fmt(run.get("champion_metric")), interval,
            f"[{colour}]{verdict}[/]", fmt(run.get("model_version")))


def runs_table(title: str, rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=title)
    for col in ("batch", "rows used", "drift", "challenger", "champion", "95% CI of gain", "decision", "serving"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table


def main() -> int:
    console.rule("[bold]Tollgate demo: Chicago taxi fares, batch by batch")
    local = LocalCloud(echo=lambda m: console.print(f"[dim]{m}[/]"))
    try:
        local.up()
    except LocalCloudError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    env = {**os.environ, **local.env()}
    for spec in ("chicago_taxi", "breast_cancer"):   # the bundled specs, also over older copies in the bucket
        subprocess.run([TOLLGATE, "spec", "push", str(ROOT / "datasets" / f"{spec}.yaml")], env=env, check=True)
    batches = make_batches(local.home / "demo")
    console.print(f"{len(batches)} batches from {DATA.relative_to(ROOT)} → gs://{local.bucket}/incoming/chicago_taxi/\n")
    rows = []
    run_ids: dict[str, str] = {}
    started = time.monotonic()
    for label, path in batches:
        run = drop_batch(label, path, "chicago_taxi", env)
        if run is None:
            return 1
        run_ids[label] = run["run_id"]
        rows.append(summary_row(label, run))
    console.print(runs_table(f"Runs (primary metric R² on each batch's held-out rows; "
                             f"{time.monotonic() - started:.0f}s)", rows))

    status = json.loads(subprocess.run([TOLLGATE, "status", "--json"], stdout=subprocess.PIPE, text=True,
                                       env=env, check=True).stdout)
    url = status["predictor_url"]
    if not url:
        console.print("[red]no predictor is serving[/]")
        return 1
    response = requests.post(f"{url}/predict", json={"instances": [SAMPLE]}, timeout=30)
    console.rule("[bold]A real prediction")
    console.print(f"$ curl -X POST {url}/predict -H 'Content-Type: application/json' -d '{{\"instances\": [...]}}'",
                  soft_wrap=True, highlight=False)
    console.print(f"HTTP {response.status_code}  X-Model-Version: {response.headers.get('X-Model-Version')}")
    console.print_json(response.text)
    wide = {**env, "COLUMNS": str(max(console.width, 160))}   # tables stay readable when piped
    console.rule("[bold]Data quality: what the validator caught")
    for label in ("2014-H1 (broken export)", "2016"):
        console.print(f"$ tollgate run show {run_ids[label]}    # {label}", highlight=False)
        subprocess.run([TOLLGATE, "run", "show", run_ids[label]], env=wide, check=False)
    report = local.home / "demo" / f"{run_ids['2016']}-validation.html"
    console.print(f"$ tollgate report {run_ids['2016']} -o {report}", highlight=False)
    subprocess.run([TOLLGATE, "report", run_ids["2016"], "-o", str(report)], env=wide, check=False)
    console.rule("[bold]Lineage and the decision ledger")
    for args in (["models", "chicago_taxi"], ["history", "chicago_taxi"]):
        console.print(f"$ tollgate {' '.join(args)}", highlight=False)
        subprocess.run([TOLLGATE, *args], env=wide, check=False)
    console.rule("[bold]Not only taxis: a classification dataset (scikit-learn's breast cancer data)")
    cancer_rows = []
    for i, path in enumerate(breast_cancer.make_batches(local.home / "demo" / "breast_cancer"), start=1):
        run = drop_batch(f"breast cancer {i}", path, "breast_cancer", env)
        if run is None:
            return 1
        cancer_rows.append(summary_row(f"batch {i}", run))
    console.print(runs_table("breast_cancer (primary metric ROC AUC on held-out rows)", cancer_rows))
    console.print(f"$ tollgate report {run['run_id']} --kind evaluation    # metrics, slices, confusion matrix, ROC",
                  highlight=False)
    subprocess.run([TOLLGATE, "report", run["run_id"], "--kind", "evaluation", "-o",
                    str(local.home / "demo" / f"{run['run_id']}-evaluation.html")], env=wide, check=False)
    console.rule("[bold]Go on")
    console.print(f"  .venv/bin/tollgate status | runs | run show RUN_ID | report RUN_ID --open | models chicago_taxi"
                  f" | history chicago_taxi\n"
                  f"  .venv/bin/tollgate drop FILE --dataset chicago_taxi --wait\n"
                  f"  eval $(.venv/bin/tollgate env --gcloud) && gcloud storage cp FILE "
                  f"gs://{local.bucket}/incoming/chicago_taxi/\n"
                  f"  curl -X POST {url}/predict -H 'Content-Type: application/json' -d @request.json\n"
                  f"  make down   (stops the local cloud, keeps its data)", soft_wrap=True, highlight=False)
    return 0 if response.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
