"""The one topology file: consistent, and every declared function and job has its code."""

import pytest

from tollgate import topology
from tollgate.topology import ROOT


def test_shipped_topology_is_consistent():
    topo = topology.load()
    assert {"data-arrived", "data-validated", "model-trained", "model-evaluated", "model-decided"} <= set(topo.topics)
    assert {"validator", "trainer", "evaluator"} <= set(topo.jobs)
    assert "predictor" in topo.services
    assert topo.functions["ingest"].trigger_topic == "data-arrived"
    assert topo.functions["decider"].trigger_topic == "model-evaluated"
    for job in topo.jobs.values():
        assert (ROOT / job.source / "main.py").is_file()


def test_unknown_trigger_topic_is_refused(tmp_path):
    (tmp_path / "t.yaml").write_text(
        "topics: {a: {}}\nfunctions:\n  f: {source: functions/ingest, entry_point: x, trigger_topic: b}\n")
    with pytest.raises(topology.TopologyError, match="unknown topic 'b'"):
        topology.load(tmp_path / "t.yaml")


def test_http_functions_and_schedules(tmp_path):
    topo = topology.load()
    assert topo.functions["review"].http and not topo.functions["decider"].http
    assert topo.schedules["review-expiry"].topic == "review-tick"
    (tmp_path / "t.yaml").write_text(
        "topics: {a: {}}\nfunctions:\n  f: {source: functions/ingest, entry_point: x, trigger: http, "
        "trigger_topic: a}\n")
    with pytest.raises(topology.TopologyError, match="either"):
        topology.load(tmp_path / "t.yaml")
    (tmp_path / "t.yaml").write_text("topics: {a: {}}\nschedules:\n  s: {schedule: '*/5 * * *', topic: a}\n")
    with pytest.raises(topology.TopologyError, match="5-field cron"):
        topology.load(tmp_path / "t.yaml")
