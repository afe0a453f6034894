"""One OpenTelemetry trace per run, across its functions, jobs and Pub/Sub hops.

A run's trace id is derived from its run id (the first 32 hex digits of its sha256: the id the run's log
lines already carry, tollgate.log.run_trace), so every process that works on a run adds its spans to the same
trace, even one that starts it again after a crash, and `tollgate run show` can name the trace of any run.
Within it, each step's span is the child of the span that caused it: the W3C ``traceparent`` travels as a
Pub/Sub message attribute (set by Cloud.publish) and as the job's ``TRACEPARENT`` environment variable (set by
the launch). A delivery without one (the reconciler re-publishing) starts a new root in the run's trace.

Spans go where ``TOLLGATE_TRACES`` says: ``cloud-trace`` (the default on Google Cloud: Cloud Trace, with the
workload's own identity), ``file:<dir>`` (the local cloud's default: JSON lines, one file per process, which
`tollgate trace RUN_ID` reads), or ``off``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from pathlib import Path
from typing import Any, Iterator

import orjson

from tollgate import log
from tollgate.log import trace_id

TRACES_ENV = "TOLLGATE_TRACES"
ATTRIBUTE = "traceparent"            # on Pub/Sub messages
JOB_ENV = "TRACEPARENT"              # in a job's environment
_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar("tollgate_trace_run", default=None)


def destination(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ if env is None else env)
    default = "off" if env.get("STORAGE_EMULATOR_HOST") else "cloud-trace"
    return env.get(TRACES_ENV) or default


@functools.lru_cache(maxsize=None)
def _tracer(service: str) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class RunTraceIds(RandomIdGenerator):
        """The trace id of the run being traced (a root span in it), else a random one."""

        def generate_trace_id(self) -> int:
            run_id = _RUN.get()
            return int(trace_id(run_id), 16) if run_id else super().generate_trace_id()

    provider = TracerProvider(resource=Resource.create({"service.name": service}), id_generator=RunTraceIds())
    where = destination()
    try:
        if where == "cloud-trace":
            from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter

            provider.add_span_processor(BatchSpanProcessor(CloudTraceSpanExporter(
                project_id=os.environ.get("GOOGLE_CLOUD_PROJECT"))))
        elif where.startswith("file:"):
            provider.add_span_processor(BatchSpanProcessor(FileExporter(Path(where[5:]), service)))
    except Exception as exc:   # no credentials, say: the step runs untraced rather than not at all
        log.warning(f"traces are not exported ({TRACES_ENV}={where}): {type(exc).__name__}: {exc}"[:500])
    _PROVIDERS.append(provider)
    return provider.get_tracer("tollgate")


_PROVIDERS: list[Any] = []


def flush() -> None:
    """Send what is buffered (before a function's answer or a job's exit: neither may outlive it)."""
    for provider in _PROVIDERS:
        provider.force_flush(timeout_millis=5000)


def _service() -> str:
    return os.environ.get("K_SERVICE") or os.environ.get("CLOUD_RUN_JOB") or "tollgate"


@contextlib.contextmanager
def run_span(name: str, run_id: str | None, parent: str | None = None, service: str | None = None,
             **attributes: Any) -> Iterator[Any]:
    """A span of ``run_id``'s trace: the child of ``parent`` (a traceparent) when it belongs to that trace, else
    of the current span when that does, else a new root in it. Without a run id, or with traces off, nothing."""
    if not run_id or destination() == "off":
        yield None
        return
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    wanted = int(trace_id(run_id), 16)
    ctx = TraceContextTextMapPropagator().extract({ATTRIBUTE: parent}) if parent else None
    if ctx is None or trace.get_current_span(ctx).get_span_context().trace_id != wanted:
        current = trace.get_current_span().get_span_context()
        ctx = None if current.is_valid and current.trace_id == wanted else otel_context.Context()
    token = _RUN.set(run_id)
    try:
        with _tracer(service or _service()).start_as_current_span(
                name, context=ctx, attributes={"tollgate.run_id": run_id,
                                               **{k: v for k, v in attributes.items() if v is not None}}) as span:
            yield span
    finally:
        _RUN.reset(token)
        flush()


def carrier() -> dict[str, str]:
    """``{"traceparent": ...}`` of the current span, for a message's attributes; empty outside a span."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    out: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(out)
    return out


def job_env() -> dict[str, str]:
    """The job environment variable that makes a job's span the child of the current one."""
    parent = carrier().get(ATTRIBUTE)
    return {JOB_ENV: parent} if parent else {}


class FileExporter:
    """Spans as JSON lines in ``<folder>/<service>-<pid>.jsonl`` (one writer per file)."""

    def __init__(self, folder: Path, service: str) -> None:
        self.folder, self.service = folder, service

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for span in spans:
            context, parent = span.get_span_context(), span.parent
            lines.append(orjson.dumps({
                "trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}",
                "parent_span_id": f"{parent.span_id:016x}" if parent else None, "name": span.name,
                "service": self.service, "start_ns": span.start_time, "end_ns": span.end_time,
                "status": span.status.status_code.name, "attributes": dict(span.attributes or {}),
            }, default=str))
        with (self.folder / f"{self.service}-{os.getpid()}.jsonl").open("ab") as fh:
            fh.write(b"\n".join(lines) + b"\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def describe(run_id: str, project: str) -> dict[str, Any]:
    """A run's trace as the CLI and the console show it: its id, where it was exported, and its spans (read from
    a local traces folder) or its Cloud Trace link."""
    where = destination()
    found: dict[str, Any] = {"run_id": run_id, "trace_id": trace_id(run_id), "exported_to": where}
    if where.startswith("file:"):
        found["spans"] = local_spans(Path(where[5:]), run_id)
    elif where == "cloud-trace":
        found["url"] = f"https://console.cloud.google.com/traces/list?project={project}&tid={found['trace_id']}"
    return found


def tree(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(depth, span) in depth-first order, each span under its parent (a span whose parent was not recorded is
    a root), siblings by start."""
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in sorted(spans, key=lambda s: s["start_ns"]):
        children.setdefault(s["parent_span_id"] if s["parent_span_id"] in ids else None, []).append(s)
    out: list[tuple[int, dict[str, Any]]] = []
    stack = [(0, s) for s in reversed(children.get(None, []))]
    while stack:
        depth, span = stack.pop()
        out.append((depth, span))
        stack.extend((depth + 1, c) for c in reversed(children.get(span["span_id"], [])))
    return out


def local_spans(folder: Path, run_id: str) -> list[dict[str, Any]]:
    """The spans of a run's trace in a local traces folder, oldest first."""
    wanted = trace_id(run_id)
    spans = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        for line in path.read_bytes().splitlines():
            if line.strip():
                span = orjson.loads(line)
                if span.get("trace_id") == wanted:
                    spans.append(span)
    return sorted(spans, key=lambda s: s["start_ns"])
