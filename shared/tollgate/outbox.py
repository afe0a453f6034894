"""The outbox: an event that must follow a committed Firestore transaction is written in that transaction.

A step that moves a run (the validator to `validated`, the trainer to `trained`, ...) must then publish the
event that starts the next step. Publishing after the commit can be cut short by a crash, an out-of-memory
kill or a timeout, and the run would wait forever for an event that never left. So the transaction also
writes the event to ``outbox/{id}``; whoever gets there first publishes it and deletes the document: the
step itself right after its commit, or the reconciler (tollgate.reconciler) on its next pass. An event may
therefore go out twice; every consumer is idempotent (a run moves only from the status it expects).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from tollgate import log
from tollgate.events import Event

if TYPE_CHECKING:
    from tollgate.cloud import Cloud
    from tollgate.cloud.state import State


def publish(cloud: Cloud, state: State, events: list[Event]) -> None:
    """Publish events whose transaction committed, then take them out of the outbox."""
    for event in events:
        cloud.publish(event.topic, event.payload, **event.attributes)
        state.outbox_done(event.id)


def flush(cloud: Cloud, state: State, older_than: dt.timedelta) -> list[str]:
    """Publish what a crashed step left in the outbox (events older than ``older_than``: a step that is
    still running publishes its own); returns their topics."""
    sent = []
    for event in state.outbox(dt.datetime.now(dt.timezone.utc) - older_than):
        cloud.publish(event.topic, event.payload, **event.attributes)
        state.outbox_done(event.id)
        log.info("outbox event published by the reconciler", topic=event.topic, event_id=event.id,
                 run_id=event.payload.get("run_id"))
        sent.append(event.topic)
    return sent
