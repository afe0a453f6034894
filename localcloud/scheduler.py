"""The local Cloud Scheduler: publishes ``{}`` to each topology schedule's topic on its cron (UTC),
as Cloud Scheduler's Pub/Sub targets do on GCP.

    python -m localcloud.scheduler --topology topology.yaml     (PUBSUB_EMULATOR_HOST, GOOGLE_CLOUD_PROJECT set)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import threading

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
    while not stop.is_set():
        now = dt.datetime.now(dt.timezone.utc)
        for name, when in due.items():
            if when <= now:
                schedule = schedules[name]
                data = orjson.dumps(envelope(schedule.topic, schedule=name, at=now.isoformat()))
                publisher.publish(publisher.topic_path(project, schedule.topic), data).result(timeout=30)
                log.info("tick", schedule=name, topic=schedule.topic)
                due[name] = croniter(schedule.schedule, now).get_next(dt.datetime)
        stop.wait(min(max((min(due.values()) - now).total_seconds(), 0.5), 30) if due else 30)


if __name__ == "__main__":
    main()
