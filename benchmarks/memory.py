"""`make bench-memory`: what each estimator family needs at 1,000,000 rows.

The table the trainer is planned for: 1,000,000 rows × 30 features, 27 numeric and three categorical of 10,000
values each (a regression; a seeded generator, so every run fits the same data). For each family: what `spec check`
says before any data (the memory plan, `tollgate.capacity`, against a 2 GiB job), then a child process that does
what the trainer does — read the window, plan with what the process already holds, and either refuse with the
plan's reason or fit — with the window's resident memory, the fit's seconds and the child's peak. A refusal is the
outcome the plan exists for: a run that fails at once saying what to change, instead of a job killed over its limit
and retried. The last line is what CI can read:
``memory: <n> of <m> families fit within <limit> MiB (peak <p> MiB); <k> refused by the trainer's plan``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "shared")]

from localcloud import memory  # noqa: E402
from tollgate import capacity, training  # noqa: E402
from tollgate import spec as specs  # noqa: E402

NUMERIC, CATEGORICAL, WIDTH = 27, 3, 10_000
LIMIT = 2 * 2**30
DATA = ROOT / ".bench" / "memory"


def spec_for(estimator: str) -> specs.DatasetSpec:
    columns = {f"x{i}": {"type": "float"} for i in range(NUMERIC)}
    columns.update({f"c{i}": {"type": "string"} for i in range(CATEGORICAL)})
    columns["y"] = {"type": "float"}
    return specs.from_dict({
        "name": "memory", "task": "regression", "target": "y", "columns": columns,
        "features": {"numeric": [f"x{i}" for i in range(NUMERIC)],
                     "categorical": [f"c{i}" for i in range(CATEGORICAL)]},
        "model": {"estimator": estimator}, "policy": {"threshold": 0.0}})


def table(rows: int) -> Path:
    """The benchmark's table as Parquet (made once per row count; categoricals stored as dictionaries)."""
    path = DATA / f"table-{rows}.parquet"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=rows) for i in range(NUMERIC)})
    # Zipf-like codes: a few frequent values and a long tail, as real identifiers-turned-categories are
    for i in range(CATEGORICAL):
        codes = np.minimum(rng.zipf(1.3, size=rows), WIDTH) - 1
        frame[f"c{i}"] = pd.Categorical.from_codes(codes, [f"v{i}-{k}" for k in range(WIDTH)])
    effect = {i: rng.normal(size=WIDTH) for i in range(CATEGORICAL)}
    frame["y"] = (frame["x0"] * 2 - frame["x1"] + np.sin(frame["x2"])
                  + sum(effect[i][frame[f"c{i}"].cat.codes.to_numpy()] for i in range(CATEGORICAL))
                  + rng.normal(scale=0.5, size=rows))
    staged = path.with_suffix(".tmp")
    frame.to_parquet(staged, index=False)
    os.replace(staged, path)
    return path


def child(estimator: str, path: Path, force: bool = False) -> None:
    """One fit, as the trainer does it: read the window, plan its memory with what the process holds already
    (the trainer's own `plan_memory`), then fit (the parent measures the peak)."""
    from tollgate.errors import StepFailed
    from tollgate.jobs.trainer import _resident, plan_memory

    frame = pd.read_parquet(path)
    for i in range(CATEGORICAL):
        frame[f"c{i}"] = frame[f"c{i}"].astype(str)   # as the curated data arrives: text
    spec = spec_for(estimator)
    resident = _resident()
    distinct = {f"c{i}": int(frame[f"c{i}"].nunique()) for i in range(CATEGORICAL)}
    planned = capacity.estimate(spec, len(frame), distinct).bytes
    os.environ["TOLLGATE_MEMORY_LIMIT"] = str(LIMIT)
    try:
        plan_memory(spec, frame)
    except StepFailed as refused:
        if not force:
            print(json.dumps({"refused": str(refused), "window": resident, "planned": planned,
                              "peak": memory.peak_resident()}))
            return
    started = time.perf_counter()
    training.fit(frame, spec)
    print(json.dumps({"seconds": time.perf_counter() - started, "window": resident, "planned": planned,
                      "peak": memory.peak_resident()}))


def measure(estimator: str, path: Path, force: bool = False) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", estimator, "--data", str(path)]
                            + (["--force"] if force else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    # wait4's ru_maxrss is the fallback for a child that died before it could say: it also counts what this
    # process held when it started the child (Linux keeps it across exec), so the child's own VmHWM comes first
    peak = usage.ru_maxrss * 1024   # kilobytes on Linux
    if os.waitstatus_to_exitcode(status) != 0:
        return {"error": (err.strip().splitlines() or ["failed"])[-1], "peak": peak,
                "seconds": time.perf_counter() - started}
    return {"peak": peak, **json.loads(out.strip().splitlines()[-1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--families", help="comma-separated estimator families (default: every regressor)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--force", action="store_true",
                        help="fit even what the plan refuses (to calibrate the plan against what a fit uses)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.force)
        return 0
    console = Console(width=160)
    families = args.families.split(",") if args.families else [
        e for e in specs.ESTIMATORS if "regression" in specs.ESTIMATOR_TASKS.get(e, specs.TASKS)]
    with console.status(f"making the {args.rows:,}-row table"):
        path = table(args.rows)
    distinct = {f"c{i}": WIDTH for i in range(CATEGORICAL)}
    report = Table(title=f"{args.rows:,} rows × {NUMERIC + CATEGORICAL} features ({CATEGORICAL} categorical of "
                         f"{WIDTH:,} values), a {LIMIT // 2**20:,} MiB job")
    for col in ("estimator", "spec check", "trainer's plan", "window MiB", "fit plan MiB", "fit used MiB", "fit s",
                "peak MiB", "within"):
        report.add_column(col, justify="left" if col in ("estimator", "spec check", "trainer's plan") else "right")
    fitted, refused, peaks = 0, 0, []
    for estimator in families:
        spec = spec_for(estimator)
        planned = capacity.estimate(spec, args.rows, distinct)
        warned = capacity.problem(spec, args.rows, LIMIT, distinct)   # what `spec check` says, before any data
        with console.status(f"{estimator} on {args.rows:,} rows (planned {planned.bytes / 2**20:,.0f} MiB)"):
            got = measure(estimator, path, args.force)
        check = f"warns: {warned}" if warned else f"fits (plans {planned.bytes / 2**20:,.0f} MiB)"
        window = f"{got['window'] / 2**20:,.0f}" if "window" in got else "—"
        if got.get("refused"):
            refused += 1
            report.add_row(estimator, check, f"refused: {got['refused']}", window, f"{got['planned'] / 2**20:,.0f}",
                           "—", "—", "—", "—")
            continue
        peak = got["peak"] / 2**20
        peaks.append(peak)
        ok = got.get("error") is None and got["peak"] <= LIMIT
        fitted += ok
        used = f"{(got['peak'] - got['window']) / 2**20:,.0f}" if "window" in got else "—"
        planned_fit = f"{got['planned'] / 2**20:,.0f}" if "planned" in got else "—"
        report.add_row(estimator, check, f"failed: {got['error']}" if got.get("error") else "fits", window,
                       planned_fit, used, f"{got['seconds']:.1f}", f"{peak:,.0f}", "yes" if ok else "NO")
    console.print(report)
    attempted = len(families) - refused
    print(f"memory: {fitted} of {attempted} families fit within {LIMIT // 2**20} MiB "
          f"(peak {max(peaks, default=0):,.0f} MiB); {refused} refused by the trainer's plan")
    return 0 if fitted == attempted else 1


if __name__ == "__main__":
    sys.exit(main())
