"""Fuzzing harness: hostile inputs handed one by one to a worker *process*, so a crash or a hang of the code under
test is seen as such (a dead worker, a timeout) instead of taking the test run down with it.

The parent sends each case as a length-prefixed JSON header and a length-prefixed payload on the worker's stdin;
the worker answers one JSON line per case on stdout. A worker that dies or does not answer within ``timeout``
seconds fails that case and is replaced; the run goes on with the next case.

    python -m tests.fuzzing artifact|data     (the worker; started by :class:`Pool`)
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import select
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Outcome:
    label: str                 # what the mutation was
    status: str                # the worker's verdict, or "crash" / "hang"
    detail: str = ""
    peak_rss_mb: float = 0.0


def _frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class Pool:
    """One worker process at a time, replaced whenever it crashes or hangs."""

    def __init__(self, kind: str, timeout: float = 30.0) -> None:
        self.kind, self.timeout = kind, timeout
        self.proc: subprocess.Popen | None = None
        self.stderr = tempfile.TemporaryFile()   # what a dying worker said last

    def _died(self, label: str, code: int) -> Outcome:
        self.stderr.seek(0)
        tail = self.stderr.read().decode(errors="replace").strip().splitlines()[-3:]
        self.stderr.seek(0)
        self.stderr.truncate()
        self.proc = None
        why = f"signal {-code}" if code < 0 else f"exit {code}"
        return Outcome(label, "crash", f"the worker died ({why}): {' | '.join(tail)}"[:600])

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'shared'}", "PYTHONUNBUFFERED": "1",
               "OMP_NUM_THREADS": "1"}
        return subprocess.Popen([sys.executable, "-m", "tests.fuzzing", self.kind], cwd=ROOT, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)

    def run(self, label: str, header: dict[str, Any], payload: bytes) -> Outcome:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        try:
            proc.stdin.write(_frame(json.dumps(header).encode()) + _frame(payload))
            proc.stdin.flush()
        except BrokenPipeError:
            return self._died(label, proc.wait())
        deadline = time.monotonic() + self.timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], max(left, 0))
            if not ready:
                proc.kill()
                proc.wait()
                self.proc = None
                return Outcome(label, "hang", f"no answer within {self.timeout:.0f} s")
            chunk = proc.stdout.readline()
            if not chunk:
                return self._died(label, proc.wait())
            line += chunk
        answer = json.loads(line)
        return Outcome(label, answer["status"], answer.get("detail", ""), answer.get("peak_rss_mb", 0.0))

    def close(self) -> None:
        self.stderr.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def run_all(kind: str, cases: Iterable[tuple[str, dict[str, Any], bytes]], timeout: float = 30.0) -> list[Outcome]:
    pool = Pool(kind, timeout)
    try:
        return [pool.run(label, header, payload) for label, header, payload in cases]
    finally:
        pool.close()


# ---------------------------------------------------------------- the workers

def _read(stream: Any, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def _cases() -> Iterable[tuple[dict[str, Any], bytes]]:
    stdin = sys.stdin.buffer
    while True:
        size = _read(stdin, 4)
        if size is None:
            return
        header = json.loads(_read(stdin, struct.unpack(">I", size)[0]))
        payload = _read(stdin, struct.unpack(">I", _read(stdin, 4))[0])
        yield header, payload


def _peak_rss_mb() -> float:
    from localcloud.memory import peak_resident

    return peak_resident() / 2**20


def _artifact_worker() -> None:
    """Load the artifact as the services do; if it loads, predict the sample rows with the model's own predict and
    the prepared path: every answer must be finite."""
    import numpy as np
    import pandas as pd

    from tollgate import artifacts, prepared, training
    from tollgate import spec as specs

    spec_cache: dict[str, Any] = {}
    for header, payload in _cases():
        key = json.dumps(header["spec"], sort_keys=True)
        spec = spec_cache.get(key) or spec_cache.setdefault(key, specs.from_dict(header["spec"]))
        try:
            model = artifacts.loads(payload, artifacts.sha256(payload), spec)
        except artifacts.ArtifactError as exc:
            answer = {"status": "refused", "detail": str(exc)[:300]}
        else:
            try:
                frame = training.features_frame(pd.DataFrame(header["rows"]), spec)
                outputs = [np.asarray(model.predict(frame))]
                if spec.task == "classification":
                    outputs.append(np.asarray(model.predict_proba(frame), dtype="float64"))
                ready = prepared.prepare(model, spec)
                columns = prepared.Columns(frame[list(spec.feature_lists.numeric)].to_numpy(dtype="float64"),
                                           [[None if pd.isna(v) else v for v in frame[c]]
                                            for c in spec.feature_lists.categorical])
                served = ready.predict(columns)
                outputs.append(np.asarray(served.predictions))
                numbers = [o for o in outputs if o.dtype.kind in "fiu"]
                finite = all(np.all(np.isfinite(o.astype("float64"))) for o in numbers)
                answer = {"status": "finite" if finite else "not_finite", "detail": ready.path}
            except Exception as exc:   # loaded, yet failing on valid rows: a finding
                answer = {"status": "error", "detail": f"{type(exc).__name__}: {str(exc)[:300]}"}
        answer["peak_rss_mb"] = _peak_rss_mb()
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def _data_worker() -> None:
    """Validate the file as the validator job does: every file must end in a result (valid or rejected)."""
    import tempfile

    from tollgate import spec as specs
    from tollgate import validation

    spec_cache: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tollgate-fuzz-") as tmp:
        out = Path(tmp, "curated.parquet")
        for header, payload in _cases():
            key = json.dumps(header["spec"], sort_keys=True)
            spec = spec_cache.get(key) or spec_cache.setdefault(key, specs.from_dict(header["spec"]))
            try:
                result = validation.validate_file(io.BytesIO(payload), spec, out, size=len(payload),
                                                  chunk_bytes=header.get("chunk_bytes"))
                answer = {"status": result.status, "detail": f"{result.reason}: {result.message}"[:300]}
            except Exception as exc:   # a file made validate_file raise: a finding
                answer = {"status": "error", "detail": f"{type(exc).__name__}: {str(exc)[:300]}"}
            out.unlink(missing_ok=True)
            answer["peak_rss_mb"] = _peak_rss_mb()
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    {"artifact": _artifact_worker, "data": _data_worker}[sys.argv[1]]()
