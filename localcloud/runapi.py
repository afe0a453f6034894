"""A local Cloud Run Admin API (REST, v2 paths), as the `google-cloud-run` client speaks it.

Jobs run as processes (one per task, in parallel); a task that exits non-zero or outlives the job's
timeout is retried up to the job's ``max_retries`` (topology.yaml), and one that fails every attempt makes
a failed execution. Services run each revision as a process (the topology's command, with the
template's env) behind a router whose URL is the service URL and which splits traffic between
revisions by their percentages for real. Services survive a restart (state in a JSON file);
executions do not. The surface is what Tollgate uses: jobs.run/get, executions.get,
operations.get, services.get/create/update, revisions.get.

    python -m localcloud.runapi --home .tollgate --port 8123 --project P --region R
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.serving import make_server

from localcloud import memory
from localcloud.cloud import free_port
from tollgate import topology as topo

ROOT = topo.ROOT
EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"
SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
LATEST, REVISION = 1, 2          # TrafficTargetAllocationType as integers (enum-encoding=int)
DRAIN_SECONDS = float(os.environ.get("LOCALCLOUD_DRAIN_SECONDS", "5"))
READY_TIMEOUT = 180.0


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _resolve(command: list[str]) -> list[str]:
    """Run the topology's container command with this environment's Python and scripts."""
    head, *rest = command
    if head in ("python", "python3"):
        return [sys.executable, *rest]
    local = Path(sys.executable).parent / head
    return [str(local) if local.exists() else head, *rest]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def task_pids(env: dict[str, str]) -> list[int]:
    """Pids of job task processes whose environment holds every ``env`` item (e.g. RUN_ID and CLOUD_RUN_JOB):
    what a demo or a test kills to play an out-of-memory kill. Read from /proc (Linux)."""
    wanted = [f"{k}={v}".encode() for k, v in env.items()]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(item in environ for item in wanted):
            found.append(int(entry.name))
    return found


class ApiError(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


# --------------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------------
class Operation:
    def __init__(self, parent: str, metadata_type: str, metadata: dict[str, Any]) -> None:
        self.name = f"{parent}/operations/{uuid.uuid4()}"
        self.metadata_type = metadata_type
        self.metadata = metadata
        self.done = False
        self.response: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None

    def finish(self, response: dict[str, Any] | None = None, error: tuple[int, str] | None = None) -> None:
        if error:
            self.error = {"code": error[0], "message": error[1]}
        else:
            self.response = response
        self.done = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "done": self.done,
                               "metadata": {"@type": self.metadata_type, **self.metadata}}
        if self.done and self.error:
            out["error"] = self.error
        elif self.done:
            out["response"] = {"@type": self.metadata_type, **(self.response or {})}
        return out


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------
class Execution:
    """One execution: its tasks run in parallel, each task's attempts one after the other, as Cloud Run runs
    them: a task that exits non-zero, or outlives the job's timeout (SIGTERM, then SIGKILL 10 s later), is
    started again with CLOUD_RUN_TASK_ATTEMPT + 1 until the job's max_retries are used up."""

    def __init__(self, runtime: "Runtime", job: topo.Job, env: dict[str, str], task_count: int,
                 timeout: float) -> None:
        self.runtime = runtime
        self.job = job
        self.id = f"{job.name}-{secrets.token_hex(3)}"
        self.name = f"{runtime.parent}/jobs/{job.name}/executions/{self.id}"
        self.task_count = task_count
        self.timeout = timeout
        self.env = env
        self.create_time = _now()
        self.start_time: str | None = None
        self.completion_time: str | None = None
        self.exit_codes: dict[int, int] = {}
        self.memory_exceeded: dict[int, str] = {}   # task → Cloud Run's message, for a task stopped over its limit
        self.memory_limit = runtime.memory_limit(job.name, job.memory)
        self.retried = 0
        self.procs: list[subprocess.Popen[bytes]] = []   # every attempt's process (stop_all ends the live ones)
        self.failure: str | None = None
        self.operation = Operation(runtime.parent, EXECUTION_TYPE, {})
        self.operation.metadata = self.to_json()

    def log_path(self, task: int) -> Path:
        return self.runtime.home / "logs" / "jobs" / f"{self.id}-task{task}.log"

    def start(self) -> None:
        self.start_time = _now()
        threads = [threading.Thread(target=self._run_task, args=(task,), daemon=True, name=f"{self.id}-task{task}")
                   for task in range(self.task_count)]
        for thread in threads:
            thread.start()
        threading.Thread(target=self._finish, args=(threads,), daemon=True, name=f"exec-{self.id}").start()

    def _attempt(self, task: int, attempt: int) -> int:
        env = {**os.environ, **self.env, "CLOUD_RUN_JOB": self.job.name, "CLOUD_RUN_EXECUTION": self.id,
               "CLOUD_RUN_TASK_INDEX": str(task), "CLOUD_RUN_TASK_COUNT": str(self.task_count),
               "CLOUD_RUN_TASK_ATTEMPT": str(attempt), "TOLLGATE_MAX_ATTEMPTS": str(self.job.max_attempts),
               "TOLLGATE_MEMORY_LIMIT": str(self.memory_limit)}
        path = self.log_path(task)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as log:
            proc = subprocess.Popen(_resolve(self.job.command), cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        watchdog = memory.Watchdog(proc.pid, self.memory_limit)
        try:
            code = proc.wait(timeout=self.timeout)
            watchdog.stop()
            if watchdog.exceeded:   # as Cloud Run stops a container over its limit: SIGKILL, and says so
                self.memory_exceeded[task] = watchdog.message
                with path.open("a") as log:
                    log.write(f"\n[local cloud run] attempt {attempt} stopped: {watchdog.message}\n")
                return 137
            with path.open("a") as log:   # what Cloud Run's metrics would show: the attempt's peak memory
                log.write(f"\n[local cloud run] attempt {attempt} peak memory {watchdog.peak // 2**20} MiB "
                          f"(limit {self.memory_limit // 2**20} MiB)\n")
            return code
        except subprocess.TimeoutExpired:
            watchdog.stop()
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with path.open("a") as log:
                log.write(f"\n[local cloud run] attempt {attempt} killed after the task timeout of "
                          f"{self.timeout:.0f}s\n")
            return proc.returncode if proc.returncode not in (0, None) else -15

    def _run_task(self, task: int) -> None:
        for attempt in range(self.job.max_attempts):
            code = self._attempt(task, attempt)
            if code == 0 or attempt + 1 == self.job.max_attempts:
                break
            self.retried += 1
            with self.log_path(task).open("a") as log:
                log.write(f"\n[local cloud run] attempt {attempt} exited with {code}; retrying "
                          f"({attempt + 1} of max_retries {self.job.max_retries})\n")
        self.exit_codes[task] = code

    def _finish(self, threads: list[threading.Thread]) -> None:
        for thread in threads:
            thread.join()
        self.completion_time = _now()
        failed = [t for t, c in self.exit_codes.items() if c != 0]
        if failed:
            task = failed[0]
            message = (f"Task {self.id}-task{task} failed with exit code {self.exit_codes[task]}"
                       + (f": {self.memory_exceeded[task]}" if task in self.memory_exceeded else "")
                       + f". Log tail:\n{_tail(self.log_path(task))}")
            self.failure = message
            self.operation.finish(error=(9, message))
        else:
            self.operation.finish(self.to_json())
        self.operation.metadata = self.to_json()

    def to_json(self) -> dict[str, Any]:
        succeeded = sum(1 for c in self.exit_codes.values() if c == 0)
        failed = len(self.exit_codes) - succeeded
        out: dict[str, Any] = {
            "name": self.name, "uid": self.id, "job": self.job.name, "createTime": self.create_time,
            "taskCount": self.task_count, "parallelism": self.task_count,
            "runningCount": self.task_count - len(self.exit_codes) if self.start_time else 0,
            "succeededCount": succeeded, "failedCount": failed, "retriedCount": self.retried,
            "logUri": f"file://{self.log_path(0)}",
            "template": {"containers": [{"image": self.job.name,
                                         "env": [{"name": k, "value": v} for k, v in self.env.items()]}]},
        }
        if self.start_time:
            out["startTime"] = self.start_time
        if self.completion_time:
            out["completionTime"] = self.completion_time
            # Completed: CONDITION_FAILED (3) with why, as Cloud Run reports a failed execution; else SUCCEEDED (4)
            out["conditions"] = [{"type": "Completed", "state": 3 if self.failure else 4,
                                  "message": (self.failure or "").split(". Log tail:")[0],
                                  "lastTransitionTime": self.completion_time}]
        return out


# --------------------------------------------------------------------------------------------
# Services, revisions and the router
# --------------------------------------------------------------------------------------------
class Revision:
    def __init__(self, runtime: "Runtime", service: "ServiceState", name: str, template: dict[str, Any]) -> None:
        self.runtime = runtime
        self.service = service
        self.name = name
        self.template = template
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = threading.Event()
        self.error: str | None = None
        self.lifecycle = threading.RLock()   # start and stop never interleave
        self.watchdog: memory.Watchdog | None = None
        self.wanted_at = 0.0                 # when a deployment last chose it to take traffic

    @property
    def log_path(self) -> Path:
        return self.runtime.home / "logs" / "revisions" / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        with self.lifecycle:   # waits for a stop in progress to finish, then starts afresh
            self._start()

    def _start(self) -> None:
        if self.running:
            return
        container = (self.template.get("containers") or [{}])[0]
        definition = self.runtime.service_definition(container.get("image", ""))
        self.port = free_port()
        self.ready.clear()
        self.error = None
        env = {**os.environ, **{e["name"]: e.get("value", "") for e in container.get("env", [])},
               "PORT": str(self.port), "HOST": "127.0.0.1", "K_SERVICE": self.service.id,
               "K_REVISION": self.name, "K_CONFIGURATION": self.service.id}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(_resolve(definition.command), cwd=ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        asked = ((container.get("resources") or {}).get("limits") or {}).get("memory")   # the template's, if set
        limit = self.runtime.memory_limit(definition.name, asked or definition.memory)
        self.watchdog = memory.Watchdog(self.proc.pid, limit)   # an instance over its limit is stopped, and
        threading.Thread(target=self._report_memory, args=(self.proc, self.watchdog), daemon=True).start()
        threading.Thread(target=self._wait_ready, args=(definition.health_path,), daemon=True).start()

    def _report_memory(self, proc: subprocess.Popen[bytes], watchdog: memory.Watchdog) -> None:
        """Write Cloud Run's message into the revision's log when its instance was stopped over its limit."""
        proc.wait()
        watchdog.stop()
        if watchdog.exceeded:
            with self.log_path.open("a") as log:
                log.write(f"\n[local cloud run] instance stopped: {watchdog.message}\n")

    def _wait_ready(self, health_path: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                self.error = (f"Revision {self.name} exited with code {self.proc.returncode if self.proc else '?'} "
                              f"before it was ready. Log tail:\n{_tail(self.log_path)}")
                break
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", health_path)
                if conn.getresponse().status == 200:
                    self.ready.set()
                    return
            except OSError:
                pass
            time.sleep(0.1)
        else:
            self.error = f"Revision {self.name} was not ready within {READY_TIMEOUT:.0f}s"
            self.stop(grace=0)
        self.ready.set()   # wake waiters; `error` says it failed

    def to_json(self) -> dict[str, Any]:
        return {"name": f"{self.service.name}/revisions/{self.name}", "uid": self.name,
                "service": self.service.name, "containers": self.template.get("containers") or [],
                "serviceAccount": self.template.get("serviceAccount", "")}

    def stop(self, grace: float = 30.0, unless_wanted_since: float | None = None) -> None:
        with self.lifecycle:
            if unless_wanted_since is not None and self.wanted_at >= unless_wanted_since:
                return   # a deployment routed traffic back to it after it was drained
            self._stop(grace)

    def _stop(self, grace: float) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        self.ready.clear()
        proc.send_signal(signal.SIGTERM)  # gunicorn: finish in-flight requests, then exit
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RouterHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body are separate writes: no 40 ms delayed-ACK stall
    server: "RouterServer"
    _HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}

    def log_message(self, *args: Any) -> None:  # quiet: the revisions log requests themselves
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        revision = self.server.service.pick()
        if revision is None:
            return self._reply(503, {"error": "no ready revision serves this service"})
        if not revision.running or not revision.ready.is_set():   # restored by `up`: a cold start on demand
            revision.start()
            revision.ready.wait(READY_TIMEOUT)
            if revision.error:
                return self._reply(503, {"error": f"revision {revision.name} could not start: {revision.error}"})
        headers = {k: v for k, v in self.headers.items() if k.lower() not in self._HOP}
        try:
            conn = http.client.HTTPConnection("127.0.0.1", revision.port, timeout=120)
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except OSError as exc:
            return self._reply(502, {"error": f"revision {revision.name} unreachable: {exc}"})
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in self._HOP and key.lower() not in ("content-length", "server", "date"):
                self.send_header(key, value)
        self.send_header("X-Serving-Revision", revision.name)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward


class RouterServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, service: "ServiceState") -> None:
        self.service = service
        super().__init__(("127.0.0.1", port), RouterHandler)


class ServiceState:
    def __init__(self, runtime: "Runtime", service_id: str, port: int) -> None:
        self.runtime = runtime
        self.id = service_id
        self.name = f"{runtime.parent}/services/{service_id}"
        self.uid = str(uuid.uuid4())
        self.port = port
        self.generation = 0
        self.template: dict[str, Any] = {}
        self.traffic: list[dict[str, Any]] = []
        self.revisions: dict[str, Revision] = {}
        self.latest_created: str | None = None
        self.latest_ready: str | None = None
        self._table: list[tuple[Revision, int]] = []
        self._pick_lock = threading.Lock()
        self._credit: dict[str, int] = {}
        self.router = RouterServer(port, self)
        threading.Thread(target=self.router.serve_forever, daemon=True, name=f"router-{service_id}").start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pick(self) -> Revision | None:
        """Smooth weighted round-robin (as nginx does it): over any 100 consecutive requests each
        revision gets exactly its percentage, interleaved, so a 10% canary sees every tenth request."""
        with self._pick_lock:
            table = self._table
            if not table:
                return None
            best = None
            for i, (revision, weight) in enumerate(table):
                self._credit[revision.name] = self._credit.get(revision.name, 0) + weight
                if best is None or self._credit[revision.name] > self._credit[table[best][0].name]:
                    best = i
            chosen = table[best][0]
            self._credit[chosen.name] -= sum(w for _, w in table)
            return chosen

    def resolved_traffic(self, traffic: list[dict[str, Any]]) -> list[tuple[str, int, str | None]]:
        out = []
        for target in traffic:
            kind = target.get("type", LATEST)
            kind = {"TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST": LATEST,
                    "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION": REVISION}.get(kind, kind)
            revision = self.latest_created if int(kind) == LATEST else target.get("revision")
            if revision not in self.revisions:
                raise ApiError(400, "INVALID_ARGUMENT", f"traffic names unknown revision {revision!r}")
            out.append((revision, int(target.get("percent", 0)), target.get("tag")))
        if out and sum(p for _, p, _ in out) != 100:
            raise ApiError(400, "INVALID_ARGUMENT", "traffic percentages must add up to 100")
        return out

    def apply_traffic(self) -> None:
        """Route to the traffic targets; revisions left without traffic are drained, then stopped."""
        resolved = self.resolved_traffic(self.traffic)
        with self._pick_lock:
            self._table = [(self.revisions[r], p) for r, p, _ in resolved if p > 0]
            self._credit = {}
        serving = {r for r, p, _ in resolved if p > 0}
        for name, revision in self.revisions.items():
            if name not in serving and revision.running:
                # Drained, then stopped, unless a deployment wants it again meanwhile (a quick rollback).
                threading.Timer(DRAIN_SECONDS, revision.stop,
                                kwargs={"unless_wanted_since": time.monotonic()}).start()

    def to_json(self) -> dict[str, Any]:
        statuses = []
        try:
            resolved = self.resolved_traffic(self.traffic)
        except ApiError:
            resolved = []
        for revision, percent, tag in resolved:
            status = {"type": REVISION, "revision": revision, "percent": percent}
            if tag:
                status.update(tag=tag, uri=self.uri)
            statuses.append(status)
        out = {"name": self.name, "uid": self.uid, "generation": str(self.generation),
               "observedGeneration": str(self.generation), "uri": self.uri, "urls": [self.uri],
               "template": self.template, "traffic": self.traffic, "trafficStatuses": statuses,
               "reconciling": False}
        if self.latest_created:
            out["latestCreatedRevision"] = f"{self.name}/revisions/{self.latest_created}"
        if self.latest_ready:
            out["latestReadyRevision"] = f"{self.name}/revisions/{self.latest_ready}"
        return out

    def persisted(self) -> dict[str, Any]:
        return {"uid": self.uid, "port": self.port, "generation": self.generation, "template": self.template,
                "traffic": self.traffic, "latest_created": self.latest_created, "latest_ready": self.latest_ready,
                "revisions": {n: r.template for n, r in self.revisions.items()}}


# --------------------------------------------------------------------------------------------
# The runtime and the REST surface
# --------------------------------------------------------------------------------------------
class Runtime:
    def __init__(self, home: Path, project: str, region: str, topology: topo.Topology) -> None:
        self.home = home
        self.project = project
        self.region = region
        self.topology = topology
        self.parent = f"projects/{project}/locations/{region}"
        self.lock = threading.RLock()
        self.operations: dict[str, Operation] = {}
        self.executions: dict[str, Execution] = {}
        self.services: dict[str, ServiceState] = {}
        self.state_file = home / "cloudrun" / "services.json"

    # -- persistence ------------------------------------------------------------------------
    def save(self) -> None:
        with self.lock:
            data = {sid: s.persisted() for sid, s in self.services.items()}
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.state_file)

    def restore(self) -> None:
        if not self.state_file.exists():
            return
        for sid, saved in json.loads(self.state_file.read_text()).items():
            try:
                service = ServiceState(self, sid, saved["port"])
            except OSError:
                service = ServiceState(self, sid, free_port())
            service.uid, service.generation = saved["uid"], saved["generation"]
            service.template, service.traffic = saved["template"], saved["traffic"]
            service.latest_created, service.latest_ready = saved["latest_created"], saved["latest_ready"]
            for name, template in saved["revisions"].items():
                service.revisions[name] = Revision(self, service, name, template)
            self.services[sid] = service
            # Routed now, started on their first request (a cold start, as Cloud Run scales from zero):
            # `up` does not load every model the services ever served at once.
            service.apply_traffic()

    # -- lookups ----------------------------------------------------------------------------
    def memory_limit(self, workload: str, declared: str) -> int:
        """A job's or service's memory limit in bytes: topology.yaml's, unless ``<home>/cloudrun/limits.json``
        sets another (``{"trainer": "512Mi"}``: what `gcloud run jobs update --memory` does on Google Cloud)."""
        path = self.home / "cloudrun" / "limits.json"
        overrides = json.loads(path.read_text()) if path.exists() else {}
        return topo.memory_bytes(str(overrides.get(workload, declared)))

    def service_definition(self, image: str) -> topo.Service:
        base = re.split(r"[:@]", image.rsplit("/", 1)[-1])[0]
        if base not in self.topology.services:
            raise ApiError(400, "INVALID_ARGUMENT",
                           f"image {image!r} does not name a service of the topology "
                           f"({', '.join(self.topology.services)})")
        return self.topology.services[base]

    def check_parent(self, project: str, location: str) -> None:
        if project != self.project or location != self.region:
            raise ApiError(404, "NOT_FOUND", f"projects/{project}/locations/{location} is not this local cloud "
                                             f"({self.parent})")

    # -- jobs -------------------------------------------------------------------------------
    def run_job(self, job_name: str, body: dict[str, Any]) -> Operation:
        job = self.topology.jobs.get(job_name)
        if job is None:
            raise ApiError(404, "NOT_FOUND", f"job {self.parent}/jobs/{job_name} does not exist")
        overrides = body.get("overrides") or {}
        env: dict[str, str] = {}
        for container in overrides.get("containerOverrides") or []:
            env.update({e["name"]: e.get("value", "") for e in container.get("env") or []})
        timeout = float(str(overrides.get("timeout") or f"{job.timeout_seconds}s").rstrip("s"))
        execution = Execution(self, job, env, int(overrides.get("taskCount") or 1), timeout)
        with self.lock:
            self.executions[execution.name] = execution
            self.operations[execution.operation.name] = execution.operation
        execution.start()
        return execution.operation

    def get_job(self, job_name: str) -> dict[str, Any]:
        job = self.topology.jobs.get(job_name)
        if job is None:
            raise ApiError(404, "NOT_FOUND", f"job {self.parent}/jobs/{job_name} does not exist")
        return {"name": f"{self.parent}/jobs/{job_name}", "uid": job_name,
                "template": {"taskCount": 1, "template": {"containers": [{"image": job_name}],
                                                          "timeout": f"{job.timeout_seconds}s",
                                                          "maxRetries": job.max_retries}}}

    def get_execution(self, name: str) -> dict[str, Any]:
        execution = self.executions.get(name)
        if execution is None:
            raise ApiError(404, "NOT_FOUND", f"execution {name} does not exist (executions do not survive a "
                                             "restart of the local cloud)")
        return execution.to_json()

    # -- services ---------------------------------------------------------------------------
    def get_service(self, service_id: str) -> dict[str, Any]:
        service = self.services.get(service_id)
        if service is None:
            raise ApiError(404, "NOT_FOUND", f"service {self.parent}/services/{service_id} does not exist")
        return service.to_json()

    def get_revision(self, service_id: str, revision: str) -> dict[str, Any]:
        service = self.services.get(service_id)
        if service is None or revision not in service.revisions:
            raise ApiError(404, "NOT_FOUND", f"revision {self.parent}/services/{service_id}/revisions/{revision} "
                                             "does not exist")
        return service.revisions[revision].to_json()

    def deploy(self, service_id: str, body: dict[str, Any], create: bool) -> Operation:
        with self.lock:
            service = self.services.get(service_id)
            if create and service is not None:
                raise ApiError(409, "ALREADY_EXISTS", f"service {service.name} already exists")
            if not create and service is None:
                raise ApiError(404, "NOT_FOUND", f"service {self.parent}/services/{service_id} does not exist")
            template = body.get("template") or (service.template if service else {})
            containers = template.get("containers") or []
            if not containers or not containers[0].get("image"):
                raise ApiError(400, "INVALID_ARGUMENT", "template.containers[0].image is required")
            self.service_definition(containers[0]["image"])  # fail fast on an unknown image
            if service is None:
                service = ServiceState(self, service_id, free_port())
                self.services[service_id] = service
            service.generation += 1
            name = template.get("revision") or f"{service_id}-{service.generation:05d}-{secrets.token_hex(2)}"
            template = {**template, "revision": name}
            new = name not in service.revisions or service.revisions[name].template != template
            if name in service.revisions and new:
                raise ApiError(409, "ALREADY_EXISTS", f"revision {name} exists with a different template; "
                                                      "name the new revision differently")
            if new:
                service.revisions[name] = Revision(self, service, name, template)
            revision = service.revisions[name]
            service.latest_created = name
            service.template = template
            traffic = body.get("traffic") or [{"type": LATEST, "percent": 100}]
            # Validate before anything starts; then every revision that will take traffic runs
            # (a rollback may route to an older revision that had been stopped).
            targets = [service.revisions[r] for r, p, _ in service.resolved_traffic(traffic) if p > 0]
            # As Cloud Run: an unchanged template makes no revision, so a traffic-only update waits only on the
            # revisions that take traffic, never on a template revision that may not start (nothing routes to it)
            starting = {revision, *targets} if new else set(targets)
            for target in starting:
                target.wanted_at = time.monotonic()
            for target in starting:
                target.start()
            operation = Operation(self.parent, SERVICE_TYPE, service.to_json())
            self.operations[operation.name] = operation
        threading.Thread(target=self._finish_deploy, args=(service, revision if new else None, targets, traffic,
                                                           operation), daemon=True).start()
        return operation

    def _finish_deploy(self, service: ServiceState, revision: Revision | None, targets: list[Revision],
                       traffic: list[dict[str, Any]], operation: Operation) -> None:
        waited = set(targets) | ({revision} if revision is not None else set())
        for one in waited:
            one.ready.wait()
        with self.lock:
            failed = [r for r in waited if r.error]
            if failed:
                operation.finish(error=(9, failed[0].error))   # traffic stays where it was
                return
            if revision is not None:
                service.latest_ready = revision.name
            service.traffic = traffic
            service.apply_traffic()
            self.save()
            operation.finish(service.to_json())
            operation.metadata = service.to_json()

    def stop_all(self) -> None:
        for service in self.services.values():
            service.router.shutdown()
            for revision in service.revisions.values():
                revision.stop(grace=5)
        for execution in self.executions.values():
            for proc in execution.procs:
                if proc.poll() is None:
                    proc.terminate()


def create_app(runtime: Runtime) -> Flask:
    app = Flask("localcloud.runapi")
    parent = r"v2/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    routes: list[tuple[str, re.Pattern[str], Any]] = []

    def route(method: str, pattern: str):  # type: ignore[no-untyped-def]
        def register(fn):  # type: ignore[no-untyped-def]
            routes.append((method, re.compile(f"^{parent}{pattern}$"), fn))
            return fn
        return register

    @route("POST", r"/jobs/(?P<job>[^/:]+):run")
    def run_job(job: str) -> dict[str, Any]:
        return runtime.run_job(job, request.get_json(silent=True) or {}).to_json()

    @route("GET", r"/jobs/(?P<job>[^/:]+)")
    def get_job(job: str) -> dict[str, Any]:
        return runtime.get_job(job)

    @route("GET", r"/jobs/(?P<job>[^/]+)/executions/(?P<execution>[^/]+)")
    def get_execution(job: str, execution: str) -> dict[str, Any]:
        return runtime.get_execution(f"{runtime.parent}/jobs/{job}/executions/{execution}")

    @route("GET", r"/jobs/(?P<job>[^/]+)/executions")
    def list_executions(job: str) -> dict[str, Any]:
        prefix = f"{runtime.parent}/jobs/{job}/executions/"
        found = [e.to_json() for n, e in list(runtime.executions.items()) if n.startswith(prefix)]
        return {"executions": sorted(found, key=lambda e: e["createTime"], reverse=True)}

    @route("GET", r"/operations/(?P<operation>[^/]+)")
    def get_operation(operation: str) -> dict[str, Any]:
        op = runtime.operations.get(f"{runtime.parent}/operations/{operation}")
        if op is None:
            raise ApiError(404, "NOT_FOUND", f"operation {operation} does not exist")
        return op.to_json()

    @route("GET", r"/services/(?P<service>[^/:]+)")
    def get_service(service: str) -> dict[str, Any]:
        return runtime.get_service(service)

    @route("GET", r"/services/(?P<service>[^/:]+)/revisions/(?P<revision>[^/:]+)")
    def get_revision(service: str, revision: str) -> dict[str, Any]:
        return runtime.get_revision(service, revision)

    @route("POST", r"/services")
    def create_service() -> dict[str, Any]:
        service_id = request.args.get("serviceId") or ""
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?", service_id):
            raise ApiError(400, "INVALID_ARGUMENT", f"serviceId {service_id!r} is not a valid Cloud Run service id")
        return runtime.deploy(service_id, request.get_json(silent=True) or {}, create=True).to_json()

    @route("PATCH", r"/services/(?P<service>[^/:]+)")
    def update_service(service: str) -> dict[str, Any]:
        return runtime.deploy(service, request.get_json(silent=True) or {}, create=False).to_json()

    @app.route("/v2/<path:_>", methods=["GET", "POST", "PATCH", "DELETE"])
    def dispatch(_: str) -> Response:
        path = request.path.lstrip("/")
        try:
            for method, pattern, fn in routes:
                match = pattern.match(path)
                if match and request.method == method:
                    args = match.groupdict()
                    runtime.check_parent(args.pop("project"), args.pop("location"))
                    return app.response_class(json.dumps(fn(**args)), mimetype="application/json")
            raise ApiError(404, "NOT_FOUND", f"{request.method} /{path} is not part of the local Cloud Run API")
        except ApiError as exc:
            body = {"error": {"code": exc.code, "status": exc.status, "message": exc.message}}
            return app.response_class(json.dumps(body), status=exc.code, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "services": {s: v.uri for s, v in runtime.services.items()}}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--topology", type=Path, default=topo.DEFAULT_PATH)
    args = parser.parse_args(argv)
    runtime = Runtime(args.home, args.project, args.region, topo.load(args.topology))
    runtime.restore()
    server = make_server("127.0.0.1", args.port, create_app(runtime), threaded=True)

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        runtime.stop_all()


if __name__ == "__main__":
    main()
