"""The local cloud's processes: ports handed out once, process groups started, probed, tailed and stopped, and the
job task processes found by their environment. Linux: process groups and /proc."""

from __future__ import annotations

import dataclasses
import os
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

# Processes this Python process started: polled so that exited leaders are reaped, not zombies
# that still count as members of their process group.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_ISSUED: set[int] = set()
_ISSUED_LOCK = threading.Lock()


class LocalCloudError(RuntimeError):
    """The local cloud cannot start; the message says exactly what to do."""


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


def port_free(port: int) -> bool:
    """Free to listen on (servers set SO_REUSEADDR, so connections in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> Callable[[], bool]:
    """A probe: ``url`` answers, with anything but a server error."""
    return lambda: requests.get(url, timeout=1).status_code < 500


def tail(path: Path | str, lines: int = 15) -> str:
    """The last ``lines`` of a log (what an error shows of a process that would not start or failed)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def resolve(command: list[str]) -> list[str]:
    """A topology's container command run with this environment's Python and scripts."""
    head, *rest = command
    if head in ("python", "python3"):
        return [sys.executable, *rest]
    local = Path(sys.executable).parent / head
    return [str(local) if local.exists() else head, *rest]


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


def start(name: str, command: list[str], port: int, log_path: Path, env: dict[str, str] | None = None,
          cwd: Path = ROOT) -> Part:
    """``command`` as its own process group (so that stopping it stops its children: the emulators are a Python
    wrapper with a Java child), its output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    return Part(name=name, pid=proc.pid, port=port, log=str(log_path))


def wait_ready(part: Part, probe: Callable[[], bool], timeout: float = 60) -> None:
    """Until ``probe`` passes; a :class:`LocalCloudError` with the log's tail if the part dies or times out."""
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
    raise LocalCloudError(f"{part.name} did not come up on port {part.port} (log: {part.log}):\n{tail(part.log)}")


def stop(parts: list[Part], grace: float = 15) -> None:
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


class scoped_env:
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
