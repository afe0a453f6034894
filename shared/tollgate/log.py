"""One structured-logging helper: a JSON object per line on stdout, as Cloud Logging reads it."""

from __future__ import annotations

import datetime as dt
import os
import sys
from typing import Any

import orjson

_TRACE_HEADER = "X-Cloud-Trace-Context"
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}
_config: dict[str, Any] = {"stream": None, "min": 20}


def configure(stream: Any = None, min_severity: str = "INFO") -> None:
    """Where entries go (default stdout) and which: the CLI keeps stdout for its own output."""
    _config.update(stream=stream, min=_LEVELS[min_severity])


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


def trace_field(headers: Any, project: str | None) -> dict[str, str]:
    """The ``logging.googleapis.com/trace`` field for a request that carries a trace header."""
    value = headers.get(_TRACE_HEADER) if headers is not None else None
    if not value or not project:
        return {}
    trace_id = value.split("/", 1)[0]
    return {"logging.googleapis.com/trace": f"projects/{project}/traces/{trace_id}"}
