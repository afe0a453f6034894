"""The local cloud: Google's Pub/Sub and Firestore emulators, fake-gcs-server, the local Cloud Run
Admin API, and every function of the topology under functions-framework, fed by push
subscriptions exactly as terraform feeds them on GCP (a push subscription per function).

Each part runs as its own process group (the gcloud emulators are a Python wrapper with a Java
child), recorded in ``<home>/state.json`` so that ``down`` stops exactly what ``up`` started.
Data lives in ``<home>``: the bucket on disk, Firestore exported on ``down`` and imported on ``up``
(the emulator's --export-on-exit is broken), Cloud Run services in a JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import requests

from localcloud import processes, seeding
from localcloud.prerequisites import check_prerequisites, fake_gcs_binary
from localcloud.processes import LocalCloudError, Part, code_version, free_port, port_open
from localcloud.seeding import export_firestore
from tollgate import topology as topo

__all__ = ["LocalCloud", "LocalCloudError", "check_prerequisites", "code_version", "export_firestore", "free_port"]

ROOT = topo.ROOT
DEFAULT_HOME = ROOT / ".tollgate"
DEFAULT_PROJECT = "tollgate-local"
DEFAULT_REGION = "us-central1"
DEFAULT_BUCKET = "tollgate-local-data"
# The MLflow tracking server `up --mlflow` starts, from its own venv (`make mlflow`: localcloud/mlflow-server.txt).
MLFLOW_SERVER = ROOT / ".tools" / "mlflow" / "bin" / "mlflow"
NOTIFICATION_TOPIC = "data-arrived"


class LocalCloud:
    def __init__(self, home: Path | str = DEFAULT_HOME, project: str = DEFAULT_PROJECT,
                 region: str = DEFAULT_REGION, bucket: str = DEFAULT_BUCKET,
                 topology_path: Path = topo.DEFAULT_PATH, specs_dir: Path | None = ROOT / "datasets",
                 echo: Callable[[str], None] = print, paused_schedules: tuple[str, ...] = (),
                 mlflow: bool = False) -> None:
        self.home = Path(home).resolve()
        self.paused_schedules = paused_schedules   # e.g. ("monitor",): tests tick it themselves
        self.project, self.region, self.bucket = project, region, bucket
        self.topology_path = topology_path
        self.topology = topo.load(topology_path)
        self.specs_dir = specs_dir
        self.echo = echo
        self.state_file = self.home / "state.json"
        self._code_version: str | None = None   # what its functions and jobs record: read once, at `up`
        self.parts: dict[str, Part] = {}
        self.ports: dict[str, int] = {}
        self.issuer: dict[str, str] | None = None   # the key that signs reviewers' ID tokens (tollgate.identity)
        self.feedback_key: str | None = None   # signs the predictors' request ids (TOLLGATE_FEEDBACK_KEY)
        self.console_secret: str | None = None  # signs the console's CSRF tokens
        self.mlflow = mlflow   # also run an MLflow tracking server, the deployment's TOLLGATE_MLFLOW_URI

    # -- state ---------------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {}
        return json.loads(self.state_file.read_text())

    def _save_state(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        data = {"project": self.project, "region": self.region, "bucket": self.bucket, "ports": self.ports,
                "issuer": self.issuer, "feedback_key": self.feedback_key,
                "console_secret": self.console_secret, "code_version": self._code_version, "mlflow": self.mlflow,
                "parts": {n: dataclasses.asdict(p) for n, p in self.parts.items()}, "env": self.env()}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.state_file)

    def env(self) -> dict[str, str]:
        """The variables that point Google's clients (and Tollgate) at this local cloud."""
        p = self.ports
        env = {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "TOLLGATE_REGION": self.region,
            "TOLLGATE_BUCKET": self.bucket,
            "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{p['pubsub']}",
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{p['firestore']}",
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{p['storage']}",
            "CLOUD_RUN_API_ENDPOINT": f"http://127.0.0.1:{p['cloudrun']}",
            "TOLLGATE_HOME": str(self.home),
            "TOLLGATE_CODE_VERSION": self.code_version,
            "TOLLGATE_TRACES": f"file:{self.home / 'traces'}",   # each run's spans (`tollgate trace RUN_ID`)
            "TOLLGATE_EGRESS_ALLOW": "127.0.0.1/32",   # its MLflow and webhook receivers listen on loopback
        }
        if self.issuer:   # reviewers' ID tokens are signed by the local cloud and verified as Google's are on GCP
            env["TOLLGATE_IDENTITY"] = "local"
            env["TOLLGATE_LOCAL_ISSUER_KEYS"] = json.dumps(self.issuer["public_keys"])
        if "function:review" in p:
            env["TOLLGATE_REVIEW_URL"] = f"http://127.0.0.1:{p['function:review']}"
        if "console" in p:
            env["TOLLGATE_CONSOLE_URL"] = f"http://127.0.0.1:{p['console']}"
        if "mlflow" in p:
            env["TOLLGATE_MLFLOW_URI"] = f"http://127.0.0.1:{p['mlflow']}"
        return env

    def gcloud_env(self) -> dict[str, str]:
        """Settings for Google's own CLI (`gcloud storage cp`) against the local bucket."""
        return {
            "CLOUDSDK_CORE_PROJECT": self.project,
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": f"http://127.0.0.1:{self.ports['storage']}/",
            "CLOUDSDK_STORAGE_PARALLEL_COMPOSITE_UPLOAD_ENABLED": "False",
        }

    def running(self) -> bool:
        """True if a previous `up` left every part alive."""
        state = self._load_state()
        if not state.get("parts"):
            return False
        parts = {n: Part(**p) for n, p in state["parts"].items()}
        return all(p.alive() for p in parts.values())

    def attach(self) -> "LocalCloud":
        """Adopt the ports and processes of a running local cloud."""
        state = self._load_state()
        self.ports = dict(state.get("ports", {}))
        self.parts = {n: Part(**p) for n, p in state.get("parts", {}).items()}
        self.project, self.region, self.bucket = state["project"], state["region"], state["bucket"]
        self.issuer = state.get("issuer")
        self.console_secret = state.get("console_secret")
        self.feedback_key = state.get("feedback_key")
        self._code_version = state.get("code_version")
        self.mlflow = bool(state.get("mlflow")) or self.mlflow
        return self

    def local_issuer(self) -> Any:
        """What signs the local reviewers' ID tokens (``tollgate review token``): an ``identity.LocalIssuer``."""
        from tollgate import identity

        if not self.issuer:
            raise LocalCloudError("the local cloud has no token issuer yet: start it with `make up`")
        return identity.LocalIssuer(self.issuer["private_pem"], self.issuer["key_id"])

    @property
    def code_version(self) -> str:
        """The commit its parts were started from (``-dirty`` with changes), as the image tag on GCP; git is asked
        once, by `up`, not by every command that attaches."""
        if self._code_version is None:
            self._code_version = code_version()
        return self._code_version

    # -- processes -----------------------------------------------------------------------------
    def _start(self, name: str, command: list[str], port: int, env: dict[str, str] | None = None,
               cwd: Path = ROOT) -> Part:
        part = processes.start(name, command, port, self.home / "logs" / f"{name}.log", env, cwd)
        self.parts[name] = part
        self._save_state()
        return part

    # -- up / down -----------------------------------------------------------------------------
    def up(self) -> "LocalCloud":
        """Start everything (idempotent: a running local cloud is reused) and wait until it answers."""
        if self.running():
            wanted = self.mlflow
            self.attach()
            if wanted and "mlflow" not in self.ports:
                raise LocalCloudError("the local cloud is running without MLflow: `make down`, then `tollgate up "
                                      "--mlflow`")
            self.echo(f"local cloud already running ({self.home})")
            self._upload_specs()   # a dataset spec added to datasets/ since is there too (existing ones kept)
            self._create_predictors()
            return self
        if self._load_state().get("parts"):
            wanted = self.mlflow
            self.attach()
            self.mlflow = self.mlflow or wanted
            self.restart_dead()
            return self
        self.specs()   # a spec that would be refused later stops `up` before anything starts
        check_prerequisites()
        self.home.mkdir(parents=True, exist_ok=True)
        saved = self._load_state()
        self.ports = self._allocate_ports(saved.get("ports", {}))
        self.issuer = saved.get("issuer") or _new_issuer()
        self.feedback_key = saved.get("feedback_key") or secrets.token_urlsafe(32)
        self.console_secret = saved.get("console_secret") or secrets.token_urlsafe(32)
        self._code_version = code_version()   # this `up`'s code, whatever an earlier one recorded
        self.mlflow = self.mlflow or bool(saved.get("mlflow"))
        started = time.monotonic()
        try:
            self._start_emulators()
            self._start_mlflow()
            self._start_storage()
            self._start_cloudrun()
            self._start_functions()
            self._start_scheduler()
            self._start_console()
            self._upload_specs()
            self._create_predictors()
        except BaseException:
            self.down(export=False)
            raise
        self._save_state()
        self.echo(f"local cloud up in {time.monotonic() - started:.1f}s")
        return self

    def _allocate_ports(self, previous: dict[str, int]) -> dict[str, int]:
        """Every part's port, known before any starts (the env names the review URL), each its own: the
        previous ones again while free, so URLs survive a restart, unless a stale state repeats one."""
        keys = ["pubsub", "firestore", "storage", "cloudrun", "console", *(["mlflow"] if self.mlflow else []),
                *(f"function:{fn}" for fn in self.topology.functions)]
        kept: dict[str, int] = {}
        for key in keys:
            port = previous.get(key)
            if port and port not in kept.values() and processes.port_free(port):
                kept[key] = port
        return {key: kept.get(key) or free_port(reserve=tuple(kept.values())) for key in keys}

    def restart_dead(self) -> list[str]:
        """Start again only the parts that died, keeping every other one and its data (never a Firestore that is
        alive: its memory is the state). A dead Firestore comes back from its latest export — taken at every
        `down` and every few minutes by the scheduler — and says so; a dead Pub/Sub gets its topics and
        subscriptions again (messages in flight are redelivered by the reconciler)."""
        dead = [name for name, part in self.parts.items() if not part.alive()]
        if not dead:
            return []
        self.echo(f"part of the local cloud had stopped ({', '.join(dead)}); restarting only that, keeping the rest "
                  "and its data")
        self._code_version = self._code_version or code_version()
        if "firestore" in dead:
            export = self._firestore_export()
            self.echo("warning: Firestore had stopped, and an emulator keeps its data in memory: "
                      + (f"it restarts from its export of {time.ctime(export.stat().st_mtime)}; later runs are lost"
                         if export else "no export existed; it restarts empty"))
        try:
            if "pubsub" in dead:
                self._start_pubsub()
            if "firestore" in dead:
                self._start_firestore()
            if "pubsub" in dead:
                self._create_topics()
            if "mlflow" in dead:
                self._start_mlflow()
            if "storage" in dead:
                self._start_storage()
            if "cloudrun" in dead:
                self._start_cloudrun()
            functions = [fn for fn in self.topology.functions if f"function-{fn}" in dead]
            if functions or "pubsub" in dead:
                self._start_functions(functions, subscribe="pubsub" in dead)
            if "scheduler" in dead:
                self._start_scheduler()
            if "console" in dead:
                self._start_console()
        finally:
            self._save_state()
        return dead

    def _start_emulators(self) -> None:
        self._start_pubsub()
        self._start_firestore()
        self._create_topics()

    def _start_pubsub(self) -> None:
        pubsub_dir = self.home / "pubsub"
        pubsub_dir.mkdir(parents=True, exist_ok=True)
        pubsub = self._start("pubsub", ["gcloud", "beta", "emulators", "pubsub", "start",
                                        f"--host-port=127.0.0.1:{self.ports['pubsub']}",
                                        f"--project={self.project}", f"--data-dir={pubsub_dir}", "--quiet"],
                             self.ports["pubsub"])
        processes.wait_ready(pubsub, processes.http_ok(f"http://127.0.0.1:{self.ports['pubsub']}/v1/projects/{self.project}/topics"))

    def _start_firestore(self) -> None:
        command = ["gcloud", "emulators", "firestore", "start", f"--host-port=127.0.0.1:{self.ports['firestore']}",
                   "--quiet"]
        export = self._firestore_export()
        if export is not None:
            command.append(f"--import-data={export}")
        firestore = self._start("firestore", command, self.ports["firestore"])
        processes.wait_ready(firestore, processes.http_ok(f"http://127.0.0.1:{self.ports['firestore']}/"))

    def _create_topics(self) -> None:
        seeding.create_topics(self)

    def _firestore_export(self) -> Path | None:
        return seeding.latest_export(self.home)

    def _start_mlflow(self) -> None:
        """An MLflow tracking server (SQLite, artifacts proxied into the local cloud's folder) on 127.0.0.1,
        which the tracking function mirrors into, as an existing MLflow would be on Google Cloud."""
        if not self.mlflow:
            return
        if not MLFLOW_SERVER.exists():
            raise LocalCloudError(f"MLflow's server is not installed ({MLFLOW_SERVER}): run `make mlflow`")
        home = self.home / "mlflow"
        home.mkdir(parents=True, exist_ok=True)
        port = self.ports["mlflow"]
        part = self._start("mlflow", [str(MLFLOW_SERVER), "server", "--host", "127.0.0.1", "--port", str(port),
                                      "--workers", "1", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
                                      "--artifacts-destination", str(home / "artifacts")], port)
        processes.wait_ready(part, processes.http_ok(f"http://127.0.0.1:{port}/health"), timeout=120)

    def _start_storage(self) -> None:
        root = self.home / "storage"
        (root / self.bucket).mkdir(parents=True, exist_ok=True)
        part = self._start("storage", [str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1",
                                       "-port", str(self.ports["storage"]), "-backend", "filesystem",
                                       "-filesystem-root", str(root),
                                       "-public-host", f"127.0.0.1:{self.ports['storage']}",
                                       "-external-url", f"http://127.0.0.1:{self.ports['storage']}",
                                       "-event.pubsub-project-id", self.project,
                                       "-event.pubsub-topic", NOTIFICATION_TOPIC,
                                       "-event.bucket", self.bucket, "-event.object-prefix", "incoming/"],
                           self.ports["storage"], env={"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{self.ports['pubsub']}"})
        processes.wait_ready(part, processes.http_ok(f"http://127.0.0.1:{self.ports['storage']}/storage/v1/b"))

    def _start_cloudrun(self) -> None:
        part = self._start("cloudrun", [sys.executable, "-m", "localcloud.runapi", "--home", str(self.home),
                                        "--port", str(self.ports["cloudrun"]), "--project", self.project,
                                        "--region", self.region, "--topology", str(self.topology_path)],
                           self.ports["cloudrun"], env={**self.env(), "PYTHONUNBUFFERED": "1",
                                                        # the predictor revisions it runs inherit it, as
                                                        # terraform gives them the Secret Manager secret
                                                        "TOLLGATE_FEEDBACK_KEY": self.feedback_key or ""})
        processes.wait_ready(part, processes.http_ok(f"http://127.0.0.1:{self.ports['cloudrun']}/healthz"))

    def _start_functions(self, names: list[str] | None = None, subscribe: bool = True) -> None:
        """Start the functions (``names``: only those), then (``subscribe``) the push subscriptions of all."""
        ff = Path(sys.executable).parent / "functions-framework"
        parts = []
        for fn in self.topology.functions.values():
            if names is not None and fn.name not in names:
                continue
            port = self.ports[f"function:{fn.name}"]
            env = {**self.env(), **fn.env, "K_SERVICE": fn.name, "PYTHONUNBUFFERED": "1"}
            parts.append(self._start(f"function-{fn.name}",
                                     [str(ff), "--target", fn.entry_point,
                                      "--source", str(ROOT / fn.source / "main.py"),
                                      "--signature-type", "http" if fn.http else "cloudevent",
                                      "--host", "127.0.0.1", "--port", str(port)],
                                     port, env=env))
        for part in parts:
            processes.wait_ready(part, lambda p=part: port_open(p.port))
        if subscribe:
            seeding.subscribe_functions(self)

    def _start_console(self) -> None:
        """The console service (topology `services.console`) as Cloud Run would run it, on 127.0.0.1 only, with
        the local user as its identity (on Google Cloud, IAP's verified header)."""
        service = self.topology.services["console"]
        port = self.ports["console"]
        command = [str(Path(sys.executable).parent / service.command[0]), *service.command[1:]]
        part = self._start("console", command, port, env={
            **self.env(), "PORT": str(port), "HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1",
            "TOLLGATE_CONSOLE_AUTH": "local", "TOLLGATE_CONSOLE_SECRET": self.console_secret or ""})
        processes.wait_ready(part, processes.http_ok(f"http://127.0.0.1:{port}{service.health_path}"))

    def _start_scheduler(self) -> None:
        """Cloud Scheduler's part: publish to each schedule's topic on its cron; and, for the local cloud only,
        export Firestore every few minutes, so that even a Firestore emulator that dies loses little."""
        self._start("scheduler", [sys.executable, "-m", "localcloud.scheduler", "--topology", str(self.topology_path),
                                  *[f"--pause={name}" for name in self.paused_schedules],
                                  "--export-firestore", str(self.home / "firestore-export")],
                    0, env={**self.env(), "PYTHONUNBUFFERED": "1"})

    def specs(self) -> dict[str, Path]:
        """The dataset specs of ``specs_dir`` by name, each checked as `tollgate spec push` checks it."""
        return seeding.checked_specs(self.specs_dir)

    def _upload_specs(self) -> None:
        seeding.upload_specs(self)

    def _create_predictors(self) -> None:
        created = seeding.create_predictors(self)
        if created:
            self.echo(f"predictor services awaiting a first model: {', '.join(created)}")

    def export_firestore(self) -> None:
        export_firestore(f"127.0.0.1:{self.ports['firestore']}", self.project, self.home / "firestore-export")

    def down(self, wipe: bool = False, export: bool = True) -> None:
        """Stop only what `up` started; keep the data unless ``wipe``."""
        if not self.parts:
            self.attach() if self.state_file.exists() else None
        if export and "firestore" in self.parts and self.parts["firestore"].alive():
            if "scheduler" in self.parts:   # its own periodic export must not race this one
                processes.stop([self.parts["scheduler"]])
            try:
                self.export_firestore()
            except requests.RequestException as exc:
                self.echo(f"warning: could not export Firestore ({exc}); runs since the last `up` may be lost")
        # Functions and the Cloud Run API first (they use the emulators), then the emulators.
        emulators = ("pubsub", "firestore", "storage")
        processes.stop([p for n, p in self.parts.items() if n not in emulators])
        processes.stop([p for n, p in self.parts.items() if n in emulators])
        self.parts = {}
        if self.state_file.exists():
            state = self._load_state()
            state["parts"] = {}
            self.state_file.write_text(json.dumps(state, indent=2))
        if wipe:
            shutil.rmtree(self.home, ignore_errors=True)

    def urls(self) -> dict[str, str]:
        out = {
            "storage": f"http://127.0.0.1:{self.ports['storage']}",
            "pubsub": f"127.0.0.1:{self.ports['pubsub']}",
            "firestore": f"127.0.0.1:{self.ports['firestore']}",
            "cloud run api": f"http://127.0.0.1:{self.ports['cloudrun']}",
        }
        if "console" in self.ports:
            out["console"] = f"http://127.0.0.1:{self.ports['console']}"
        if "mlflow" in self.ports:
            out["mlflow"] = f"http://127.0.0.1:{self.ports['mlflow']}"
        for name, fn in self.topology.functions.items():
            out[f"function {name}"] = (f"http://127.0.0.1:{self.ports['function:' + name]}"
                                       + ("  (HTTP; Bearer $(tollgate review token))" if fn.http else ""))
        return out


def _new_issuer() -> dict[str, str]:
    from tollgate import identity

    issuer = identity.LocalIssuer.generate()
    return {"private_pem": issuer.private_pem, "key_id": issuer.key_id, "public_keys": issuer.public_keys()}
