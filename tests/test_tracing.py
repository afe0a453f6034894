"""One trace per run: its id from the run id, parents across processes through traceparent, spans in files."""

from __future__ import annotations

import pytest

from tollgate import log, tracing


@pytest.fixture
def traces(tmp_path, monkeypatch):
    monkeypatch.setenv(tracing.TRACES_ENV, f"file:{tmp_path}")
    tracing._tracer.cache_clear()
    yield tmp_path
    tracing._tracer.cache_clear()


def test_the_trace_id_is_the_one_the_run_logs_carry():
    assert log.run_trace("p", "run-1")[log.TRACE_FIELD] == f"projects/p/traces/{tracing.trace_id('run-1')}"


def test_where_spans_go_by_default():
    assert tracing.destination({}) == "cloud-trace"
    assert tracing.destination({"STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"}) == "off"
    assert tracing.destination({tracing.TRACES_ENV: "file:/x", "STORAGE_EMULATOR_HOST": "h"}) == "file:/x"


def test_spans_chain_across_a_message_and_a_job_environment(traces):
    with tracing.run_span("ingest", "run-a", service="ingest"):
        attributes = tracing.carrier()
    with tracing.run_span("validator", "run-a", parent=attributes[tracing.ATTRIBUTE], service="validator"):
        env = tracing.job_env()
        with tracing.run_span("nested", "run-a"):
            pass
    with tracing.run_span("trainer", "run-a", parent=env[tracing.JOB_ENV], service="trainer"):
        pass
    spans = {s["name"]: s for s in tracing.local_spans(traces, "run-a")}
    assert set(spans) == {"ingest", "validator", "nested", "trainer"}
    assert {s["trace_id"] for s in spans.values()} == {tracing.trace_id("run-a")}
    assert spans["ingest"]["parent_span_id"] is None
    assert spans["validator"]["parent_span_id"] == spans["ingest"]["span_id"]
    assert spans["nested"]["parent_span_id"] == spans["validator"]["span_id"]
    assert spans["trainer"]["parent_span_id"] == spans["validator"]["span_id"]
    assert spans["trainer"]["service"] == "trainer" and spans["ingest"]["attributes"]["tollgate.run_id"] == "run-a"
    assert tracing.carrier() == {}   # outside any span nothing is propagated


def test_a_parent_from_another_trace_is_not_adopted(traces):
    """A message the reconciler re-publishes (its own span, another trace) starts a new root in the run's trace."""
    with tracing.run_span("reconciler", "run-other"):
        foreign = tracing.carrier()[tracing.ATTRIBUTE]
    with tracing.run_span("validator", "run-b", parent=foreign):
        pass
    with tracing.run_span("decider", "run-b", parent="00-garbage"):
        pass
    [validator, decider] = tracing.local_spans(traces, "run-b")
    assert validator["trace_id"] == decider["trace_id"] == tracing.trace_id("run-b")
    assert validator["parent_span_id"] is None and decider["parent_span_id"] is None


def test_a_failing_step_is_recorded_as_an_error_and_raised(traces):
    with pytest.raises(RuntimeError), tracing.run_span("trainer", "run-c"):
        raise RuntimeError("out of memory")
    [span] = tracing.local_spans(traces, "run-c")
    assert span["status"] == "ERROR"


def test_traces_off_or_no_run_records_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(tracing.TRACES_ENV, "off")
    with tracing.run_span("ingest", "run-d") as span:
        assert span is None and tracing.carrier() == {}
    monkeypatch.setenv(tracing.TRACES_ENV, f"file:{tmp_path}")
    with tracing.run_span("tick", None) as span:
        assert span is None
    assert not list(tmp_path.iterdir())
