"""The topology file (topology.yaml at the repository root): topics, functions, jobs, services."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tollgate import yamlload

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATH = ROOT / "topology.yaml"


class TopologyError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Function:
    name: str
    source: str
    entry_point: str
    trigger_topic: str | None      # None: an HTTP function (`trigger: http`)
    env: dict[str, str]
    publishes: tuple[str, ...] = ()
    deploys_predictor: bool = False
    watches_jobs: bool = False     # reads the jobs' executions (run.viewer on each job)
    mlflow: bool = False           # reads the deployment's MLflow URI (TOLLGATE_MLFLOW_URI, a secret on GCP)

    @property
    def http(self) -> bool:
        return self.trigger_topic is None


@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    source: str
    command: list[str]
    publishes: tuple[str, ...]
    timeout_seconds: int
    deploys_predictor: bool = False
    max_retries: int = 1          # Cloud Run retries of a failed task (terraform's max_retries, the local API's)
    writes: tuple[str, ...] = ()  # bucket prefixes where it may create objects
    updates: tuple[str, ...] = () # bucket prefixes where it may also replace them
    warehouse: str | None = None  # "read": queries the warehouse (BigQuery job user, data viewer of its dataset);
                                  # "prune": also deletes old rows of the log tables (their data editor)
    curated: str | None = None    # "load": loads curated batches into BigQuery (data editor of the curated
                                  # dataset); "read": queries them (data viewer there)
    memory: str = "2Gi"           # the task's memory limit, as Cloud Run's (the local Cloud Run holds it too)

    @property
    def max_attempts(self) -> int:
        """Attempts a task gets: what the job reads as TOLLGATE_MAX_ATTEMPTS to know its last one."""
        return self.max_retries + 1


@dataclasses.dataclass(frozen=True)
class Service:
    name: str
    source: str
    command: list[str]
    health_path: str
    publishes: tuple[str, ...] = ()
    deploys_predictor: bool = False
    memory: str = "1Gi"           # per instance, as Cloud Run's (the local Cloud Run holds it too)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Periodic work: Cloud Scheduler publishes to ``topic`` on the cron ``schedule`` (UTC)."""
    name: str
    schedule: str
    topic: str
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Subscription:
    """A pull subscription a job reads (``reader``); the push subscriptions of functions are implied."""
    name: str
    topic: str
    reader: str
    ack_deadline_seconds: int = 60
    retention: str = "604800s"
    local_only: bool = False      # the local cloud's stand-in for a managed service (terraform skips it)


@dataclasses.dataclass(frozen=True)
class Topology:
    topics: dict[str, dict[str, Any]]
    functions: dict[str, Function]
    jobs: dict[str, Job]
    services: dict[str, Service]
    schedules: dict[str, Schedule] = dataclasses.field(default_factory=dict)
    subscriptions: dict[str, Subscription] = dataclasses.field(default_factory=dict)

    def subscription_name(self, function: str) -> str:
        return f"{function}-push"


def load(path: Path | str = DEFAULT_PATH) -> Topology:
    raw, _ = yamlload.load(Path(path).read_text())
    topics = raw.get("topics") or {}
    functions = {}
    for name, f in (raw.get("functions") or {}).items():
        if (f.get("trigger") == "http") == ("trigger_topic" in f):
            raise TopologyError(f"function {name!r}: set either `trigger_topic: TOPIC` or `trigger: http`")
        functions[name] = Function(name=name, source=f["source"], entry_point=f["entry_point"],
                                   trigger_topic=f.get("trigger_topic"),
                                   env={k: str(v) for k, v in (f.get("env") or {}).items()},
                                   publishes=tuple(f.get("publishes") or ()),
                                   deploys_predictor=bool(f.get("deploys_predictor", False)),
                                   watches_jobs=bool(f.get("watches_jobs", False)),
                                   mlflow=bool(f.get("mlflow", False)))
    schedules = {
        name: Schedule(name=name, schedule=str(s["schedule"]), topic=s["topic"],
                       description=str(s.get("description", "")))
        for name, s in (raw.get("schedules") or {}).items()
    }
    jobs = {
        name: Job(name=name, source=j["source"], command=list(j["command"]),
                  publishes=_topics(j.get("publishes")), timeout_seconds=int(j.get("timeout_seconds", 600)),
                  deploys_predictor=bool(j.get("deploys_predictor", False)),
                  max_retries=int(j.get("max_retries", 1)), writes=tuple(j.get("writes") or ()),
                  updates=tuple(j.get("updates") or ()), warehouse=j.get("warehouse"), curated=j.get("curated"),
                  memory=str(j.get("memory", "2Gi")))
        for name, j in (raw.get("jobs") or {}).items()
    }
    for job in jobs.values():
        if job.warehouse not in (None, "read", "prune"):
            raise TopologyError(f"job {job.name!r}: warehouse: {job.warehouse!r}; a job takes `read`, or `prune` "
                                "to delete old rows too (the tables are written by BigQuery subscriptions)")
        if job.curated not in (None, "load", "read"):
            raise TopologyError(f"job {job.name!r}: curated: {job.curated!r}; a job takes `load` (the validator) "
                                "or `read` (the trainer)")
        for prefix in job.writes + job.updates:
            if not prefix.endswith("/") or prefix.split("/", 1)[0] in ("specs", "incoming", ""):
                raise TopologyError(f"job {job.name!r}: {prefix!r} is not a prefix a job may write (a folder "
                                    "ending in /; specs/ and incoming/ belong to people)")
    for job in jobs.values():
        if not 0 <= job.max_retries <= 10:
            raise TopologyError(f"job {job.name!r}: max_retries {job.max_retries} is not between 0 and 10 "
                                "(Cloud Run's range)")
    services = {
        name: Service(name=name, source=s["source"], command=list(s["command"]),
                      health_path=s.get("health_path", "/health"), publishes=tuple(s.get("publishes") or ()),
                      deploys_predictor=bool(s.get("deploys_predictor", False)), memory=str(s.get("memory", "1Gi")))
        for name, s in (raw.get("services") or {}).items()
    }
    for workload in [*jobs.values(), *services.values()]:
        memory_bytes(workload.memory)   # a quantity Cloud Run takes, or a TopologyError
    for sched in schedules.values():
        if sched.topic not in topics:
            raise TopologyError(f"schedule {sched.name!r} publishes to unknown topic {sched.topic!r}")
        if len(sched.schedule.split()) != 5:
            raise TopologyError(f"schedule {sched.name!r}: {sched.schedule!r} is not a 5-field cron expression")
    for fn in functions.values():
        if not fn.http and fn.trigger_topic not in topics:
            raise TopologyError(f"function {fn.name!r} is triggered by unknown topic {fn.trigger_topic!r}")
        for topic in fn.publishes:
            if topic not in topics:
                raise TopologyError(f"function {fn.name!r} publishes unknown topic {topic!r}")
        if not (ROOT / fn.source / "main.py").is_file():
            raise TopologyError(f"function {fn.name!r}: {fn.source}/main.py does not exist")
    for service in services.values():
        for topic in service.publishes:
            if topic not in topics:
                raise TopologyError(f"service {service.name!r} publishes unknown topic {topic!r}")
    for job in jobs.values():
        for topic in job.publishes:
            if topic not in topics:
                raise TopologyError(f"job {job.name!r} publishes unknown topic {topic!r}")
    subscriptions = {
        name: Subscription(name=name, topic=s["topic"], reader=s["reader"],
                           ack_deadline_seconds=int(s.get("ack_deadline_seconds", 60)),
                           retention=str(s.get("retention", "604800s")),
                           local_only=bool(s.get("local_only", False)))
        for name, s in (raw.get("subscriptions") or {}).items()
    }
    for sub in subscriptions.values():
        if sub.topic not in topics:
            raise TopologyError(f"subscription {sub.name!r} reads unknown topic {sub.topic!r}")
        if sub.reader not in jobs:
            raise TopologyError(f"subscription {sub.name!r}: its reader {sub.reader!r} is not a job")
    return Topology(topics=topics, functions=functions, jobs=jobs, services=services, schedules=schedules,
                    subscriptions=subscriptions)


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}


def memory_bytes(quantity: str) -> int:
    """A Cloud Run memory quantity (``512Mi``, ``2Gi``, ``1G``) in bytes."""
    import re

    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)", str(quantity).strip())
    if not match:
        raise TopologyError(f"memory {quantity!r} is not a quantity such as 512Mi or 2Gi")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _topics(value: Any) -> tuple[str, ...]:
    """A job's `publishes`: one topic or a list of them."""
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)
