"""One structured-logging helper: a JSON object per line on stdout, as Cloud Logging reads it.

Every line carries ``severity``, ``message`` and ``time``, the component (the function, job or service), the
fields bound to the current context — a run id, an event id — and, where there is one, the Cloud Logging trace
field, so that Logs Explorer shows a request's or a run's lines together:

- functions and the predictor take the trace from the request (``traceparent`` or ``X-Cloud-Trace-Context``);
- a run's jobs have no request: their trace is derived from the run id (``run_trace``), the same in every job of
  the run.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import hashlib
import os
import sys
from typing import Any, Iterator

import orjson

TRACE_FIELD = "logging.googleapis.com/trace"
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}
_config: dict[str, Any] = {"stream": None, "min": 20}
_bound: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("tollgate_log_fields", default={})


def configure(stream: Any = None, min_severity: str = "INFO") -> None:
    """Where entries go (default stdout) and which: the CLI keeps stdout for its own output."""
    _config.update(stream=stream, min=_LEVELS[min_severity])


def bind(**fields: Any) -> None:
    """Add fields to every later line of this context (a job binds its run id once, for the whole process)."""
    _bound.set({**_bound.get(), **{k: v for k, v in fields.items() if v is not None}})


@contextlib.contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Fields on every line logged inside the block (one event, one request), then as before."""
    token = _bound.set({**_bound.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def log(severity: str, message: str, **fields: Any) -> None:
    """Write one log entry. ``fields`` carry run ids, event ids and any structured detail."""
    if _LEVELS.get(severity.upper(), 40) < _config["min"]:
        return
    entry: dict[str, Any] = {
        "severity": severity.upper(),
        "message": message,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    component = os.environ.get("K_SERVICE") or os.environ.get("CLOUD_RUN_JOB")
    if component:
        entry["component"] = component
    entry.update(_bound.get())
    entry.update({k: v for k, v in fields.items() if v is not None})
    stream = _config["stream"] or sys.stdout
    stream.buffer.write(orjson.dumps(entry, default=str) + b"\n")
    stream.flush()


def info(message: str, **fields: Any) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields: Any) -> None:
    log("ERROR", message, **fields)


def _trace(project: str | None, trace_id: str | None) -> dict[str, str]:
    if not project or not trace_id:
        return {}
    return {TRACE_FIELD: f"projects/{project}/traces/{trace_id}"}


def trace_field(headers: Any, project: str | None) -> dict[str, str]:
    """The trace field for a request that carries a W3C ``traceparent`` (``00-<trace id>-<span>-<flags>``) or
    Google's ``X-Cloud-Trace-Context`` (``<trace id>/<span>;o=1``); empty when it carries neither."""
    if headers is None:
        return {}
    parent = headers.get("traceparent") or ""
    parts = parent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return _trace(project, parts[1])
    value = headers.get("X-Cloud-Trace-Context") or ""
    return _trace(project, value.split("/", 1)[0] or None)


def trace_id(run_id: str) -> str:
    """The 32-hex trace id of a run: the one its log lines carry and its spans share (tollgate.tracing)."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:32]


def run_trace(project: str | None, run_id: str | None) -> dict[str, str]:
    """The trace field of a run's log lines: its trace (tollgate.tracing), a 32-hex id derived from the run id."""
    return _trace(project, trace_id(run_id) if run_id else None)
