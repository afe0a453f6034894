"""`make bench-train`: training and evaluation time of every estimator family.

Regression on the full Chicago taxi data (15,002 trips): the newest year (2016) is the "new batch" whose seeded
holdout both models are scored on; the challenger trains on everything else plus the rest of that batch; the
champion is the default model trained on 2013–2015. Classification on scikit-learn's breast cancer data (569
cases, ROC AUC): a seeded 30% holdout, the champion the default model on half the rest. One table each; the last
line reads ``train <estimator> <s> s, evaluate <s> s`` for the taxi spec's default estimator.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tollgate import evaluation, training, validation  # noqa: E402
from tollgate import spec as specs  # noqa: E402

TAXI = ROOT / "examples" / "data" / "chicago_taxi" / "chicago_taxi_trips.csv"


def families(console: Console, title: str, spec: specs.DatasetSpec, train: pd.DataFrame, holdout: pd.DataFrame,
             champion_rows: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Each family the task allows trained on ``train`` and compared with the default model trained on
    ``champion_rows``, on ``holdout``; a table, and the (fit, evaluate) seconds per family."""
    x, y = training.features_frame(holdout, spec), training.target(holdout, spec)
    champion_scored = evaluation.score(training.fit(champion_rows, spec), x, spec.task)
    metric = spec.primary_metric
    table = Table(title=f"{title}: train on {len(train):,} rows, evaluate on {len(holdout):,} held-out rows "
                        f"({spec.evaluation.bootstrap_resamples} bootstrap resamples of {metric})")
    for col in ("estimator", "train s", "evaluate s", f"{metric} challenger", f"{metric} champion", "gain 95% CI"):
        table.add_column(col, justify="left" if col == "estimator" else "right")
    timings = {}
    for estimator in specs.ESTIMATORS:
        if spec.task not in specs.ESTIMATOR_TASKS.get(estimator, specs.TASKS):
            continue
        variant = specs.replace(spec, model__estimator=estimator,
                                model__params=dict(spec.model.params) if estimator == spec.model.estimator else {})
        started = time.perf_counter()
        model = training.fit(train, variant)
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result = evaluation.compare(holdout, y, evaluation.score(model, x, spec.task), champion_scored, spec)
        eval_seconds = time.perf_counter() - started
        timings[estimator] = (fit_seconds, eval_seconds)
        d = result["difference"]
        table.add_row(estimator, f"{fit_seconds:.2f}", f"{eval_seconds:.2f}", f"{d['challenger']:.4f}",
                      f"{d['champion']:.4f}", f"[{d['low']:+.4f}, {d['high']:+.4f}]")
    console.print(table)
    return timings


def main() -> int:
    from sklearn.datasets import load_breast_cancer

    console = Console(width=None if sys.stdout.isatty() else 140)
    spec = specs.load(ROOT / "datasets" / "chicago_taxi.yaml")
    clean = validation.validate(pd.read_csv(TAXI), spec).data
    when = pd.to_datetime(clean[spec.time_column], unit="s")
    older, newest = clean[when < "2016-01-01"], clean[when >= "2016-01-01"].reset_index(drop=True)
    newest_train, holdout = training.split_newest(newest, spec)
    timings = families(console, "chicago_taxi", spec, pd.concat([older, newest_train], ignore_index=True), holdout,
                       older)

    cancer = specs.load(ROOT / "datasets" / "breast_cancer.yaml")
    data = load_breast_cancer(as_frame=True)
    frame = data.data.rename(columns=lambda c: c.replace(" ", "_"))
    frame["diagnosis"] = [data.target_names[t] for t in data.target]
    train, held = training.split_newest(frame, cancer)
    families(console, "breast_cancer", cancer, train, held, train.iloc[: len(train) // 2])

    fit_seconds, eval_seconds = timings[spec.model.estimator]
    print(f"train {spec.model.estimator} {fit_seconds:.2f} s, evaluate {eval_seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
