"""A local Cloud Run Admin API (REST, v2 paths), as the `google-cloud-run` client speaks it: the runtime that holds
the executions (localcloud.jobs) and services (localcloud.services), and the REST surface over it.

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
import json
import re
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.serving import make_server

from localcloud.jobs import Execution
from localcloud.operations import SERVICE_TYPE, ApiError, Operation
from localcloud.processes import free_port
from localcloud.services import LATEST, Revision, ServiceState
from tollgate import topology as topo


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
