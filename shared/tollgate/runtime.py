"""What every function shares: one Cloud per instance (built on first event) and one way to
turn a handler's outcome into ack or retry.

Retries are decided on purpose:
- a malformed event or a permanent step failure is logged, recorded and acknowledged
  (retrying cannot fix it, and the Pub/Sub emulator would retry it every second forever);
- any other exception propagates, the function answers 500, and the event comes back.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

from tollgate import events, log, tracing
from tollgate.cloud import Cloud
from tollgate.cloud.state import State
from tollgate.errors import StepFailed
from tollgate.settings import Settings


@functools.lru_cache(maxsize=1)
def cloud() -> Cloud:
    return Cloud(Settings.from_env())


@functools.lru_cache(maxsize=1)
def state() -> State:
    return State(cloud().firestore)


def handle_event(cloud_event: Any, handler: Callable[[events.Message], str]) -> str:
    """Run ``handler`` on the event's Pub/Sub message; what it returns is acknowledged. Its log lines carry the
    event id and the request's trace. Returns "malformed" or "failed" for what is acknowledged unhandled; any
    other exception propagates (the function answers 500 and the event comes back)."""
    message_id = ""
    with log.context(**_request_trace()):
        try:
            message = events.pubsub_message(cloud_event)
            message_id = message.message_id
            run_id = _run_of(message)
            # the run's trace (tollgate.tracing): a span of this function, and the trace field of its log lines
            span = tracing.run_span(os.environ.get("K_SERVICE") or handler.__name__.strip("_"), run_id,
                                    parent=message.attributes.get(tracing.ATTRIBUTE),
                                    **{"messaging.message.id": message_id})
            trace = log.run_trace(os.environ.get("GOOGLE_CLOUD_PROJECT"), run_id)
            with log.context(event_id=message_id, **trace), span:
                outcome = handler(message)
        except events.MalformedEvent as exc:
            log.warning(f"malformed event acknowledged: {exc}", event_id=message_id)
            state().record_rejected_event(message_id, "malformed", {"error": str(exc)})
            return "malformed"
        except StepFailed as exc:
            log.error(f"step failed permanently: {exc}", event_id=message_id)
            return "failed"
        log.info("event handled", event_id=message_id, outcome=outcome)
        return outcome


def _run_of(message: events.Message) -> str | None:
    """The run an event is about (its payload's run id, or the run a GCS notification starts), for its span."""
    try:
        run_id = message.json().get("run_id")
        if isinstance(run_id, str) and run_id:
            return run_id
        obj = events.object_finalized(message)
        return obj.run_id if obj is not None else None
    except events.MalformedEvent:
        return None


def _request_trace() -> dict[str, str]:
    """The Cloud Logging trace of the request that delivered the event (traceparent / X-Cloud-Trace-Context)."""
    from flask import has_request_context, request

    if not has_request_context():
        return {}
    return log.trace_field(request.headers, os.environ.get("GOOGLE_CLOUD_PROJECT"))
