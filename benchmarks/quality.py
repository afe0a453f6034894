"""`make bench-quality`: what a newcomer gets from Tollgate on real tables, side by side in one run with a
hand-written HistGradientBoosting and with FLAML on the same files.

For each table (the five public tables of examples/data/tables/, the bundled Chicago taxi trips, and the
breast-cancer and wine data sets), in file order: the first 50% and the next 30% are the two drops, the last 20%
is held back. Tollgate follows the newcomer path on a fresh local cloud — `tollgate spec infer` on the whole file,
`spec check --data`, `spec push`, `drop` the first half and wait, `drop` the next 30% and wait — and the served
model is scored by sending the held-back rows through the predictor (`tollgate predict`). The references train on
the same 80% (rows with a target): a ten-line HistGradientBoosting with scikit-learn's defaults and native
categoricals (categories beyond its 255 as codes), and FLAML's AutoML (own venv `.bench/flaml`, a fixed time
budget, seeded). All three are scored with the inferred spec's primary metric on the same rows.

Per table: the three scores, the gaps, Tollgate's seconds from first drop to served, and the trainer's peak
memory against its job's limit. Last line (for CI):
``quality tables=<n> served=<n> worst_gap_vs_hgb=<pct> mean_gap_vs_flaml=<pct> trainer_within_limit=<n>/<n>``
(a gap is (Tollgate − reference) / max(|reference|, 0.1), in %).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "shared"))

HOME = ROOT / ".bench" / "quality"
FLAML_PY = ROOT / ".bench" / "flaml" / "bin" / "python"
TABLES = {"gss_wages": "realrinc", "hours_worked": "whrswk", "movielens": "rating", "movies": "rating",
          "weather": "temp"}


def load_tables() -> dict[str, tuple[pd.DataFrame, str]]:
    """Every table of the benchmark with its target column, in file order."""
    from examples.breast_cancer import cancer_frame
    from examples.wine import wine_frame

    out = {}
    for name, target in TABLES.items():
        with gzip.open(ROOT / "examples" / "data" / "tables" / f"{name}.csv.gz", "rb") as fh:
            out[name] = (pd.read_csv(fh), target)
    taxi = pd.read_csv(ROOT / "examples" / "data" / "chicago_taxi" / "chicago_taxi_trips.csv")
    out["chicago_taxi"] = (taxi.sort_values("trip_start_timestamp", kind="stable").reset_index(drop=True), "fare")
    out["breast_cancer"] = (cancer_frame(), "diagnosis")
    out["wine"] = (wine_frame(1200, seed=3), "cultivar")
    return out


def score(metric: str, y: np.ndarray, predicted: np.ndarray, proba: np.ndarray | None,
          classes: list[str] | None) -> float:
    from tollgate import evaluation

    if metric in ("r2", "rmse", "mae"):
        return evaluation.regression_metrics(np.asarray(y, dtype="float64"), np.asarray(predicted, dtype="float64"))[
            metric]
    return evaluation.classification_metrics(np.asarray(y).astype(str), np.asarray(predicted).astype(str), proba,
                                             classes or sorted({str(v) for v in y}))[metric]


def handwritten(train: pd.DataFrame, test: pd.DataFrame, target: str, task: str, metric: str) -> float:
    """What a data scientist writes in ten lines: HistGradientBoosting, defaults, native categoricals."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x, xt = train.drop(columns=[target]).copy(), test.drop(columns=[target]).copy()
    for column in x.columns:
        if not pd.api.types.is_numeric_dtype(x[column]):
            categories = x[column].astype("category").cat.categories
            if len(categories) > 255:   # beyond native support: its codes, as numbers
                x[column] = pd.Categorical(x[column], categories=categories).codes.astype(float)
                xt[column] = pd.Categorical(xt[column], categories=categories).codes.astype(float)
            else:
                x[column] = pd.Categorical(x[column], categories=categories)
                xt[column] = pd.Categorical(xt[column], categories=categories)
    cls = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    model = cls(categorical_features="from_dtype", random_state=0).fit(x, train[target].astype(str) if task !=
                                                                          "regression" else train[target])
    if task == "regression":
        return score(metric, test[target], model.predict(xt), None, None)
    classes = [str(c) for c in model.classes_]
    return score(metric, test[target].astype(str), model.predict(xt), model.predict_proba(xt), classes)


FLAML_SCRIPT = """
import json, sys
import pandas as pd
from flaml import AutoML
train, test, target, task, metric, budget = sys.argv[1:7]
train, test = pd.read_parquet(train), pd.read_parquet(test)
automl = AutoML()
flaml_metric = {"r2": "r2", "roc_auc": "roc_auc", "accuracy": "accuracy", "log_loss": "log_loss", "f1": "macro_f1",
                "rmse": "rmse", "mae": "mae"}[metric]
y = train[target] if task == "regression" else train[target].astype(str)
automl.fit(train.drop(columns=[target]), y, task=task, metric=flaml_metric, time_budget=float(budget), seed=0,
           verbose=0, n_jobs=1)
x = test.drop(columns=[target])
out = {"predicted": [str(v) if task != "regression" else float(v) for v in automl.predict(x)],
       "best": automl.best_estimator}
if task != "regression":
    out["proba"] = automl.predict_proba(x).tolist()
    out["classes"] = [str(c) for c in automl.classes_]
print(json.dumps(out))
"""


def flaml(train: pd.DataFrame, test: pd.DataFrame, target: str, task: str, metric: str, budget: float,
          folder: Path) -> tuple[float | None, str]:
    if not FLAML_PY.exists():
        return None, "not installed (make bench-quality installs it)"
    for frame, name in ((train, "train"), (test, "test")):
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    done = subprocess.run([str(FLAML_PY), "-c", FLAML_SCRIPT, str(folder / "train.parquet"),
                           str(folder / "test.parquet"), target, task, metric, str(budget)],
                          capture_output=True, text=True, timeout=budget * 4 + 300)
    if done.returncode != 0:
        return None, done.stderr.strip().splitlines()[-1][:120] if done.stderr.strip() else "failed"
    out = json.loads(done.stdout.strip().splitlines()[-1])
    proba = np.asarray(out["proba"]) if "proba" in out else None
    y = test[target] if task == "regression" else test[target].astype(str)
    return score(metric, y, np.asarray(out["predicted"]), proba, out.get("classes")), out["best"]


def tollgate(local: Any, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, **local.env(), "PYTHONPATH": f"{ROOT}:{ROOT / 'shared'}"}
    return subprocess.run([sys.executable, "-m", "tollgate", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def trainer_peak(local: Any, state: Any, run_ids: list[str]) -> int:
    """The highest peak memory (MiB) of the trainer's attempts for these runs, read from their task logs."""
    peak = 0
    for run_id in run_ids:
        execution = ((state.get_run(run_id) or {}).get("executions") or {}).get("trainer")
        if not execution:
            continue
        for log in (local.home / "logs" / "jobs").glob(f"{execution.rsplit('/', 1)[-1]}-task*.log"):
            for found in re.findall(r"peak memory (\d+) MiB", log.read_text(errors="replace")):
                peak = max(peak, int(found))
    return peak


def newcomer(local: Any, state: Any, name: str, frame: pd.DataFrame, target: str, folder: Path) -> dict[str, Any]:
    """The quickstart on one table: infer, check, push, two drops, and the held-back rows through the predictor."""
    from tollgate import spec as specs

    n = len(frame)
    whole, first, second = folder / f"{name}.csv", folder / "first.csv", folder / "second.csv"
    frame.to_csv(whole, index=False)
    frame.iloc[: n // 2].to_csv(first, index=False)
    frame.iloc[n // 2: int(n * 0.8)].to_csv(second, index=False)
    spec_path = folder / "spec.yaml"
    inferred = tollgate(local, "spec", "infer", str(whole), "--target", target, "--name", name, "-o", str(spec_path))
    if inferred.returncode != 0:
        return {"error": f"spec infer: {inferred.stderr.strip()[-200:]}"}
    checked = tollgate(local, "spec", "check", str(spec_path), "--data", str(whole))
    if checked.returncode != 0:
        return {"error": f"spec check rejects the file it was inferred from: {checked.stdout.strip()[-300:]}"}
    spec = specs.load(spec_path)
    assert tollgate(local, "spec", "push", str(spec_path)).returncode == 0
    started = time.monotonic()
    runs = []
    for path in (first, second):
        done = tollgate(local, "drop", str(path), "--dataset", name, "--wait", "--json")
        record = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        runs.append(record.get("run_id"))
        if record.get("status") not in ("decided", "superseded"):
            return {"error": f"drop {path.name}: {record.get('status')} {record.get('reason') or done.stderr[-200:]}",
                    "spec": spec}
    seconds = time.monotonic() - started
    held = frame.iloc[int(n * 0.8):]
    held = held[held[target].notna()]
    features = held[[c for c in spec.features if c in held.columns]]
    features.to_csv(folder / "last.csv", index=False)
    predicted = tollgate(local, "predict", name, str(folder / "last.csv"), "-o", str(folder / "predicted.csv"))
    if predicted.returncode != 0:
        return {"error": f"predict: {predicted.stderr.strip()[-200:]}", "spec": spec}
    answers = pd.read_csv(folder / "predicted.csv")
    proba = None
    classes = None
    if spec.task == "classification":
        columns = [c for c in answers.columns if c.startswith("probability_")]
        classes = [c.removeprefix("probability_") for c in columns]
        proba = answers[columns].to_numpy(dtype="float64")
    y = held[target].to_numpy() if spec.task == "regression" else held[target].astype(str).to_numpy()
    served = state.get_dataset(name).get("champion_version")
    return {"score": score(spec.primary_metric, y, answers["prediction"].to_numpy(), proba, classes),
            "spec": spec, "seconds": seconds, "served": served, "runs": runs,
            "decisions": [(state.get_run(r) or {}).get("decision") for r in runs if r]}


def gap(ours: float | None, reference: float | None, higher: bool) -> float | None:
    if ours is None or reference is None:
        return None
    sign = 1 if higher else -1
    return 100 * sign * (ours - reference) / max(abs(reference), 0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", nargs="*", help="only these tables")
    parser.add_argument("--flaml-seconds", type=float, default=60.0, help="FLAML's time budget per table")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    from localcloud.cloud import LocalCloud
    from tollgate import topology as topo
    from tollgate.cloud import Cloud
    from tollgate.cloud.state import State
    from tollgate.settings import Settings

    console = Console(width=None if sys.stdout.isatty() else 200)
    tables = {k: v for k, v in load_tables().items() if not args.tables or k in args.tables}
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    local = LocalCloud(HOME / "home", project=f"tollgate-quality-{uuid.uuid4().hex[:6]}", bucket="tollgate-quality",
                       echo=lambda m: None, paused_schedules=("monitor", "reconcile"), specs_dir=None)
    console.print("starting a local cloud for the newcomer path")
    local.up()
    limit = topo.memory_bytes(topo.load().jobs["trainer"].memory) // 2**20
    rows = []
    try:
        os.environ.update(local.env())
        state = State(Cloud(Settings.from_env()).firestore)
        for name, (frame, target) in tables.items():
            folder = HOME / name
            folder.mkdir()
            console.print(f"[bold]{name}[/]: {len(frame):,} rows, target {target}")
            ours = newcomer(local, state, name, frame, target, folder)
            spec = ours.get("spec")
            metric = spec.primary_metric if spec else "r2"
            higher = spec.higher_is_better if spec else True
            task = spec.task if spec else "regression"
            n = len(frame)
            train = frame.iloc[: int(n * 0.8)]
            train = train[train[target].notna()]
            test = frame.iloc[int(n * 0.8):]
            test = test[test[target].notna()]
            hgb = handwritten(train, test, target, task, metric)
            automl, best = flaml(train, test, target, task, metric, args.flaml_seconds, folder)
            peak = trainer_peak(local, state, ours.get("runs") or [])
            rows.append({"table": name, "metric": metric, "tollgate": ours.get("score"), "hgb": hgb,
                         "flaml": automl, "flaml_best": best, "vs_hgb": gap(ours.get("score"), hgb, higher),
                         "vs_flaml": gap(ours.get("score"), automl, higher), "seconds": ours.get("seconds"),
                         "peak_mib": peak, "served": ours.get("served"), "decisions": ours.get("decisions"),
                         "error": ours.get("error"), "estimator": spec.model.estimator if spec else None})
            console.print(f"  {rows[-1]}")
    finally:
        local.down(export=False)
    table = Table(title=f"the newcomer path vs hand-written HistGradientBoosting and FLAML ({args.flaml_seconds:.0f} s)"
                        " on the held-back 20%")
    for column in ("table", "metric", "tollgate", "estimator", "served", "hand-written HGB", "vs HGB", "FLAML",
                   "vs FLAML", "s to served", f"trainer peak MiB (of {limit})"):
        table.add_column(column, justify="left" if column in ("table", "metric", "estimator") else "right")

    def num(value: Any, pattern: str = "{:.4f}") -> str:
        return "–" if value is None else pattern.format(value)
    for r in rows:
        table.add_row(r["table"], r["metric"], num(r["tollgate"]) if not r["error"] else f"[red]{r['error'][:40]}",
                      r["estimator"] or "", num(r["served"], "v{}"), num(r["hgb"]), num(r["vs_hgb"], "{:+.2f}%"),
                      num(r["flaml"]), num(r["vs_flaml"], "{:+.2f}%"), num(r["seconds"], "{:.0f}"),
                      num(r["peak_mib"], "{}"))
    console.print(table)
    (HOME / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    served = [r for r in rows if r["tollgate"] is not None]
    worst = min((r["vs_hgb"] for r in served if r["vs_hgb"] is not None), default=float("nan"))
    against = [r["vs_flaml"] for r in served if r["vs_flaml"] is not None]
    within = sum(0 < r["peak_mib"] <= limit for r in served)
    print(f"quality tables={len(rows)} served={len(served)} worst_gap_vs_hgb={worst:+.2f}% "
          f"mean_gap_vs_flaml={np.mean(against) if against else float('nan'):+.2f}% "
          f"trainer_within_limit={within}/{len(served)}")
    return 0 if len(served) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
