"""`make bench-console`: how fast the console's overview and dataset pages render with a long history.

A fresh local cloud (its Firestore emulator) is seeded with one dataset of ``--runs`` runs (default 1,000), each
with a validation report (checks with example rows, a drift table of 13 features) and an evaluation (metrics,
the interval, slices), ``--versions`` registered versions (default 100) and a ledger of as many decisions. Each
page is then requested ``--requests`` times through the console's own WSGI app (the time a request spends in
Flask, Firestore and the templates, not in a network). The dataset page is measured twice: reading whole run
records, each version's with its own get (as it first did), and reading only the fields its tables show, the
versions' runs in one batched get (as it does).

Last line: ``console overview_p95=<ms> dataset_p95=<ms> dataset_sequential_p95=<ms> runs=<n> versions=<n>``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HOME = ROOT / ".bench" / "console"
DATASET = "console_bench"
FEATURES = [f"feature_{i}" for i in range(13)]


def run_record(i: int, at: dt.datetime, version: int | None) -> dict[str, Any]:
    checks = [{"name": f"{f}:range", "kind": "column", "action": "drop", "failed_rows": i % 7, "column": f,
               "message": "are outside the range [0, 1000]",
               "examples": [{"row": r, f: 1000.5 + r} for r in range(5)]} for f in FEATURES[:5]]
    drift = {"verdict": "none", "message": "no feature drifted", "fdr": 0.05,
             "features": [{"feature": f, "test": "ks", "statistic": 0.01, "p_value": 0.5, "q_value": 0.6,
                           "distance": "psi", "score": 0.01, "status": "none"} for f in FEATURES]}
    metrics = {"r2": 0.9, "rmse": 3.1, "mae": 1.9}
    return {"run_id": f"run-bench-{i:05d}", "dataset": DATASET, "status": "decided", "decision": "keep",
            "reason": "the challenger is not better by the margin", "created_at": at, "updated_at": at,
            "history": [{"status": s, "at": at} for s in ("received", "validating", "validated", "training",
                                                            "trained", "evaluating", "evaluated", "decided")],
            "validation": {"status": "valid", "rows_in": 15_000, "rows_out": 14_990, "checks": checks,
                           "drift": drift, "message": "14990 of 15000 rows valid"},
            "evaluation": {"metric": "r2", "task": "regression", "holdout_rows": 4_500,
                           "challenger": {"metrics": metrics}, "champion": {"metrics": metrics},
                           "difference": {"metric": "r2", "improvement": 0.001, "low": -0.004, "high": 0.006,
                                          "confidence": 0.95, "resamples": 1000, "challenger": 0.9,
                                          "champion": 0.899, "difference": 0.001},
                           "slices": [{"column": "payment_type", "slice": s, "kind": "values", "rows": 400,
                                       "challenger": 0.9, "champion": 0.89} for s in ("Cash", "Credit Card")]},
            "challenger_version": version, "model_version": version}


def seed(state: Any, runs: int, versions: int) -> None:
    """Every ``runs // versions``-th run trained a version; the others kept the champion."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    step = max(1, runs // versions)
    batch = state.db.batch()
    for i in range(runs):
        at = start + dt.timedelta(hours=i)
        version = i // step + 1 if i % step == 0 and i // step < versions else None
        batch.set(state.run_ref(f"run-bench-{i:05d}"), run_record(i, at, version))
        if (i + 1) % 400 == 0:
            batch.commit()
            batch = state.db.batch()
    batch.commit()
    for v in range(1, versions + 1):
        run_id = f"run-bench-{(v - 1) * step:05d}"
        state.register_version(DATASET, run_id, lambda n: {
            "sha256": "0" * 64, "estimator": "hist_gradient_boosting", "train_rows": 10_000 * n,
            "metrics": {"cv": {"score": 0.9, "std": 0.01}}, "code_version": "bench",
            "training_window": {"batches": n, "manifest": "gs://b/m.json", "sha256": "1" * 64}})
        entry = {"kind": "decision", "event": "promote", "verdict": "promote", "run_id": run_id, "actor": "auto",
                 "reason": "better", "at": start + dt.timedelta(hours=(v - 1) * step),
                 "champion_before": v - 1 or None, "champion_after": v,
                 "serving_after": {"version": v, "canary": None}}
        state.dataset_ref(DATASET).collection("ledger").document(f"{v:08d}").set({**entry, "ledger_id": f"{v:08d}"})
    state.dataset_ref(DATASET).set({"name": DATASET, "champion_version": versions, "previous_version": versions - 1,
                                    "serving": {"version": versions, "canary": None}}, merge=True)


def timed(client: Any, path: str, n: int) -> list[float]:
    client.get(path)   # warm: templates compiled, connections open
    out = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path)
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.data[:300])
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1_000)
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    from localcloud.cloud import LocalCloud
    from services.console.main import Console as ConsoleData
    from services.console.main import create_app
    from tollgate.cloud import Cloud
    from tollgate.cloud.state import State
    from tollgate.settings import Settings

    shutil.rmtree(HOME, ignore_errors=True)
    local = LocalCloud(HOME, echo=lambda m: None, paused_schedules=("monitor", "reconcile", "review-expiry"),
                       specs_dir=None)
    local.up()
    out = Console(width=None if sys.stdout.isatty() else 120)
    try:
        os.environ.update(local.env())
        cloud = Cloud(Settings.from_env())
        state = State(cloud.firestore)
        started = time.perf_counter()
        seed(state, args.runs, args.versions)
        out.print(f"seeded {args.runs} runs, {args.versions} versions and their ledger in "
                  f"{time.perf_counter() - started:.1f}s")
        data = ConsoleData(cloud, state)
        client = create_app({"TOLLGATE_CONSOLE_AUTH": "local", "TOLLGATE_CONSOLE_SECRET": "bench"},
                            console=data).test_client()
        overview = timed(client, "/", args.requests)
        dataset = timed(client, f"/datasets/{DATASET}", args.requests)
        # the page as it first read its runs: whole records, one get per version
        batched_get, listed = state.get_runs, state.list_runs
        state.get_runs = lambda ids, fields=None: {i: state.get_run(i) for i in ids}
        state.list_runs = lambda limit=20, dataset=None, fields=None: listed(limit, dataset)
        sequential = timed(client, f"/datasets/{DATASET}", max(5, args.requests // 4))
        state.get_runs, state.list_runs = batched_get, listed
    finally:
        local.down()
    table = Table(title=f"console pages, {args.runs} runs and {args.versions} versions of one dataset "
                        f"(ms per request through the WSGI app; target p95 < 300)")
    for col in ("page", "p50", "p95", "max"):
        table.add_column(col, justify="left" if col == "page" else "right")
    for name, values in (("overview", overview), ("dataset (summary fields, one batched get)", dataset),
                         ("dataset (whole records, one get per version)", sequential)):
        table.add_row(name, f"{statistics.median(values):.0f}", f"{p95(values):.0f}", f"{max(values):.0f}")
    out.print(table)
    print(f"console overview_p95={p95(overview):.0f} dataset_p95={p95(dataset):.0f} "
          f"dataset_sequential_p95={p95(sequential):.0f} runs={args.runs} versions={args.versions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
