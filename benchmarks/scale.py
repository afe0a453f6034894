"""`make bench-scale`: the data plane at production volume, each step in its own process (peak RSS).

Generated data in ``.bench/scale/`` (kept between runs; ``--fresh`` rebuilds it), laid out exactly as the
monitor's drain writes the warehouse locally (``warehouse/<table>/<dataset>/date=/hour=/``), features drawn
from the real Chicago taxi trips:

- **monitor**: one tick's work (tollgate.warehouse.queries.observe, then monitoring.window, judge and the
  canary verdict) over one hour of predictions at ``--rate`` per second (default 5,000: 18,000,000 rows, 90%
  on the stable version, 10% on a canary, 0.1% server errors) with 1,000,000 labelled predictions, on
  DuckDB over the Parquet files; then the same tick after adding ``--history`` times as much log in
  partitions older than the label window (default 10×: 180,000,000 more rows), which it must not read.
- **drain**: 1,500,000 log records (one 5-minute tick at 5,000/s) in 3,000 messages of 500, through the
  drain's own code (``tables.Pull``: decode, group, Parquet) and written to disk, pull by pull of 1,000
  messages; Pub/Sub and GCS themselves are left out. Peak RSS after the first pull and after the last.
- **evaluator**: the paired bootstrap (1,000 resamples) of 1,000,000 held-out rows, and the index-matrix
  bootstrap it replaced on 100,000 (at 1,000,000 rows its matrix alone is 8 GB).
- **trainer**: a window of 20 curated batches of 1,000,000 trips each (20,000,000 rows) with ``max_rows``
  2,000,000 (the default) and 4,000,000: the window read batch by batch and sampled
  (``jobs.trainer.training_rows``), one fit of the spec's model and the training profile (the
  cross-validation's fits, on smaller folds, are left out for time).
- **burst**: 50 files for one dataset dropped at once on a fresh local cloud, the whole chain for each
  (``benchmarks/burst.py``, also ``make bench-burst``): how many trainings ran, and how many at once.

Last line: ``scale monitor=<s>s/<MiB>MiB drain=<s>s trainer=<MiB>MiB evaluator=<MiB>MiB burst_trainings=<n>``,
then ``monitor_history=<s>s/<MiB>MiB trainer_4m=<MiB>MiB`` (``n/a`` for what is not measured).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localcloud import memory  # noqa: E402
from tollgate import spec as specs  # noqa: E402
from tollgate.warehouse import tables  # noqa: E402

TAXI = ROOT / "examples" / "data" / "chicago_taxi" / "chicago_taxi_trips.csv"
BENCH = ROOT / ".bench" / "scale"
DATASET = "chicago_taxi"
END = dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc)   # the tick's time: the window is the hour before
ROWS_PER_FILE = 500_000       # one drain pull: 1,000 messages of 500 records
LABELS = 1_000_000
MIB = 1024 * 1024


def peak_mib() -> float:
    return memory.peak_resident() / MIB


# -- generated data ----------------------------------------------------------------------------------
def _trips(spec: specs.DatasetSpec) -> pa.Table:
    from tollgate import validation

    return pa.Table.from_pandas(validation.validate(pd.read_csv(TAXI), spec).data, preserve_index=False)


def _features_json(trips: pa.Table, spec: specs.DatasetSpec, pick: np.ndarray) -> pa.Array:
    """The features of trips ``pick`` as the predictor logs them (JSON text), built column-wise."""
    parts: list[pa.Array | str] = []
    for i, name in enumerate(spec.features):
        column = trips.column(name).take(pa.array(pick))
        if name in spec.feature_lists.numeric:
            text = pc.cast(pc.cast(column, pa.float64()), pa.string())
            text = pc.if_else(pc.is_null(column), "null", text)
        else:
            text = pc.if_else(pc.is_null(column), "null",
                              pc.binary_join_element_wise('"', pc.cast(column, pa.string()), '"', ""))
        parts += [("{" if i == 0 else ",") + f'"{name}":', text]
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")


def _prediction_file(trips: pa.Table, spec: specs.DatasetSpec, hour: dt.datetime, index: int, per_hour: int,
                     seed: int) -> pa.Table:
    """One drain file of the hour starting at ``hour``: ROWS_PER_FILE records, one a request."""
    rng = np.random.default_rng(seed)
    n = ROWS_PER_FILE
    first = index * n
    offsets = np.sort(rng.integers(0, 3_600_000_000, size=n)) if per_hour > n else np.arange(n)
    when = pa.array(np.datetime64(hour.replace(tzinfo=None), "us") + offsets.astype("timedelta64[us]"),
                    type=tables.UTC_US)
    number = pa.array(np.arange(first, first + n)).cast(pa.string())
    hour_key = hour.strftime("%Y%m%d%H")
    request_id = pc.binary_join_element_wise(f"r{hour_key}-", number, "")
    message_id = pc.binary_join_element_wise(f"m{hour_key}-",
                                             pa.array((np.arange(first, first + n) // 500)).cast(pa.string()), "")
    version = np.where(rng.random(n) < 0.1, 2, 1)
    status = np.where(rng.random(n) < 0.001, 500, 200)
    pick = rng.integers(0, trips.num_rows, size=n)
    fare = trips.column(spec.target).to_numpy()[pick]
    prediction = np.round(fare * rng.normal(1.0, 0.15, size=n) + np.where(version == 2, 0.3, 0.0), 4)
    ok = status < 400
    columns = {
        "message_id": message_id, "delivery": pa.array([f"{hour_key}-{index:04d}"] * n),
        "publish_time": when,   # published within the second; its hour is the file's partition
        "dataset": pa.array([DATASET] * n), "request_id": request_id, "row": pa.array(np.zeros(n, dtype="int64")),
        "time": when, "model_version": pa.array(version), "status": pa.array(status),
        "latency_ms": pa.array(rng.gamma(2.0, 1.5, size=n)),
        "prediction": pc.if_else(pa.array(ok), pc.cast(pa.array(prediction), pa.string()), None),
        "probabilities": pa.nulls(n, pa.string()),
        "features": pc.if_else(pa.array(ok), _features_json(trips, spec, pick), None),
    }
    return pa.Table.from_pydict(columns, schema=tables.ROW_SCHEMAS[tables.PREDICTIONS])


def _write(table: pa.Table, name: str) -> None:
    path = BENCH / tables.ROOT / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=64_000)


def generate(rate: int, history: int, say) -> dict:
    """The window's hour (and ``history`` × as much before the label window), cached by its parameters."""
    marker = BENCH / "generated.json"
    wanted = {"rate": rate, "history": history, "end": END.isoformat(), "format": 1}
    done = json.loads(marker.read_text()) if marker.exists() else {}
    spec = specs.load(ROOT / "datasets" / "chicago_taxi.yaml")
    per_hour = rate * 3600
    files = -(-per_hour // ROWS_PER_FILE)
    trips = None
    if {k: done.get(k) for k in ("rate", "end", "format")} != {k: wanted[k] for k in ("rate", "end", "format")}:
        shutil.rmtree(BENCH, ignore_errors=True)
        done = {}
    hour = END - dt.timedelta(hours=1)
    if not done.get("window"):
        trips = _trips(spec)
        started = time.perf_counter()
        labelled = []
        for i in range(files):
            table = _prediction_file(trips, spec, hour, i, per_hour, seed=i)
            _write(table, f"{tables.partition(tables.PREDICTIONS, DATASET, hour)}{hour:%H}-{i:04d}.parquet")
            ok = table.filter(pc.less(table.column("status"), 400))
            take = np.random.default_rng(10_000 + i).choice(ok.num_rows, size=min(ok.num_rows, LABELS // files),
                                                            replace=False)
            labelled.append(ok.take(pa.array(np.sort(take))).select(["request_id", "prediction"]))
            say(f"  window: file {i + 1}/{files} ({(i + 1) * ROWS_PER_FILE:,} predictions, "
                f"{time.perf_counter() - started:.0f} s)")
        pairs = pa.concat_tables(labelled)
        n = pairs.num_rows
        truth = pc.cast(pairs.column("prediction"), pa.float64()).to_numpy(zero_copy_only=False)
        truth = np.round(truth * np.random.default_rng(7).normal(1.0, 0.1, size=n), 2)
        at = END - dt.timedelta(minutes=10)
        labels = pa.Table.from_pydict({
            "message_id": pc.binary_join_element_wise("l-", pa.array(np.arange(n) // 500).cast(pa.string()), ""),
            "delivery": pa.array(["labels-0"] * n), "publish_time": pa.array([at] * n, type=tables.UTC_US),
            "dataset": pa.array([DATASET] * n), "request_id": pairs.column("request_id"),
            "row": pa.array(np.zeros(n, dtype="int64")), "keys": pa.nulls(n, pa.string()),
            "label": pc.cast(pa.array(truth), pa.string()), "time": pa.array([at] * n, type=tables.UTC_US),
            "seq": pa.array(np.arange(n)),
        }, schema=tables.ROW_SCHEMAS[tables.LABELS])
        _write(labels, f"{tables.partition(tables.LABELS, DATASET, at)}labels-0.parquet")
        done = {**wanted, "history": 0, "window": True}
        marker.write_text(json.dumps(done))
    for extra in range(done.get("history", 0), history):   # whole hours, older than the label window
        trips = trips if trips is not None else _trips(spec)
        day = END - dt.timedelta(days=8 + extra // 24, hours=extra % 24 + 1)
        started = time.perf_counter()
        for i in range(files):
            _write(_prediction_file(trips, spec, day, i, per_hour, seed=1_000_000 + extra * files + i),
                   f"{tables.partition(tables.PREDICTIONS, DATASET, day)}{day:%H}-{i:04d}.parquet")
        say(f"  history: hour {extra + 1}/{history} written ({time.perf_counter() - started:.0f} s)")
        done["history"] = extra + 1
        marker.write_text(json.dumps(done))
    return done


# -- the measured steps, each run in a child process ---------------------------------------------------
def child_monitor() -> dict:
    from tollgate import drift, monitoring
    from tollgate.warehouse import engines, queries

    spec = specs.load(ROOT / "datasets" / "chicago_taxi.yaml")
    reference = drift.profile(pd.read_csv(TAXI), spec)
    import pyarrow.fs as pafs

    warehouse = engines.DuckDB(pafs.LocalFileSystem(), str(BENCH))
    started = time.perf_counter()
    start = END - dt.timedelta(minutes=spec.monitoring.window_minutes)
    label_start = END - dt.timedelta(hours=spec.monitoring.label_window_hours)
    observed = queries.observe(warehouse, spec, start, END, label_start)
    result = monitoring.window(observed, spec, {1: reference, 2: reference}, pd.Timestamp(start), pd.Timestamp(END))
    alerts = monitoring.judge(result, spec, {"version": 1, "canary": {"version": 2}})
    verdict = monitoring.canary_verdict(observed.labelled, spec, result, 1, 2)
    seconds = time.perf_counter() - started
    v = result["versions"]
    return {"seconds": seconds, "peak_mib": peak_mib(), "requests": result["requests"],
            "labelled": int(len(observed.labelled)), "unmatched": result["unmatched_labels"],
            "r2_v1": v["1"]["realised"]["value"], "drift_v1": v["1"]["drift"]["verdict"],
            "alerts": [a["kind"] for a in alerts], "canary": verdict["verdict"]}


CURATED_BATCHES, CURATED_ROWS = 20, 1_000_000


def generate_curated(say) -> list[dict]:
    """Curated batches as the validator writes them: validated trips (drawn with replacement), Parquet."""
    import hashlib

    folder = BENCH / "curated"
    marker = folder / "batches.json"
    if marker.exists():
        return json.loads(marker.read_text())
    spec = specs.load(ROOT / "datasets" / "chicago_taxi.yaml")
    trips = _trips(spec)
    folder.mkdir(parents=True, exist_ok=True)
    batches = []
    for i in range(CURATED_BATCHES):
        pick = np.random.default_rng(20_000 + i).integers(0, trips.num_rows, size=CURATED_ROWS)
        path = folder / f"batch-{i:02d}.parquet"
        pq.write_table(trips.take(pa.array(pick)), path, compression="zstd")
        batches.append({"object": str(path), "generation": 1, "rows": CURATED_ROWS,
                        "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
        say(f"  curated: batch {i + 1}/{CURATED_BATCHES}")
    marker.write_text(json.dumps(batches))
    return batches


def generate_stored(say) -> list[dict]:
    """The same batches as the validator stores them now (with the warehouse's ``_batch`` and ``_row``), their
    objects relative to the benchmark folder, which DuckDB reads as the trainer's window query does."""
    from tollgate import artifacts
    from tollgate.warehouse import curated

    folder = BENCH / "curated-stored"
    marker = folder / "batches.json"
    if marker.exists():
        return json.loads(marker.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    batches = []
    for batch in generate_curated(say):
        target = folder / f"{batch['sha256']}.parquet"
        curated.add_columns(Path(batch["object"]), target, batch["sha256"])
        batches.append({**batch, "object": str(target.relative_to(BENCH)),
                        "object_sha256": artifacts.file_sha256(target)})
    marker.write_text(json.dumps(batches))
    say(f"  stored: {len(batches)} batches with the warehouse's columns")
    return batches


def child_trainer(max_rows: int, how: str = "query") -> dict:
    """The trainer's read, fit and profile of the window: its batches before the newest from one warehouse query
    (``query``: DuckDB over the stored objects), or batch by batch as before (``batches``)."""
    import pyarrow.fs as pafs

    from tollgate import drift, training
    from tollgate.jobs.trainer import training_rows
    from tollgate.warehouse import curated, engines

    spec = specs.replace(specs.load(ROOT / "datasets" / "chicago_taxi.yaml"), training__max_rows=max_rows)
    window = json.loads((BENCH / "curated-stored" / "batches.json").read_text())
    warehouse = engines.DuckDB(pafs.LocalFileSystem(), str(BENCH)) if how == "query" else None

    def load(batch: dict) -> pd.DataFrame:
        return pd.read_parquet(BENCH / batch["object"]).drop(columns=list(curated.COLUMNS))

    started = time.perf_counter()
    train, holdout, sampling = training_rows(load, spec, window, warehouse)
    read_seconds = time.perf_counter() - started
    read_peak = peak_mib()
    model = training.fit(train, spec)
    drift.profile(train, spec, seed=spec.training.seed)
    del model
    return {"seconds": time.perf_counter() - started, "read_seconds": read_seconds, "peak_mib": peak_mib(),
            "peak_after_reading_mib": read_peak, "train_rows": len(train), "holdout_rows": len(holdout),
            "rows_available": sampling["rows_available"], "read": sampling["read"]}


def child_drain(records: int) -> dict:
    import orjson

    spec = specs.load(ROOT / "datasets" / "chicago_taxi.yaml")
    trips = _trips(spec).slice(0, 5_000).to_pylist()
    rng = np.random.default_rng(0)
    at = END - dt.timedelta(minutes=3)
    messages = []
    for m in range(1_000):   # one pull's payloads, reused with new message ids by each pull
        part = []
        for i in range(500):
            trip = trips[int(rng.integers(0, len(trips)))]
            part.append({"request_id": f"r{m}-{i}", "row": 0, "time": at.isoformat(), "model_version": 1,
                         "status": 200, "latency_ms": 2.5,
                         "features": orjson.dumps({f: trip[f] for f in spec.features}).decode(),
                         "prediction": repr(float(trip[spec.target])), "probabilities": None})
        messages.append(orjson.dumps({"schema": tables.PREDICTIONS_SCHEMA, "dataset": DATASET, "records": part}))
    out = BENCH / "drain"
    shutil.rmtree(out, ignore_errors=True)
    pulls = -(-records // 500_000)
    before = peak_mib()
    started = time.perf_counter()
    after_first = None
    for p in range(pulls):
        pull = tables.Pull()
        for m, data in enumerate(messages):
            pull.add(orjson.loads(data), f"pull{p}-{m}", at)
        for name, _, data, _ in pull.files():
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        del pull
        after_first = after_first or peak_mib()
    return {"seconds": time.perf_counter() - started, "records": pulls * 500_000, "peak_mib": peak_mib(),
            "peak_after_first_pull_mib": after_first, "before_mib": before}


def child_evaluator(rows: int, matrix: bool) -> dict:
    from tollgate import evaluation

    rng = np.random.default_rng(0)
    y = rng.gamma(2.0, 8.0, size=rows)
    challenger, champion = y + rng.normal(0, 2.0, size=rows), y + rng.normal(0, 2.2, size=rows)
    started = time.perf_counter()
    if matrix:   # the bootstrap as it was: one (resamples, rows) index matrix
        idx = np.random.default_rng(1).integers(0, rows, size=(1_000, rows))
        a = evaluation.metric_values(y[idx], challenger[idx], "r2")
        b = evaluation.metric_values(y[idx], champion[idx], "r2")
        low, high = np.quantile(a - b, [0.025, 0.975])
    else:
        d = evaluation.paired_bootstrap(y, challenger, champion, "r2", 1_000, 0.95, seed=1)
        low, high = d.low, d.high
    return {"seconds": time.perf_counter() - started, "peak_mib": peak_mib(), "rows": rows,
            "interval": [float(low), float(high)]}


def run_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "child", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"benchmark step {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=5_000, help="predictions per second in the window's hour")
    parser.add_argument("--history", type=int, default=10, help="hours of log older than the label window, in "
                                                                "multiples of the window")
    parser.add_argument("--fresh", action="store_true", help="regenerate the data")
    parser.add_argument("--burst-files", type=int, default=50, help="files dropped at once in the burst")
    args = parser.parse_args()
    console = Console()
    if args.fresh:
        shutil.rmtree(BENCH, ignore_errors=True)
    console.print(f"[bold]generating[/] {args.rate * 3600:,} predictions in the window and {LABELS:,} labels "
                  f"in {BENCH} (kept for the next run)")
    generate(args.rate, 0, console.print)
    monitor = run_child("monitor")
    console.print(f"monitor tick: {monitor}")
    generate(args.rate, args.history, console.print)
    monitor_history = run_child("monitor")
    console.print(f"monitor tick with {args.history}× history outside the window: {monitor_history}")
    drain = run_child("drain", "1500000")
    console.print(f"drain: {drain}")
    generate_stored(console.print)
    trainer = run_child("trainer", "2000000")
    console.print(f"trainer: {trainer}")
    trainer_batches = run_child("trainer", "2000000", "batches")
    console.print(f"trainer reading batch by batch (before): {trainer_batches}")
    trainer_4m = run_child("trainer", "4000000")
    console.print(f"trainer with max_rows 4,000,000: {trainer_4m}")
    import burst as bursts

    burst = bursts.measure(args.burst_files, echo=console.print)
    console.print(bursts.line(burst))
    evaluator = run_child("evaluator", "1000000", "blocks")
    before = run_child("evaluator", "100000", "matrix")
    after_small = run_child("evaluator", "100000", "blocks")
    table = Table(title="the data plane at volume (each step a fresh process; peak RSS)")
    for col in ("step", "volume", "seconds", "peak RSS MiB", "target", "before (today's code)"):
        table.add_column(col)
    rows = args.rate * 3600
    table.add_row("monitor tick", f"{rows:,} predictions, {monitor['labelled']:,} labelled",
                  f"{monitor['seconds']:.1f}", f"{monitor['peak_mib']:.0f}", "< 60 s, < 1024 MiB",
                  "the label window's log in one DataFrame: cannot run in 2 GiB")
    table.add_row("… with history", f"+{args.history * rows:,} older rows", f"{monitor_history['seconds']:.1f}",
                  f"{monitor_history['peak_mib']:.0f}", "within ±10% of the above", "grew with the history")
    table.add_row("drain", f"{drain['records']:,} records", f"{drain['seconds']:.1f}", f"{drain['peak_mib']:.0f} "
                  f"(after the first pull {drain['peak_after_first_pull_mib']:.0f})", "< 60 s, flat",
                  "re-read the day's stored files to skip duplicates")
    table.add_row("evaluator bootstrap", "1,000,000 rows × 1,000 resamples", f"{evaluator['seconds']:.1f}",
                  f"{evaluator['peak_mib']:.0f}", "< 1024 MiB", "index matrix: 8 GB, cannot run")
    table.add_row("… at 100,000 rows", "both ways", f"{after_small['seconds']:.1f} vs {before['seconds']:.1f}",
                  f"{after_small['peak_mib']:.0f} vs {before['peak_mib']:.0f}", "", "the matrix (measured)")
    table.add_row("trainer (window query + sample, fit, profile)", f"{trainer['rows_available']:,} rows → "
                  f"{trainer['train_rows']:,}", f"{trainer['seconds']:.1f} (reading {trainer['read_seconds']:.1f})",
                  f"{trainer['peak_mib']:.0f} (after reading {trainer['peak_after_reading_mib']:.0f})",
                  "< 3072 MiB", f"batch by batch: {trainer_batches['seconds']:.1f} s (reading "
                  f"{trainer_batches['read_seconds']:.1f}), {trainer_batches['peak_mib']:.0f} MiB (after reading "
                  f"{trainer_batches['peak_after_reading_mib']:.0f}); every batch concatenated: ~2M rows in 4 GiB")
    table.add_row("… max_rows 4,000,000", f"→ {trainer_4m['train_rows']:,}",
                  f"{trainer_4m['seconds']:.1f}", f"{trainer_4m['peak_mib']:.0f}", "fits the trainer's 4 GiB", "")
    table.add_row("burst (whole chain, local cloud)", f"{burst['files']} files at once",
                  f"{burst['seconds']:.1f} until all ended", "-",
                  "≤ 3 trainings, no review from re-evaluation",
                  f"{burst['trainings']} trainings (at most {burst['max_concurrent']} at once); {burst['superseded']} "
                  f"superseded; {burst['reviews_after_reevaluation']} reviews after {burst['reevaluations']} "
                  "re-evaluations; before: one training per file")
    console.print(table)
    print(f"scale monitor={monitor['seconds']:.1f}s/{monitor['peak_mib']:.0f}MiB drain={drain['seconds']:.1f}s "
          f"trainer={trainer['peak_mib']:.0f}MiB evaluator={evaluator['peak_mib']:.0f}MiB "
          f"burst_trainings={burst['trainings']} "
          f"trainer_4m={trainer_4m['peak_mib']:.0f}MiB "
          f"monitor_history={monitor_history['seconds']:.1f}s/{monitor_history['peak_mib']:.0f}MiB")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        what = sys.argv[2]
        if what == "monitor":
            result = child_monitor()
        elif what == "drain":
            result = child_drain(int(sys.argv[3]))
        elif what == "trainer":
            result = child_trainer(int(sys.argv[3]), *sys.argv[4:5])
        else:
            result = child_evaluator(int(sys.argv[3]), sys.argv[4] == "matrix")
        print(json.dumps(result, default=str))
        sys.exit(0)
    sys.exit(main())
