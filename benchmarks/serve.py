"""`make bench-serve`: our predictor against MLServer on the taxi model, side by side in one run.

Both servers serve the same fitted taxi pipeline (ours from the registry's skops bytes, MLServer
from a joblib file of the same object, with its adaptive batching on), each pinned to core 0 with
one OpenMP thread; wrk runs on core 1. Both receive the same Open Inference Protocol v2 request
(one input per feature) with 1 or 100 rows, at 1 and 8 connections, in interleaved repeats; the
median of the repeats is reported. Before any load, both must give the same predictions.

Reports req/s, rows/s, p50/p99, RSS after the load and start-up time (spawn to ready), then the
ratios; the last line reads ``ratio single=<x> batch=<y> p99=<z>``: ours over MLServer's req/s for
single rows at c=8, rows/s for 100-row requests at c=8, and MLServer's p99 over ours (single, c=8).
Our prediction log is off here (no Pub/Sub); MLServer's metrics server stays on (its default).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localcloud.cloud import free_port  # noqa: E402
from tollgate import artifacts, training, validation  # noqa: E402
from tollgate import spec as specs  # noqa: E402

TAXI = ROOT / "examples" / "data" / "chicago_taxi" / "chicago_taxi_trips.csv"
MLSERVER = ROOT / ".bench" / "mlserver" / "bin" / "mlserver"
SERVER_CORE, LOAD_CORE = "0", "1"
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BENCH_BODY")):read("*a")
done = function(summary, latency, requests)
  io.write(string.format("JSON{\\"requests\\":%d,\\"seconds\\":%f,\\"p50\\":%f,\\"p99\\":%f,\\"errors\\":%d}\\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
end
"""


def v2_body(rows: pd.DataFrame, spec: specs.DatasetSpec) -> bytes:
    inputs = []
    for name in spec.features:
        numeric = name in spec.feature_lists.numeric
        data = [float(v) for v in rows[name]] if numeric else [str(v) for v in rows[name]]
        inputs.append({"name": name, "shape": [len(rows)], "datatype": "FP64" if numeric else "BYTES", "data": data})
    # MLServer's sklearn runtime needs to be told to build a DataFrame; ours ignores the parameter
    return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs}).encode()


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (gunicorn's master and worker), in MB."""
    total, pids = 0, [pid]
    while pids:
        p = pids.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            pids += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except FileNotFoundError:
            pass
    return total / 1e6


class Server:
    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, ready: str, infer: str,
                 cwd: Path) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.infer = self.url + infer
        self.log = ROOT / ".bench" / f"{name}.log"   # kept after the run, outside the repository's tree
        started = time.monotonic()
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CORE, *command], cwd=cwd,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = started + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited before it was ready; see {self.log}:\n{self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + ready, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.02)
        else:
            raise SystemExit(f"{name} was not ready within 120 s; see {self.log}")
        self.startup = time.monotonic() - started

    def predict(self, body: bytes) -> np.ndarray:
        response = requests.post(self.infer, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        if response.status_code != 200:
            raise SystemExit(f"{self.name} answered {response.status_code}: {response.text[:500]}")
        return np.asarray(response.json()["outputs"][0]["data"], dtype="float64").ravel()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wrk(url: str, body: Path, connections: int, seconds: int, script: Path) -> dict[str, float]:
    done = subprocess.run(["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
                           "--latency", "-s", str(script), url], capture_output=True, text=True,
                          env={**os.environ, "BENCH_BODY": str(body)}, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("JSON")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed:\n{done.stdout}\n{done.stderr}")
    result = json.loads(line[4:])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def in_process(model, spec: specs.DatasetSpec, row: pd.DataFrame, calls: int = 2_000) -> dict[str, float]:
    """p50 and p99 in ms of one row predicted on the prepared path and explained (TreeSHAP), in this process pinned
    to one core, each after a warm-up call (numba compiles on the first)."""
    from tollgate import explain, prepared

    os.sched_setaffinity(0, {int(SERVER_CORE)})
    columns = prepared.Columns.from_frame(row, spec)
    ready = prepared.prepare(model, spec)
    explainer = explain.Explainer(model, spec)
    out = {}
    for name, call in (("predict", lambda: ready.predict(columns)), ("explain", lambda: explainer.explain(columns))):
        call()
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            call()
            times.append((time.perf_counter() - started) * 1e3)
        out[f"{name}_p50"], out[f"{name}_p99"] = np.percentile(times, [50, 99]).tolist()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (the median is reported)")
    args = parser.parse_args()
    console = Console()
    for tool, hint in (("wrk", "make bench-serve installs it (apt-get install wrk)"), ("taskset", "util-linux")):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required: {hint}")
    if not MLSERVER.exists():
        raise SystemExit("MLServer is not installed: run `make bench-serve` (it builds .bench/mlserver)")
    if (os.cpu_count() or 1) < 2:
        console.print("[yellow]one core only: servers and wrk share it; ratios still compare like with like")

    spec = specs.load(ROOT / "datasets" / "chicago_taxi.yaml")
    clean = validation.validate(pd.read_csv(TAXI), spec).data
    with console.status("training the taxi model (the spec's default estimator, all 15,002 trips)"):
        model = training.fit(clean, spec)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-", dir=ROOT / ".bench"))
    ours_dir, mls_dir = work / "ours", work / "mlserver" / "chicago_taxi"
    ours_dir.mkdir(parents=True)
    mls_dir.mkdir(parents=True)
    blob = artifacts.dumps(model)
    (ours_dir / "model.skops").write_bytes(blob)
    (ours_dir / "record.json").write_text(json.dumps({"sha256": artifacts.sha256(blob), "spec": spec.raw,
                                                      "estimator": spec.model.estimator}))
    import joblib

    joblib.dump(model, mls_dir / "model.joblib")
    (mls_dir / "model-settings.json").write_text(json.dumps({
        "name": "chicago_taxi", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "1"},
        "max_batch_size": 64, "max_batch_time": 0.002}))   # adaptive batching on, as a tuned deployment has it
    mls_port, ours_port = free_port(), free_port()
    (work / "mlserver" / "settings.json").write_text(json.dumps({
        "http_port": mls_port, "grpc_port": free_port(), "metrics_port": free_port(), "parallel_workers": 0}))
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    # complete rows: MLServer's pandas codec has no null BYTES (our server takes nulls; see the tests)
    sample = clean.dropna(subset=list(spec.features)).sample(100, random_state=7).reset_index(drop=True)
    bodies = {1: work / "single.json", 100: work / "batch.json"}
    bodies[1].write_bytes(v2_body(sample.head(1), spec))
    bodies[100].write_bytes(v2_body(sample, spec))

    servers = []
    try:
        with console.status("starting both servers (pinned to core 0)"):
            servers.append(Server(
                "tollgate", [str(ROOT / ".venv" / "bin" / "gunicorn"), "--config",
                             "services/predictor/gunicorn.conf.py", "services.predictor.main:create_app()"],
                {"AIP_STORAGE_URI": str(ours_dir), "TOLLGATE_MODEL_SHA256": artifacts.sha256(blob),
                 "DATASET": spec.name, "MODEL_VERSION": "1",
                 "PORT": str(ours_port), "HOST": "127.0.0.1", "TOLLGATE_PREDICTION_LOG": "off"},
                ours_port, "/v2/health/ready", f"/v2/models/{spec.name}/infer", ROOT))
            servers.append(Server("mlserver", [str(MLSERVER), "start", str(work / "mlserver")], {}, mls_port,
                                  f"/v2/models/{spec.name}/ready", f"/v2/models/{spec.name}/infer", work))
        ours, theirs = servers
        for rows, body in bodies.items():
            a, b = ours.predict(body.read_bytes()), theirs.predict(body.read_bytes())
            if not (len(a) == len(b) == rows and np.max(np.abs(a - b)) <= 1e-9):
                raise SystemExit(f"the servers disagree on {rows} rows: max difference {np.max(np.abs(a - b))}")
        vertex = {route: work / f"vertex-{route}.json" for route in ("predict", "explain")}
        one = {"instances": [{k: (None if pd.isna(v) else v) for k, v in sample.head(1)[list(spec.features)]
                              .iloc[0].items()}]}
        for path in vertex.values():
            path.write_text(json.dumps(one, default=lambda v: v.item()))   # numpy scalars as numbers
        explained = requests.post(f"{ours.url}/predict:explain", data=vertex["explain"].read_bytes(),
                                  headers={"Content-Type": "application/json"}, timeout=30)
        if explained.status_code != 200:
            raise SystemExit(f"tollgate's :explain answered {explained.status_code}: {explained.text[:500]}")
        scenarios = [(rows, c) for rows in (1, 100) for c in (1, 8)]
        runs: dict[tuple[str, int, int], list[dict[str, float]]] = {}
        total = args.repeats * len(scenarios) * len(servers)
        done = 0
        for repeat in range(args.repeats):
            for rows, connections in scenarios:
                for server in servers if repeat % 2 == 0 else servers[::-1]:   # interleaved, order alternating
                    done += 1
                    console.print(f"[dim]{done}/{total} {server.name} rows={rows} c={connections}")
                    result = wrk(server.infer, bodies[rows], connections, args.seconds, script)
                    runs.setdefault((server.name, rows, connections), []).append(result)
        routes = {"predict": f"{ours.url}/predict", "explain": f"{ours.url}/predict:explain"}
        http = {route: [] for route in routes}
        for repeat in range(args.repeats):   # one row, one connection: the latency a caller sees per answer
            for route, url in routes.items():
                http[route].append(wrk(url, vertex[route], 1, args.seconds, script))
        rss = {s.name: rss_mb(s.proc.pid) for s in servers}
    finally:
        for server in servers:
            server.stop()

    def median(name: str, rows: int, c: int, key: str) -> float:
        return statistics.median(r[key] for r in runs[(name, rows, c)])

    table = Table(title=f"taxi model, one pinned core each, wrk on the other; median of {args.repeats} "
                        f"interleaved {args.seconds}-s runs (Open Inference Protocol v2, same request)")
    for col in ("payload", "conns", "server", "req/s", "rows/s", "p50 ms", "p99 ms", "non-2xx"):
        table.add_column(col, justify="left" if col in ("payload", "server") else "right")
    for rows, c in scenarios:
        for server in servers:
            rps = median(server.name, rows, c, "rps")
            errors = sum(r["errors"] for r in runs[(server.name, rows, c)])
            table.add_row(f"{rows} row{'s' if rows > 1 else ''}", str(c), server.name, f"{rps:,.0f}",
                          f"{rps * rows:,.0f}", f"{median(server.name, rows, c, 'p50'):.2f}",
                          f"{median(server.name, rows, c, 'p99'):.2f}", str(errors))
    console.print(table)
    for server in servers:
        console.print(f"{server.name}: start-up to ready {server.startup:.2f} s, "
                      f"RSS after the load {rss[server.name]:.0f} MB")
    single = median("tollgate", 1, 8, "rps") / median("mlserver", 1, 8, "rps")
    batch = median("tollgate", 100, 8, "rps") / median("mlserver", 100, 8, "rps")
    p99 = median("mlserver", 1, 8, "p99") / median("tollgate", 1, 8, "p99")
    p99_batch = median("mlserver", 100, 8, "p99") / median("tollgate", 100, 8, "p99")
    console.print(f"c=1 single-row p50: tollgate {median('tollgate', 1, 1, 'p50'):.2f} ms, "
                  f"mlserver {median('mlserver', 1, 1, 'p50'):.2f} ms; 100-row p99 ratio (theirs/ours) "
                  f"{p99_batch:.2f}")
    compute = in_process(model, spec, sample.head(1))
    costs = Table(title="one taxi row, predicted and explained (exact TreeSHAP per declared feature): in this process "
                        "on one core, and through tollgate's Vertex AI routes at c=1")
    for col in ("route", "in-process p50 ms", "in-process p99 ms", "HTTP p50 ms", "HTTP p99 ms", "HTTP req/s"):
        costs.add_column(col, justify="left" if col == "route" else "right", no_wrap=col == "route")
    for route in ("predict", "explain"):
        costs.add_row(f"/{route}" if route == "predict" else "/predict:explain", f"{compute[route + '_p50']:.3f}",
                      f"{compute[route + '_p99']:.3f}",
                      f"{statistics.median(r['p50'] for r in http[route]):.2f}",
                      f"{statistics.median(r['p99'] for r in http[route]):.2f}",
                      f"{statistics.median(r['rps'] for r in http[route]):,.0f}")
    console.print(costs)
    shutil.rmtree(work, ignore_errors=True)
    http_p50 = statistics.median(r["p50"] for r in http["explain"])
    print(f"explain p50={compute['explain_p50']:.3f}ms http_p50={http_p50:.2f}ms")
    print(f"ratio single={single:.2f} batch={batch:.2f} p99={p99:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
