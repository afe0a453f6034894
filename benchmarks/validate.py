"""`make bench-validate`: the validator on a large taxi-shaped file, next to Great Expectations.

Generates (once, under .bench/, never committed) a CSV of N rows resampled from the real taxi
trips with a few broken values, then validates it with each tool in its own process (best of
three runs, timed from opening the file to the last result; the process reports its peak memory):

- tollgate: the validator job's code path (chunked read, pandera contract, outlier fences, drift
  against a reference profile, curated Parquet written);
- great_expectations: the same checks as expectations on a pandas DataFrame (its pandas engine
  has no cross-field rule or robust outlier fence; drift is its KL-divergence expectation).

The last line reads: ``tollgate <N> rows/s, peak <M> MiB; great_expectations <K> rows/s``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAXI = ROOT / "examples" / "data" / "chicago_taxi" / "chicago_taxi_trips.csv"
SPEC = ROOT / "datasets" / "chicago_taxi.yaml"
BENCH = ROOT / ".bench"
REPEAT = 3   # each side runs this often in its own process; the best time counts (as timeit does)


def peak_mib() -> float:
    sys.path.insert(0, str(ROOT))   # the great_expectations side runs in its own venv, without the project installed
    from localcloud import memory

    return memory.peak_resident() / 2**20


def generate(rows: int, seed: int = 7) -> Path:
    import numpy as np
    import pandas as pd
    from rich.progress import Progress

    path = BENCH / f"taxi-{rows}.csv"
    if path.exists():
        return path
    BENCH.mkdir(exist_ok=True)
    trips = pd.read_csv(TAXI)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".partial")
    step = 250_000
    with Progress() as progress, tmp.open("w") as fh:
        task = progress.add_task(f"generating {rows:,} taxi-shaped rows", total=rows)
        for start in range(0, rows, step):
            n = min(step, rows - start)
            part = trips.iloc[rng.integers(0, len(trips), n)].reset_index(drop=True)
            part["trip_miles"] = (part["trip_miles"] * rng.uniform(0.9, 1.1, n)).round(2)
            part["fare"] = (part["fare"] * rng.uniform(0.95, 1.05, n)).round(2)
            bad = rng.choice(n, size=max(n // 10_000, 1), replace=False)
            part.loc[bad[: len(bad) // 2], "payment_type"] = "Bitcoin"     # not an allowed value: dropped
            part.loc[bad[len(bad) // 2:], "trip_seconds"] = -1.0         # below the minimum: dropped
            part.to_csv(fh, index=False, header=start == 0)
            progress.advance(task, n)
    tmp.rename(path)
    return path


def inputs() -> dict:
    """What both sides get: the dataset spec and a champion's reference profile (2013–2014 trips)."""
    import pandas as pd

    from tollgate import drift
    from tollgate import spec as specs

    spec = specs.load(SPEC)
    trips = pd.read_csv(TAXI)
    when = pd.to_datetime(trips["trip_start_timestamp"], unit="s")
    return {"spec": spec.raw, "profile": drift.profile(trips[when < "2015-01-01"], spec)}


def run_tollgate(path: Path, given: dict) -> dict:
    from tollgate import spec as specs
    from tollgate import validation

    spec, ref = specs.from_dict(given["spec"]), given["profile"]
    out = BENCH / "curated.parquet"
    seconds = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        with path.open("rb") as fh:
            result = validation.validate_file(fh, spec, out, reference=ref, size=path.stat().st_size)
        seconds.append(time.perf_counter() - started)
        out.unlink(missing_ok=True)
    seconds = min(seconds)
    return {"rows": result.rows_in, "seconds": seconds, "peak_mib": peak_mib(), "status": result.status,
            "rows_out": result.rows_out, "drift": result.drift["verdict"],
            "checks": {c.name: c.failed_rows for c in result.checks}}


def run_great_expectations(path: Path, given: dict) -> dict:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd

    raw, ref = given["spec"], given["profile"]
    context = gx.get_context(mode="ephemeral")
    batch_definition = (context.data_sources.add_pandas("bench").add_dataframe_asset("taxi")
                        .add_batch_definition_whole_dataframe("all"))
    suite = gx.ExpectationSuite(name="taxi")
    suite.add_expectation(gxe.ExpectTableColumnsToMatchSet(column_set=list(raw["columns"]), exact_match=True))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=raw["min_rows"]))
    for name, col in raw["columns"].items():
        if col.get("type") in ("float", "int"):
            suite.add_expectation(gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=["float64", "int64"]))
        if col.get("nullable") is False:
            suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=name))
        if "min" in col or "max" in col:
            suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=name, min_value=col.get("min"),
                                                                    max_value=col.get("max")))
        if "allowed" in col:
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=col["allowed"]))
    for name, entry in ref["columns"].items():
        if name in raw.get("drift", {}).get("exclude", []):
            continue
        if entry["kind"] == "numeric":
            pad = 1e-9 * max(1.0, abs(entry["max"]), abs(entry["min"]))   # GE wants strictly increasing bins
            bins = [min(entry["min"], entry["edges"][0]) - pad, *entry["edges"],
                    max(entry["max"], entry["edges"][-1]) + pad]
            weights = [c / max(sum(entry["counts"]), 1) for c in entry["counts"]]
            partition = {"bins": bins, "weights": weights}
        else:
            total = max(sum(entry["counts"].values()), 1)
            partition = {"values": list(entry["counts"]), "weights": [v / total for v in entry["counts"].values()]}
        suite.add_expectation(gxe.ExpectColumnKLDivergenceToBeLessThan(column=name, partition_object=partition,
                                                                       threshold=0.1))
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="v", data=batch_definition,
                                                                            suite=suite))
    seconds = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        df = pd.read_csv(path)
        result = definition.run(batch_parameters={"dataframe": df}, result_format="BASIC")
        seconds.append(time.perf_counter() - started)
    seconds = min(seconds)
    failed = [r.expectation_config.type for r in result.results if not r.success]
    return {"rows": len(df), "seconds": seconds, "peak_mib": peak_mib(), "status": "valid" if result.success
            else "failed", "expectations": len(result.results), "failed_expectations": len(failed)}


def _child(side: str, path: Path, reference: Path, python: str) -> dict:
    done = subprocess.run([python, __file__, "--worker", side, str(path), str(reference)], check=False,
                          stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        raise SystemExit(f"the {side} side failed (exit {done.returncode}); see its output above")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ge-python", default=str(BENCH / "ge" / "bin" / "python"),
                        help="Python of the venv with great_expectations (made by `make bench-validate`)")
    parser.add_argument("--skip-ge", action="store_true", help="Only measure tollgate.")
    parser.add_argument("--worker", nargs=3, metavar=("SIDE", "CSV", "REFERENCE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        side, path, reference = args.worker
        fn = run_tollgate if side == "tollgate" else run_great_expectations
        print(json.dumps(fn(Path(path), json.loads(Path(reference).read_text()))))
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console()
    path = generate(args.rows)
    reference = BENCH / "inputs.json"
    reference.write_text(json.dumps(inputs()))
    size = path.stat().st_size
    console.print(f"{path.relative_to(ROOT)}: {args.rows:,} rows, {size / 2**20:.0f} MiB")
    console.print("[dim]validating with tollgate …[/]")
    ours = _child("tollgate", path, reference, sys.executable)
    theirs = None
    if not args.skip_ge:
        console.print("[dim]validating with great_expectations …[/]")
        theirs = _child("great_expectations", path, reference, args.ge_python)
    table = Table(title=f"validation of {args.rows:,} taxi rows ({size / 2**20:.0f} MiB CSV), best of {REPEAT}")
    for col in ("", "rows/s", "seconds", "peak MiB", "outcome"):
        table.add_column(col, justify="right" if col in ("rows/s", "seconds", "peak MiB") else "left")
    table.add_row("tollgate", f"{ours['rows'] / ours['seconds']:,.0f}", f"{ours['seconds']:.2f}",
                  f"{ours['peak_mib']:.0f}",
                  f"{ours['status']}: {ours['rows_out']:,} rows kept, drift {ours['drift']}, "
                                             f"{len(ours['checks'])} checks found something")
    if theirs:
        table.add_row("great_expectations", f"{theirs['rows'] / theirs['seconds']:,.0f}", f"{theirs['seconds']:.2f}",
                      f"{theirs['peak_mib']:.0f}", f"{theirs['failed_expectations']} of {theirs['expectations']} "
                                                   "expectations failed")
    console.print(table)
    tail = f"; great_expectations {theirs['rows'] / theirs['seconds']:.0f} rows/s" if theirs else ""
    print(f"tollgate {ours['rows'] / ours['seconds']:.0f} rows/s, peak {ours['peak_mib']:.0f} MiB{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
