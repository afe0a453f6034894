"""The local Cloud Scheduler: publishes ``{}`` to each topology schedule's topic on its cron (UTC),
as Cloud Scheduler's Pub/Sub targets do on GCP. With ``--export-firestore DIR`` it also exports the Firestore
emulator's data there every ``--export-minutes`` (the local cloud's own safeguard: the emulator keeps its data in
memory, and `tollgate up` restarts a dead one from the latest export).

    python -m localcloud.scheduler --topology topology.yaml     (PUBSUB_EMULATOR_HOST, GOOGLE_CLOUD_PROJECT set)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import threading
import time
from pathlib import Path

import orjson
from croniter import croniter
from google.cloud import pubsub_v1

from tollgate import log
from tollgate import topology as topo
from tollgate.events import envelope


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default=str(topo.DEFAULT_PATH))
    parser.add_argument("--pause", action="append", default=[], help="A schedule not to fire (repeatable).")
    parser.add_argument("--export-firestore", help="Export the Firestore emulator's data into this folder.")
    parser.add_argument("--export-minutes", type=float, default=3.0)
    args = parser.parse_args(argv)
    schedules = {n: s for n, s in topo.load(args.topology).schedules.items() if n not in args.pause}
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    publisher = pubsub_v1.PublisherClient()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    now = dt.datetime.now(dt.timezone.utc)
    due = {name: croniter(s.schedule, now).get_next(dt.datetime) for name, s in schedules.items()}
    log.info("scheduler started", schedules={n: d.isoformat() for n, d in due.items()})
    next_export = time.monotonic() + args.export_minutes * 60
    while not stop.is_set():
        now = dt.datetime.now(dt.timezone.utc)
        if args.export_firestore and time.monotonic() >= next_export:
            if not _still_mine(Path(args.export_firestore).parent, project):
                log.info("the local cloud that started this scheduler is gone; stopping")
                return
            _export(args.export_firestore, project)
            next_export = time.monotonic() + args.export_minutes * 60
        for name, when in due.items():
            if when <= now:
                schedule = schedules[name]
                data = orjson.dumps(envelope(schedule.topic, schedule=name, at=now.isoformat()))
                publisher.publish(publisher.topic_path(project, schedule.topic), data).result(timeout=30)
                log.info("tick", schedule=name, topic=schedule.topic)
                due[name] = croniter(schedule.schedule, now).get_next(dt.datetime)
        stop.wait(min(max((min(due.values()) - now).total_seconds(), 0.5), 30) if due else 30)


def _still_mine(home: Path, project: str) -> bool:
    """Whether the local cloud in ``home`` is still the one that started this scheduler (same project, this
    process its scheduler): a scheduler left behind by a killed one must not export into a new one's home."""
    import json

    try:
        state = json.loads((home / "state.json").read_text())
    except (OSError, ValueError):
        return False
    part = (state.get("parts") or {}).get("scheduler") or {}
    return state.get("project") == project and part.get("pid") in (os.getpid(), os.getpgid(0))


def _export(folder: str, project: str) -> None:
    import requests

    from localcloud.cloud import export_firestore

    try:
        export_firestore(os.environ["FIRESTORE_EMULATOR_HOST"], project, Path(folder))
        log.info("firestore exported", folder=folder)
    except (requests.RequestException, OSError) as exc:   # the next export tries again
        log.warning("firestore export failed", error=type(exc).__name__)


if __name__ == "__main__":
    main()
