"""`make bench-train`: training and evaluation time on the full Chicago taxi data (15,002 trips).

For each estimator the spec can name, the trainer's and evaluator's code paths on the real data:
the newest year (2016) is the "new batch" whose seeded holdout both models are scored on; the
challenger trains on everything else plus the rest of that batch; the champion is the default
model trained on 2013–2015. Prints one table; the last line reads
``train <estimator> <s> s, evaluate <s> s`` for the spec's default estimator.
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


def main() -> int:
    console = Console()
    spec = specs.load(ROOT / "datasets" / "chicago_taxi.yaml")
    clean = validation.validate(pd.read_csv(TAXI), spec).data
    when = pd.to_datetime(clean[spec.time_column], unit="s")
    older, newest = clean[when < "2016-01-01"], clean[when >= "2016-01-01"].reset_index(drop=True)
    newest_train, holdout = training.split_newest(newest, spec)
    train = pd.concat([older, newest_train], ignore_index=True)
    x, y = training.features_frame(holdout, spec), training.target(holdout, spec)
    champion = training.fit(older, spec)
    champion_scored = evaluation.score(champion, x, spec.task)
    table = Table(title=f"chicago_taxi: train on {len(train):,} rows, evaluate on {len(holdout):,} held-out rows "
                        f"({spec.bootstrap_resamples} bootstrap resamples, slices {', '.join(spec.slices)})")
    for col in ("estimator", "train s", "evaluate s", "R² challenger", "R² champion", "gain 95% CI"):
        table.add_column(col, justify="left" if col == "estimator" else "right")
    timings = {}
    for estimator in specs.ESTIMATORS:
        variant = specs.replace(spec, model__estimator=estimator,
                                model__params=spec.model_params if estimator == spec.estimator else {})
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
    fit_seconds, eval_seconds = timings[spec.estimator]
    print(f"train {spec.estimator} {fit_seconds:.2f} s, evaluate {eval_seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
