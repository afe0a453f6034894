"""`make demo`: the whole chain on the local cloud with the real Chicago taxi data.

Starts the local cloud (or reuses it), replays the trips as a time-ordered series of
half-year batches dropped into the bucket, with one deliberately corrupted export among them,
shows each run's decision as it happens, then a summary and a real HTTP prediction; then decisions,
monitoring, trust boundaries, a classification dataset with a crash recovered, and a burst of files
coalesced into one training. With ``--mlflow`` (`make demo MLFLOW=1`) the local cloud also runs an MLflow
tracking server, and the demo ends with what was mirrored there.
The local cloud keeps running afterwards; `make down` stops it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples import breast_cancer, wine  # noqa: E402
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


LATE_TRIPS = 250   # the last trips of 2016 arrive late, as a batch of their own


def make_batches(folder: Path) -> list[tuple[str, Path]]:
    """Half-year batches in time order (CSV, 2015-H1 as Parquet, 2015-H2 gzip-compressed), and a
    corrupted export (semicolons) after 2014-H1. The last LATE_TRIPS trips of 2016 are kept back."""
    folder.mkdir(parents=True, exist_ok=True)
    trips = pd.read_csv(DATA).sort_values("trip_start_timestamp", kind="stable").iloc[:-LATE_TRIPS]
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


def make_review_batches(folder: Path) -> tuple[Path, Path]:
    """Two batches the policy will not judge alone: 2016 re-exported with durations in minutes
    (severe drift on trip_seconds), and the late trips of 2016 (too few held-out rows)."""
    trips = pd.read_csv(DATA).sort_values("trip_start_timestamp", kind="stable")
    when = pd.to_datetime(trips["trip_start_timestamp"], unit="s")
    minutes = trips[(when >= "2016-01-01")].iloc[:-LATE_TRIPS].copy()
    minutes["trip_seconds"] = (minutes["trip_seconds"] / 60).round()
    minutes_path, late_path = folder / "taxi-2016-reexport-minutes.csv", folder / "taxi-2016-late-trips.csv"
    minutes.to_csv(minutes_path, index=False)
    trips.iloc[-LATE_TRIPS:].to_csv(late_path, index=False)
    return minutes_path, late_path


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


def cli(env: dict[str, str], *args: str, note: str = "") -> subprocess.CompletedProcess[str]:
    """Run `tollgate ARGS` as a user would, showing the command and its output."""
    console.print(f"$ tollgate {' '.join(args)}" + (f"    # {note}" if note else ""), highlight=False, soft_wrap=True)
    done = subprocess.run([TOLLGATE, *args], env=env, stdout=subprocess.PIPE, text=True, check=False)
    sys.stdout.write(done.stdout)
    sys.stdout.flush()
    return done


def served(url: str, n: int) -> dict[int, int]:
    """Send n predictions to the service URL and count the model version each response reports."""
    counts: dict[int, int] = {}
    with requests.Session() as session:
        for _ in range(n):
            response = session.post(f"{url}/predict", json={"instances": [SAMPLE]}, timeout=30)
            version = int(response.headers.get("X-Model-Version", 0)) if response.ok else -response.status_code
            counts[version] = counts.get(version, 0) + 1
    return dict(sorted(counts.items()))


class PredictionLog:
    """A pull subscription on the predictor's `predictions` topic."""

    def __init__(self, local: LocalCloud) -> None:
        from google.cloud import pubsub_v1

        self.subscriber = pubsub_v1.SubscriberClient()
        self.path = self.subscriber.subscription_path(local.project, f"demo-predictions-{int(time.time())}")
        self.subscriber.create_subscription(name=self.path,
                                            topic=f"projects/{local.project}/topics/predictions")

    def pull(self, expected: int, timeout: float = 20) -> list[dict]:
        records: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            pulled = self.subscriber.pull(subscription=self.path, max_messages=20, timeout=5)
            for message in pulled.received_messages:
                records += json.loads(message.message.data)["records"]
            if pulled.received_messages:
                self.subscriber.acknowledge(subscription=self.path,
                                            ack_ids=[m.ack_id for m in pulled.received_messages])
        return records


def predictor_contracts(url: str, log: PredictionLog) -> None:
    """The same model through the Open Inference Protocol (tritonclient), bad input, metadata, metrics, the log."""
    import numpy as np
    import tritonclient.http as triton

    console.rule("[bold]The predictor's contracts: Vertex AI, Open Inference Protocol v2, metadata, metrics")
    rows = [SAMPLE, {**SAMPLE, "trip_miles": 12.5, "trip_seconds": 1900}, {**SAMPLE, "company": None}]
    vertex = requests.post(f"{url}/predict", json={"instances": rows}, timeout=30).json()["predictions"]
    client = triton.InferenceServerClient(url=url.removeprefix("http://"))
    inputs = []
    for name in SAMPLE:
        numeric = name not in ("payment_type", "company")
        data = np.asarray([[r[name]] for r in rows], dtype="float64" if numeric else object)
        if not numeric:
            data[data == None] = "Unknown"  # noqa: E711 - BYTES tensors carry no null; the encoder maps it as unseen
        tensor = triton.InferInput(name, list(data.shape), "FP64" if numeric else "BYTES")
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    dataset = "chicago_taxi"
    result = client.infer(dataset, inputs)
    console.print(f"tritonclient.http infer(\"{dataset}\", 13 named inputs, binary tensors) → predict = "
                  f"{np.round(result.as_numpy('predict'), 4).tolist()}", highlight=False)
    console.print(f"POST /predict with the same rows                         → predictions = "
                  f"{np.round(vertex, 4).tolist()}", highlight=False)
    bad = requests.post(f"{url}/predict", json={"instances": [{**SAMPLE, "trip_miles": -2, "fare": None},
                                                              {**SAMPLE, "payment_type": "Bitcoin"}]}, timeout=30)
    console.print(f"$ curl ... a request with a negative distance and an unknown payment type → HTTP {bad.status_code}")
    for problem in bad.json()["problems"]:
        console.print(f"    {problem}", highlight=False)
    meta = requests.get(f"{url}/metadata", timeout=30).json()
    console.print(f"GET /metadata → v{meta['model_version']} ({meta['estimator']}), inference path: "
                  f"{meta['inference_path']} ({meta['inference_check']})", highlight=False)
    metrics = requests.get(f"{url}/metrics", timeout=30).text.splitlines()
    shown = [m for m in metrics if m.startswith(("tollgate_predictor_requests_total", "tollgate_predictor_batch_rows_"
                                                 "count", "tollgate_predictor_predictions_total"))]
    console.print("GET /metrics →\n    " + "\n    ".join(shown), highlight=False)
    records = log.pull(expected=1 + 2 * len(rows))
    console.print(f"topic `predictions`: {len(records)} logged predictions so far (batched, off the request "
                  f"path); the latest:", highlight=False)
    if records:
        console.print_json(json.dumps(records[-1]))


def decisions(local: LocalCloud, env: dict[str, str], wide: dict[str, str], url: str) -> bool:
    """Review requests answered from the CLI, a canary rollout measured at the URL, a rollback, the ledger."""
    console.rule("[bold]When the policy asks a person")
    minutes, late = make_review_batches(local.home / "demo")
    reexport = drop_batch("2016 re-exported, durations in minutes", minutes, "chicago_taxi", env)
    if reexport is None or reexport.get("decision") != "review":
        console.print("[red]expected the re-export in minutes to go to review (severe drift)[/]")
        return False
    cli(wide, "review", "list")
    cli(wide, "review", "show", reexport["run_id"])
    cli(wide, "review", "reject", reexport["run_id"], "--reviewer", "ana@example.com", "--reason",
        "trip_seconds holds minutes in this export; fix the export and drop it again",
        note="the champion stays; the batch stays out of later training")

    console.rule("[bold]A canary rollout")
    spec_path = local.home / "demo" / "chicago_taxi-canary.yaml"
    text = (ROOT / "datasets" / "chicago_taxi.yaml").read_text()
    spec_path.write_text(text.replace("canary_percent: 0 ", "canary_percent: 10 "))
    cli(wide, "spec", "push", str(spec_path), note="the team turns canaries on: deployment.canary_percent: 10")
    before = served(url, 1)
    late_run = drop_batch(f"the last {LATE_TRIPS} trips of 2016, arriving late", late, "chicago_taxi", env)
    if late_run is None or late_run.get("decision") != "review":
        console.print("[red]expected the late trips to go to review (too few held-out rows)[/]")
        return False
    approved = cli(wide, "review", "approve", late_run["run_id"], "--reviewer", "ana@example.com", "--reason",
                   "a small batch of late trips; the challenger is trained on every batch so far",
                   note="the same promotion path as an automatic one: here, a 10% canary")
    if approved.returncode != 0:
        return False
    split = served(url, 1000)
    canary = late_run["challenger_version"]
    console.print(f"1,000 requests to {url}: versions served {split} → the canary v{canary} got "
                  f"{split.get(canary, 0) / 10:.1f}%", highlight=False)
    cli(wide, "status")
    cli(wide, "canary", "promote", "chicago_taxi", "--actor", "ana@example.com", "--reason",
        "error rate and latency match the champion's")
    console.print(f"200 requests: versions served {served(url, 200)}", highlight=False)
    promoted_at = dt.datetime.now(dt.timezone.utc)

    console.rule("[bold]Rollback in one step")
    time.sleep(1)
    cli(wide, "rollback", "chicago_taxi", "--actor", "bo@example.com", "--reason",
        "customer complaints about airport fares")
    response = requests.post(f"{url}/predict", json={"instances": [SAMPLE]}, timeout=30)
    console.print(f"$ curl -X POST {url}/predict ...   → HTTP {response.status_code}, "
                  f"X-Model-Version: {response.headers.get('X-Model-Version')} (before the canary: "
                  f"{next(iter(before))})", highlight=False, soft_wrap=True)

    console.rule("[bold]Lineage and the decision ledger: the whole story")
    cli(wide, "models", "chicago_taxi")
    cli(wide, "history", "chicago_taxi")
    cli(wide, "history", "chicago_taxi", "--at", promoted_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        note="what served at that moment, and why")
    return response.ok


def replay(url: str, trips: pd.DataFrame, features, per_request: int = 10) -> list[tuple[str, int, float]]:
    """Trips as live traffic, ``per_request`` instances a call; returns (request id, row, true fare) for every
    trip: the labels that arrive later, keyed by the X-Request-Id each answer carried (the predictor signs
    the ids it issues and takes feedback only for those)."""
    labels = []
    with requests.Session() as session:
        for start in range(0, len(trips), per_request):
            chunk = trips.iloc[start:start + per_request]
            instances = [{k: (None if pd.isna(v) else v) for k, v in r.items()}
                         for r in chunk[list(features)].to_dict("records")]
            response = session.post(f"{url}/predict", json={"instances": instances}, timeout=30)
            response.raise_for_status()
            request_id = response.headers["X-Request-Id"]
            labels += [(request_id, i, float(f)) for i, f in enumerate(chunk["fare"])]
    return labels


def misjoined(trips: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """The same trips after a join on the wrong key upstream: each trip's distance and its duration come from two
    other trips (seeded). Every column keeps its values, so each input's distribution is exactly the same and the
    drift tests (one input at a time) cannot see it; only how the inputs go together changed."""
    rng = np.random.default_rng(seed)
    return trips.assign(trip_miles=trips["trip_miles"].to_numpy()[rng.permutation(len(trips))],
                        trip_seconds=trips["trip_seconds"].to_numpy()[rng.permutation(len(trips))])


def labels_csv(labels: list[tuple[str, int, float]], scale: float = 1.0) -> str:
    """A labels file as users drop it under labels/<dataset>/: request id, row, the true target."""
    frame = pd.DataFrame(labels, columns=["request_id", "row", "fare"])
    return frame.assign(fare=(frame["fare"] * scale).round(2)).to_csv(index=False)


def monitoring(local: LocalCloud, env: dict[str, str], wide: dict[str, str], url: str) -> bool:
    """Live traffic with late labels, windows of realised R², an alert when it decays, and the
    retraining request it starts."""
    from google.cloud import storage

    from tollgate import spec as specs
    from tollgate import validation

    console.rule("[bold]Monitoring: live traffic, late labels, realised R² over time")
    spec_path = local.home / "demo" / "chicago_taxi-monitored.yaml"
    text = (ROOT / "datasets" / "chicago_taxi.yaml").read_text()
    window_s = 15
    spec_path.write_text(text.replace("window_minutes: 60 ", f"window_minutes: {window_s / 60:.2f} ")
                         .replace("label_window_hours: 168 ", f"label_window_hours: {window_s / 3600:.6f} ")
                         .replace("alert_cooldown_minutes: 60 ", "alert_cooldown_minutes: 0.1 ")
                         .replace("retrain_cooldown_hours: 24 ", "retrain_cooldown_hours: 0.01 ")
                         .replace("attribution_drift: 0.05 ", "attribution_drift: 0.03 "))
    cli(wide, "spec", "push", str(spec_path),
        note=f"{window_s}-second windows so that the demo sees several, short cool-downs, and attribution drift "
             "at 3 points: a fare is nearly a sum of its inputs' effects, so what it relies on moves little")
    started = dt.datetime.now(dt.timezone.utc).isoformat()
    spec = specs.load(spec_path)
    trips = pd.read_csv(DATA).sort_values("trip_start_timestamp", kind="stable").iloc[-LATE_TRIPS:]
    trips = validation.validate(trips, spec).data.reset_index(drop=True)   # what a client sends: valid trips
    bucket = storage.Client(project=local.project).bucket(local.bucket)
    phases = [("the late trips of 2016, first half", trips.iloc[: len(trips) // 2], 1.0),
              ("the late trips of 2016, second half", trips.iloc[len(trips) // 2:], 1.0),
              ("the same trips joined on the wrong key upstream: distances and durations of other trips (no "
               "labels yet)", misjoined(trips), None),
              ("the same trips after a 60% fare increase", trips, 1.6)]
    last_traffic = time.monotonic()   # the canary and rollback requests above stay out of the first window
    for i, (what, rows, scale) in enumerate(phases, start=1):
        time.sleep(max(0.0, window_s - (time.monotonic() - last_traffic)))   # the previous window has closed
        labels = replay(url, rows, spec.features)
        last_traffic = time.monotonic()
        told = f"[bold]▶ window {i}[/]: {len(labels)} predictions of {what} → {url}/predict"
        if scale is not None:
            name = f"labels/chicago_taxi/demo-window-{i}.csv"
            bucket.blob(name).upload_from_string(labels_csv(labels, scale), content_type="text/csv")
            told += f"; their true fares{' (×1.6)' if scale != 1 else ''} → gs://{local.bucket}/{name}"
        console.print(told, highlight=False)
        time.sleep(2.5)   # the predictor publishes its log every second
        done = cli(wide, "monitor", "run", note="what the scheduler's monitor-tick runs every 5 minutes")
        if done.returncode != 0:
            return False
        if scale is None:
            said = json.loads(subprocess.run([TOLLGATE, "monitor", "chicago_taxi", "--json"], env=env,
                                             stdout=subprocess.PIPE, text=True, check=True).stdout)["windows"][-1]
            served = (said.get("versions") or {}).get(str((said.get("serving") or {}).get("version")), {})
            shifted = served.get("attribution_drift") or {}
            console.print(f"  input drift: {(served.get('drift') or {}).get('verdict')} (each column holds the "
                          f"same values as the trips as they were, so the same verdict); attribution drift: "
                          f"{shifted.get('verdict')} — "
                          f"{shifted.get('message')}", highlight=False)
            if shifted.get("verdict") != "drift" or "attribution_drift" not in {
                    a["kind"] for a in (said.get("actions") or {}).get("alerts", [])}:
                console.print("[red]expected an attribution-drift alert on the trips whose distances and "
                              "durations belong to other trips[/]")
                return False
    warehouse_traffic(local)
    windows = json.loads(subprocess.run([TOLLGATE, "monitor", "chicago_taxi", "--json"], env=env,
                                        stdout=subprocess.PIPE, text=True, check=True).stdout)["windows"]
    retraining = next((w["actions"]["retraining"] for w in reversed(windows) if w["end"] > started
                       and (w.get("actions") or {}).get("retraining")), None)   # also from a scheduled tick
    cli(wide, "monitor", "chicago_taxi", note="the latest window per version, and the trend")
    cli(wide, "alerts", "--dataset", "chicago_taxi")
    report = local.home / "demo" / "chicago_taxi-monitoring.html"
    cli(wide, "monitor", "chicago_taxi", "--report", str(report), note="the plots over time, as HTML")
    if not retraining:
        console.print("[red]expected the decay to request a retraining run[/]")
        return False
    done = cli(wide, "run", "show", retraining, "--wait",
               note="the retraining the monitor asked for: the chain over the latest curated batch")
    if done.returncode == 2:   # decided, and a person decides: the latest batch (the late trips) holds few rows
        console.print("  the retraining is judged on the latest batch's held-out rows, too few for the policy: it "
                      "waits for a person while the champion keeps serving", highlight=False)
    return done.returncode in (0, 2)


def warehouse_traffic(local: LocalCloud) -> None:
    """The prediction log is a table: the monitor's own traffic query over the last hour, on DuckDB over the
    bucket's Parquet here (the same SQL runs on BigQuery on Google Cloud)."""
    from tollgate.cloud import Cloud
    from tollgate.settings import Settings
    from tollgate.warehouse import queries

    cloud = Cloud(Settings.from_env())
    now = dt.datetime.now(dt.timezone.utc)
    rows = cloud.warehouse.query(queries.TRAFFIC, dataset="chicago_taxi", since=now - dt.timedelta(hours=1),
                                 until=now, start=now - dt.timedelta(hours=1), end=now).to_pylist()
    table = Table(title=f"the prediction log in SQL: the last hour of chicago_taxi ({cloud.warehouse.engine} over "
                        f"gs://{local.bucket}/warehouse/; BigQuery on Google Cloud)")
    for col in ("version", "requests", "rows answered", "server errors", "client errors", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right")
    for r in rows:
        q = r["latency_quantiles"] or []
        p50, p99 = (f"{q[i]:.1f}" if len(q) > i and q[i] is not None else "-" for i in (50, 99))
        table.add_row(str(r["model_version"]), str(r["requests"]), str(r["ok_rows"]), str(r["errors"]),
                      str(r["client_errors"]), p50, p99)
    console.print(table)


def trust_boundaries(local: LocalCloud, wide: dict[str, str], url: str) -> bool:
    """No input runs code or forges evidence: a spec whose rule would run Python, feedback for a request the
    predictor never answered."""
    console.rule("[bold]Trust boundaries: no input runs code or forges evidence")
    hostile = local.home / "demo" / "chicago_taxi-hostile.yaml"
    text = (ROOT / "datasets" / "chicago_taxi.yaml").read_text()
    hostile.write_text(text.replace("  - name: fare_needs_duration\n", "  - name: sneaky\n"
                                    "    expr: \"fare.apply(print) == 1\"\n  - name: fare_needs_duration\n"))
    refused = cli(wide, "spec", "push", str(hostile),
                  note="a rule that would run Python: refused when the spec loads (and at ingest, as bad_spec)")
    forged = requests.post(f"{url}/feedback", json={"request_id": "0" * 32 + "." + "f" * 32, "label": 99.0},
                           timeout=30)
    console.print(f"$ curl -X POST {url}/feedback -d '{{\"request_id\": \"<made up>\", \"label\": 99.0}}'   "
                  f"→ HTTP {forged.status_code}: {forged.json().get('problems')}", highlight=False, soft_wrap=True)
    answered = requests.post(f"{url}/predict", json={"instances": [SAMPLE]}, timeout=30)
    request_id = answered.headers["X-Request-Id"]
    accepted = requests.post(f"{url}/feedback", json={"request_id": request_id, "label": 11.25}, timeout=30)
    console.print(f"$ curl -X POST {url}/feedback -d '{{\"request_id\": \"{request_id}\", \"label\": 11.25}}'   "
                  f"→ HTTP {accepted.status_code} (the X-Request-Id the predictor issued and signed)",
                  highlight=False, soft_wrap=True)
    return refused.returncode != 0 and forged.status_code == 400 and accepted.status_code == 202


def killed_and_recovered(label: str, path: Path, dataset: str, wide: dict[str, str]) -> dict | None:
    """Drop a batch and walk away; its trainer is SIGKILLed on every attempt, as an out-of-memory kill would do.
    Nothing could mark the run failed: the reconciler finds the failed execution and relaunches the step."""
    from localcloud import processes
    from tollgate.cloud import Cloud
    from tollgate.cloud import run as cloudrun
    from tollgate.cloud.state import State
    from tollgate.settings import Settings

    console.print(f"[bold]▶ {label}[/]  dropping {path.name} and walking away; its trainer is killed with SIGKILL "
                  "on every attempt (an out-of-memory kill)", highlight=False)
    done = subprocess.run([TOLLGATE, "drop", str(path), "--dataset", dataset, "--json"], env=wide,
                          stdout=subprocess.PIPE, text=True, check=True)
    run_id = json.loads(done.stdout)["run_id"]
    cloud = Cloud(Settings.from_env())
    state = State(cloud.firestore)
    killed: list[int] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for pid in processes.task_pids({"RUN_ID": run_id, "CLOUD_RUN_JOB": "trainer"}):
            if pid not in killed:
                os.kill(pid, 9)
                killed.append(pid)
        execution = (state.get_run(run_id) or {}).get("executions", {}).get("trainer")
        if execution and cloudrun.execution_state(cloud, execution) == "failed":
            break
        time.sleep(0.05)
    else:
        console.print("[red]the trainer's execution did not fail[/]")
        return None
    console.print(f"  killed {len(killed)} trainer attempt(s); the run still says "
                  f"[bold]{state.get_run(run_id)['status']}[/] and nobody is waiting on it", highlight=False)
    cli(wide, "reconcile", note="what the scheduled reconcile-tick runs every 5 minutes")
    shown = cli(wide, "run", "show", run_id, "--wait", note="relaunched, then decided; the recovery is on record")
    if shown.returncode != 0:
        return None
    return json.loads(subprocess.run([TOLLGATE, "run", "show", run_id, "--json"], env=wide, stdout=subprocess.PIPE,
                                     text=True, check=True).stdout)


BURST = [("2013-Q1", "2013-01-01", "2013-04-01"), ("2013-Q2", "2013-04-01", "2013-07-01"),
         ("2013-Q3", "2013-07-01", "2013-10-01"), ("2013-Q4", "2013-10-01", "2014-01-01")]


def burst(local: LocalCloud, env: dict[str, str], wide: dict[str, str]) -> bool:
    """Four files of a dataset of their own (the taxi spec as `taxi_burst`) dropped one right after another:
    one training at a time; the batches that arrive meanwhile queue, and the newest trains once on all of
    them while the others end superseded by it."""
    folder = local.home / "demo" / "burst"
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "taxi_burst.yaml"
    spec.write_text((ROOT / "datasets" / "chicago_taxi.yaml").read_text().replace("name: chicago_taxi",
                                                                                "name: taxi_burst", 1))
    subprocess.run([TOLLGATE, "spec", "push", str(spec)], env=env, check=True, stdout=subprocess.DEVNULL)
    trips = pd.read_csv(DATA)
    when = pd.to_datetime(trips["trip_start_timestamp"], unit="s")
    run_ids = []
    for label, start, end in BURST:
        path = folder / f"taxi-{label}.csv"
        trips[(when >= start) & (when < end)].to_csv(path, index=False)
        done = subprocess.run([TOLLGATE, "drop", str(path), "--dataset", "taxi_burst", "--json"], env=env,
                              stdout=subprocess.PIPE, text=True, check=True)
        run_ids.append(json.loads(done.stdout)["run_id"])
    console.print(f"dropped {len(BURST)} quarters of 2013 for taxi_burst without waiting: "
                  f"{', '.join(run_ids)}", highlight=False)
    shown = cli(wide, "run", "show", run_ids[-1], "--wait",
                note="the last file dropped; if it was superseded, the wait follows the run that took its batch")
    cli(wide, "runs", "--dataset", "taxi_burst", note="one terminal status per file: decided, or superseded by")
    cli(wide, "models", "taxi_burst", note="the batches column: the last training's window holds all four")
    return shown.returncode == 0


def own_csv(local: LocalCloud, wide: dict[str, str]) -> bool:
    """A CSV Tollgate has never seen (wine cultivars, integer labels) to a served model with the docs' five
    commands: spec infer, spec check --data, spec push, drop --wait, predict."""
    folder = local.home / "demo" / "wine"
    folder.mkdir(parents=True, exist_ok=True)
    data, new, spec = folder / "wine.csv", folder / "new-wines.csv", folder / "wine.yaml"
    wine.wine_frame(700, seed=0).to_csv(data, index=False)
    wine.wine_frame(5, seed=1).to_csv(new, index=False)
    spec.unlink(missing_ok=True)
    console.print(f"$ python examples/wine.py {data}    # 700 wines: 13 measurements, a vineyard, the cultivar "
                  "(0, 1, 2)", highlight=False, soft_wrap=True)
    steps = [("spec", "infer", str(data), "--target", "cultivar", "-o", str(spec)),
             ("spec", "check", str(spec), "--data", str(data)), ("spec", "push", str(spec)),
             ("drop", str(data), "--dataset", "wine", "--wait"),
             ("predict", "wine", str(new)), ("url", "wine")]
    for args in steps:
        if cli(wide, *args).returncode != 0:
            console.print(f"[red]tollgate {' '.join(args)} failed[/]")
            return False
        if args[:2] == ("spec", "infer"):
            console.print(spec.read_text(), highlight=False, soft_wrap=True, markup=False)
    console.print("$ tollgate spec check SPEC    # a typo in a key, refused with its line and a suggestion",
                  highlight=False, soft_wrap=True)
    typo = folder / "typo.yaml"
    typo.write_text(spec.read_text().replace("primary_metric:", "primary_metrc:"))
    refused = subprocess.run([TOLLGATE, "spec", "check", str(typo)], env=wide, stderr=subprocess.PIPE, text=True)
    console.print(refused.stderr.strip(), highlight=False, soft_wrap=True, markup=False)
    return refused.returncode != 0


def before_the_first_model(dataset: str) -> None:
    """On a fresh local cloud the predictor already exists, as terraform makes it on GCP: same URL
    from now on, answering 503 with what to do until the first promotion."""
    from tollgate.cloud import Cloud
    from tollgate.cloud import run as cloudrun
    from tollgate.settings import Settings

    service = cloudrun.get_service(Cloud(Settings.from_env()), dataset)
    if service is None or requests.get(f"{service.uri}/health", timeout=10).json().get("status") != "awaiting-model":
        return   # a reused local cloud: a model serves already
    response = requests.post(f"{service.uri}/predict", json={"instances": [SAMPLE]}, timeout=30)
    console.print(f"[bold]Before the first model[/], the {dataset} predictor is up at {service.uri} and answers "
                  f"POST /predict: HTTP {response.status_code} {response.json()['error']}", highlight=False)


def mlflow_mirror(local: LocalCloud) -> bool:
    """What the tracking function mirrored into the local MLflow: each dataset's runs and the versions its
    aliases name, once the mirror has caught up with the decisions."""
    from mlflow.tracking import MlflowClient

    from tollgate.client import Client

    uri = local.env()["TOLLGATE_MLFLOW_URI"]
    mlflow = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client = Client()
    table = Table(title=f"MLflow at {uri}")
    for col in ("dataset", "runs in experiment", "registered versions", "champion", "canary"):
        table.add_column(col)
    deadline = time.monotonic() + 120
    for dataset in ("chicago_taxi", "breast_cancer", "taxi_burst"):
        champion = client.model(dataset)["version"]
        name = f"tollgate-{dataset}"
        while True:   # the tracking function mirrors after each decision's event
            try:
                model = mlflow.get_registered_model(name)
                version = mlflow.get_model_version(name, model.aliases["champion"])
                if version.tags.get("tollgate.version") == str(champion):
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                console.print(f"[red]MLflow's alias champion of {name} does not name v{champion}[/]")
                return False
            time.sleep(1)
        experiment = mlflow.get_experiment_by_name(f"tollgate/{dataset}")
        runs = mlflow.search_runs([experiment.experiment_id], max_results=1000)
        versions = mlflow.search_model_versions(f"name = '{name}'")
        named = {alias: f"v{mlflow.get_model_version(name, n).tags.get('tollgate.version')} (MLflow {n})"
                 for alias, n in model.aliases.items()}
        table.add_row(dataset, str(len(runs)), str(len(versions)), named.get("champion", "-"), named.get("canary", "-"))
    console.print(table)
    console.print(f"Every decided run with its metrics, reports and model; every version in the Model Registry with "
                  f"its sha256; aliases moved by each promotion, canary and rollback. The MLflow UI: [bold]{uri}[/]",
                  soft_wrap=True, highlight=False)
    return True


def main() -> int:
    with_mlflow = "--mlflow" in sys.argv[1:]
    console.rule("[bold]Tollgate demo: Chicago taxi fares, batch by batch")
    # the demo ticks the monitor and the reconciler itself, so its steps stay in order (`make up` keeps their
    # 5-minute schedules)
    def cloud() -> LocalCloud:
        return LocalCloud(echo=lambda m: console.print(f"[dim]{m}[/]"), paused_schedules=("monitor", "reconcile"),
                          mlflow=with_mlflow)

    local = cloud()
    if local.home.exists() and any(local.home.iterdir()):   # the same files again would be duplicates: no story
        console.print(f"[yellow]the demo replays its batches into an empty local cloud: stopping and wiping the one "
                      f"in {local.home}[/]", highlight=False)
        local.down(wipe=True)
        local = cloud()
    try:
        local.up()
    except LocalCloudError as exc:
        console.print(f"[red]{exc}[/]")
        return 1
    env = {**os.environ, **local.env()}
    os.environ.update(local.env())   # the demo's own Pub/Sub client (the prediction log) finds the emulator
    for spec in ("chicago_taxi", "breast_cancer"):   # the bundled specs, also over older copies in the bucket
        subprocess.run([TOLLGATE, "spec", "push", str(ROOT / "datasets" / f"{spec}.yaml")], env=env, check=True)
    before_the_first_model("chicago_taxi")
    batches = make_batches(local.home / "demo")
    console.print(f"{len(batches)} batches from {DATA.relative_to(ROOT)} → gs://{local.bucket}/incoming/chicago_taxi/\n")
    rows = []
    run_ids: dict[str, str] = {}
    judged: dict[str, bool] = {}
    started = time.monotonic()
    for label, path in batches:
        run = drop_batch(label, path, "chicago_taxi", env)
        if run is None:
            return 1
        run_ids[label] = run["run_id"]
        judged[label] = run.get("champion_metric") is not None   # evaluated against a champion
        rows.append(summary_row(label, run))
    console.print(runs_table(f"Runs (primary metric R² on each batch's held-out rows; "
                             f"{time.monotonic() - started:.0f}s)", rows))

    status = json.loads(subprocess.run([TOLLGATE, "status", "--json"], stdout=subprocess.PIPE, text=True,
                                       env=env, check=True).stdout)
    url = status["predictor_urls"].get("chicago_taxi")
    if not url:
        console.print("[red]no predictor is serving[/]")
        return 1
    log = PredictionLog(local)   # subscribe before predicting, as a monitoring consumer would
    response = requests.post(f"{url}/predict", json={"instances": [SAMPLE]}, timeout=30)
    console.rule("[bold]A real prediction")
    console.print(f"$ curl -X POST {url}/predict -H 'Content-Type: application/json' -d '{{\"instances\": [...]}}'",
                  soft_wrap=True, highlight=False)
    console.print(f"HTTP {response.status_code}  X-Model-Version: {response.headers.get('X-Model-Version')}")
    console.print_json(response.text)
    explained = requests.post(f"{url}/predict:explain", json={"instances": [SAMPLE]}, timeout=60)
    console.print(f"$ curl -X POST {url}/predict:explain -d '{{\"instances\": [...]}}'   → HTTP "
                  f"{explained.status_code}: why (exact TreeSHAP per declared feature)", soft_wrap=True,
                  highlight=False)
    if explained.status_code == 200:
        [attribution] = explained.json()["explanations"][0]["attributions"]
        parts = sorted(attribution["featureAttributions"].items(), key=lambda kv: -abs(kv[1]))
        console.print(f"    baseline {attribution['baselineOutputValue']:.2f} "
                      + " ".join(f"{v:+.2f} ({k})" for k, v in parts[:5] if abs(v) >= 0.005)
                      + f" … = {attribution['instanceOutputValue']:.2f}", highlight=False)
    else:
        console.print(f"    {explained.text[:300]}", highlight=False)
    predictor_contracts(url, log)
    wide = {**env, "COLUMNS": str(max(console.width, 160))}   # tables stay readable when piped
    console.rule("[bold]Data quality: what the validator caught")
    quality_runs = ("2014-H1 (broken export)", "2016")
    for label in quality_runs:
        console.print(f"$ tollgate run show {run_ids[label]}    # {label}", highlight=False)
        subprocess.run([TOLLGATE, "run", "show", run_ids[label]], env=wide, check=False)
    evaluated = [label for label, against in judged.items() if against and label not in quality_runs]
    if evaluated:
        label = evaluated[-1]
        console.rule("[bold]What the models rely on: permutation importance on the same held-out rows")
        cli(wide, "run", "show", run_ids[label], note=f"{label}: the challenger and the champion side by side; "
                                                       "also in the evaluation report, the console and MLflow")
    console.rule("[bold]One run, one trace: every function and job that worked on it")
    cli(wide, "trace", run_ids["2016"], note="OpenTelemetry; Cloud Trace on Google Cloud")
    report = local.home / "demo" / f"{run_ids['2016']}-validation.html"
    console.print(f"$ tollgate report {run_ids['2016']} -o {report}", highlight=False)
    subprocess.run([TOLLGATE, "report", run_ids["2016"], "-o", str(report)], env=wide, check=False)
    if not decisions(local, env, wide, url):
        return 1
    if not monitoring(local, env, wide, url):
        return 1
    if not trust_boundaries(local, wide, url):
        return 1
    console.rule("[bold]Not only taxis, and crashes recovered: a classification dataset (scikit-learn's breast "
                 "cancer data)")
    cancer_rows = []
    for i, path in enumerate(breast_cancer.make_batches(local.home / "demo" / "breast_cancer"), start=1):
        label = f"breast cancer {i}"
        run = killed_and_recovered(label, path, "breast_cancer", wide) if i == 1 else \
            drop_batch(label, path, "breast_cancer", env)
        if run is None:
            return 1
        cancer_rows.append(summary_row(f"batch {i}", run))
    console.print(runs_table("breast_cancer (primary metric ROC AUC on held-out rows)", cancer_rows))
    console.print(f"$ tollgate report {run['run_id']} --kind evaluation    # metrics, slices, confusion matrix, ROC",
                  highlight=False)
    subprocess.run([TOLLGATE, "report", run["run_id"], "--kind", "evaluation", "-o",
                    str(local.home / "demo" / f"{run['run_id']}-evaluation.html")], env=wide, check=False)
    console.rule("[bold]Your own CSV: from spec infer to tollgate predict")
    if not own_csv(local, wide):
        return 1
    console.rule("[bold]A burst: four files at once, one training at a time")
    if not burst(local, env, wide):
        return 1
    if with_mlflow:
        console.rule("[bold]The same runs and models in MLflow")
        if not mlflow_mirror(local):
            return 1
    console.rule("[bold]Go on")
    console.print(f"  .venv/bin/tollgate status | runs | run show RUN_ID | report RUN_ID --open | models chicago_taxi"
                  f" | history chicago_taxi\n"
                  f"  .venv/bin/tollgate drop FILE --dataset chicago_taxi --wait\n"
                  f"  eval $(.venv/bin/tollgate env --gcloud) && gcloud storage cp FILE "
                  f"gs://{local.bucket}/incoming/chicago_taxi/\n"
                  f"  curl -X POST {url}/predict -H 'Content-Type: application/json' -d @request.json\n"
                  f"  make down   (stops the local cloud, keeps its data)", soft_wrap=True, highlight=False)
    console.print(f"The console, every dataset, run, review and monitoring window in a browser (reviews and serving "
                  f"moves decided there): [bold]{local.env().get('TOLLGATE_CONSOLE_URL')}[/]   "
                  "(tollgate console --open)", soft_wrap=True, highlight=False)
    return 0 if response.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
