"""Local Cloud Run services: each revision a process (the topology's command, with the template's env) held to its
memory limit, behind a router whose URL is the service's and which splits requests between revisions by their
traffic percentages for real; revisions left without traffic drain, then stop."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from localcloud import memory
from localcloud.operations import ApiError, Host
from localcloud.processes import ROOT, free_port, resolve, tail

LATEST, REVISION = 1, 2          # TrafficTargetAllocationType as integers (enum-encoding=int)
DRAIN_SECONDS = float(os.environ.get("LOCALCLOUD_DRAIN_SECONDS", "5"))
READY_TIMEOUT = 180.0


class Revision:
    def __init__(self, runtime: Host, service: "ServiceState", name: str, template: dict[str, Any]) -> None:
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
            self.proc = subprocess.Popen(resolve(definition.command), cwd=ROOT, env=env, stdout=log,
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
                              f"before it was ready. Log tail:\n{tail(self.log_path)}")
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
    def __init__(self, runtime: Host, service_id: str, port: int) -> None:
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
