"""The Cloud Run Admin API's long-running operations and errors, as the local Cloud Run answers them, and what its
jobs and services ask of the runtime that holds them."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any, Protocol

from tollgate import topology as topo

EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"
SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"


def now() -> str:
    """Now as the API writes times (RFC 3339, UTC, ``Z``)."""
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


class Host(Protocol):
    """What an execution or a service needs of the runtime that holds it (localcloud.runapi.Runtime)."""
    home: Path
    parent: str

    def memory_limit(self, workload: str, declared: str) -> int: ...

    def service_definition(self, image: str) -> topo.Service: ...


class ApiError(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


class Operation:
    def __init__(self, parent: str, metadata_type: str, metadata: dict[str, Any]) -> None:
        self.name = f"{parent}/operations/{uuid.uuid4()}"
        self.metadata_type = metadata_type
        self.metadata = metadata
        self.done = False
        self.response: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None

    def finish(self, response: dict[str, Any] | None = None, error: tuple[int, str] | None = None) -> None:
        if error:
            self.error = {"code": error[0], "message": error[1]}
        else:
            self.response = response
        self.done = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "done": self.done,
                               "metadata": {"@type": self.metadata_type, **self.metadata}}
        if self.done and self.error:
            out["error"] = self.error
        elif self.done:
            out["response"] = {"@type": self.metadata_type, **(self.response or {})}
        return out
