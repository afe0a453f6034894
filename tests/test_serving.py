"""Serving pointers and how each action moves them (pure), the model-decided payload against its
published JSON Schema, and "what served at time T" from a ledger."""

import datetime as dt
import json
from importlib import resources

import jsonschema
import pytest

from tollgate import events, serving
from tollgate.serving import CANARY_ABORT, CANARY_PROMOTE, PROMOTE, ROLLBACK, MoveError, move, traffic

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def apply(ds, action, **kw):
    return {**ds, **move(ds, action, **kw)}


def test_first_promotion_takes_all_traffic_even_with_canary_on():
    ds = apply({}, PROMOTE, version=1, percent=10, run_id="r1", at=T0)
    assert ds["champion_version"] == 1 and ds["previous_version"] is None and ds["canary"] is None
    assert traffic(ds) == [(1, 100)]


def test_promotion_without_canary_moves_champion_to_previous():
    ds = apply({"champion_version": 1}, PROMOTE, version=2)
    assert (ds["champion_version"], ds["previous_version"], traffic(ds)) == (2, 1, [(2, 100)])


def test_canary_lifecycle():
    ds = apply({"champion_version": 1}, PROMOTE, version=2, percent=10, run_id="r2")
    assert ds["champion_version"] == 1 and traffic(ds) == [(1, 90), (2, 10)]
    assert serving.role_of(2, ds) == "canary" and serving.role_of(1, ds) == "champion"
    assert serving.serving_summary(ds) == {"version": 1, "canary": {"version": 2, "percent": 10}}
    # a newer promotion replaces the running canary
    newer = apply(ds, PROMOTE, version=3, percent=10)
    assert traffic(newer) == [(1, 90), (3, 10)]
    aborted = apply(ds, CANARY_ABORT)
    assert traffic(aborted) == [(1, 100)] and aborted["champion_version"] == 1
    promoted = apply(ds, CANARY_PROMOTE)
    assert (promoted["champion_version"], promoted["previous_version"]) == (2, 1)
    assert traffic(promoted) == [(2, 100)] and promoted["serving"]["run_id"] == "r2"
    with pytest.raises(MoveError, match="no canary"):
        move(promoted, CANARY_PROMOTE)
    with pytest.raises(MoveError, match="no canary"):
        move(aborted, CANARY_ABORT)


def test_rollback_is_safe_to_repeat():
    ds = apply(apply({}, PROMOTE, version=1), PROMOTE, version=2)
    target = serving.rollback_target(ds, None)
    assert target == 1
    back = apply(ds, ROLLBACK, version=target)
    assert (back["champion_version"], back["previous_version"]) == (1, 2)
    # repeated: the same target again, and no change at all
    assert serving.rollback_target(back, None) == 1
    assert move(back, ROLLBACK, version=1) == {}
    # --to goes anywhere; a rollback also ends a canary
    canary = apply(back, PROMOTE, version=3, percent=10)
    assert traffic(apply(canary, ROLLBACK, version=1)) == [(1, 100)]
    assert traffic(apply(back, ROLLBACK, version=2)) == [(2, 100)]


def test_rollback_needs_something_to_go_back_to():
    with pytest.raises(MoveError, match="nothing serves"):
        move({}, ROLLBACK, version=1)
    with pytest.raises(MoveError, match="--to VERSION"):
        serving.rollback_target({"champion_version": 1, "previous_version": None}, None)


def entry(event, at, serving, canary=None, before=None, after=None, **extra):
    return {"kind": "decision", "event": event, "verdict": event, "ledger_id": f"id-{event}-{at.minute}",
            "dataset": "d", "run_id": "run-1", "actor": "auto", "reason": f"because {event}", "at": at,
            "challenger_version": after, "champion_before": before, "champion_after": serving,
            "serving_after": {"version": serving, "canary": canary}, **extra}


def test_serving_at_answers_what_served_and_why():
    t = [T0 + dt.timedelta(minutes=m) for m in range(5)]
    ledger = [entry("promote", t[0], 1, before=None, after=1),
              entry("keep", t[1], 1, before=1, after=2),
              entry("promote", t[2], 1, canary={"version": 3, "percent": 10}, before=1, after=3),
              entry("canary-promote", t[3], 3, before=1, after=3),
              entry("rollback", t[4], 1, before=3, after=1)]
    assert serving.serving_at(ledger, t[0] - dt.timedelta(seconds=1)) is None
    mid = serving.serving_at(ledger, t[1] + dt.timedelta(seconds=30))
    assert mid["serving"]["version"] == 1 and mid["since"]["event"] == "promote" and mid["since"]["at"] == t[0]
    trial = serving.serving_at(ledger, t[2])
    assert trial["serving"]["canary"] == {"version": 3, "percent": 10} and trial["canary_since"]["at"] == t[2]
    assert serving.serving_at(ledger, t[3])["since"]["event"] == "canary-promote"
    last = serving.serving_at(ledger, t[4] + dt.timedelta(days=1))
    assert last["serving"]["version"] == 1 and last["since"]["event"] == "rollback"


SCHEMA = json.loads(resources.files("tollgate").joinpath("schemas/model-decided.v1.json").read_text())


def test_model_decided_payloads_match_the_published_schema():
    evaluation = {"metric": "r2", "holdout_rows": 900, "challenger": {"metrics": {"r2": 0.91}},
                  "champion": {"metrics": {"r2": 0.88}},
                  "difference": {"improvement": 0.03, "low": 0.01, "high": 0.05, "confidence": 0.95}}
    decision = entry("promote", T0, 2, before=1, after=2, evaluation=evaluation, drift={"verdict": "warn"})
    deployment = {"uri": "http://x", "traffic": [{"version": 2, "percent": 100, "revision": "predictor-d-v2"}]}
    payload = events.decided_event(decision, deployment)
    jsonschema.validate(payload, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert payload["evaluation"]["challenger"] == 0.91 and payload["at"] == "2026-11-01T00:00:00Z"
    review = {**entry("approved", T0, 2, before=1, after=2), "kind": "review", "verdict": "promote", "actor": "ana"}
    jsonschema.validate(events.decided_event(review), SCHEMA)
    rollback = {**entry("rollback", T0, 1, before=2, after=1), "run_id": None}
    jsonschema.validate(events.decided_event(rollback), SCHEMA)
    with pytest.raises(jsonschema.ValidationError):   # the schema is not a rubber stamp
        jsonschema.validate({**payload, "serving": {"version": "two", "canary": None}}, SCHEMA)


def test_spec_deployment_and_review_settings(taxi_spec):
    from tollgate import spec as specs

    assert taxi_spec.deployment.canary_percent == 0 and taxi_spec.review.expire_after_hours == 72
    raw = {**taxi_spec.raw, "deployment": {"canary_percent": 10}, "review": {"expire_after_hours": 0.5}}
    parsed = specs.from_dict(raw)
    assert parsed.deployment.canary_percent == 10 and parsed.review.expire_after_hours == 0.5
    with pytest.raises(specs.SpecError, match="canary_percent"):
        specs.from_dict({**raw, "deployment": {"canary_percent": 100}})
    with pytest.raises(specs.SpecError, match="expire_after_hours"):
        specs.from_dict({**raw, "review": {"expire_after_hours": 0}})


def test_a_spec_sizes_the_revisions_its_promotions_make():
    """CPU, memory, min and max instances and concurrency from `deployment` in the spec, on the revision template
    (what Cloud Run's Admin API takes); what the spec leaves out is the deployment's (terraform's) own."""
    from google.cloud import run_v2

    from tollgate import spec as specs
    from tollgate.cloud import run as cloudrun

    raw = {"name": "sized", "task": "regression", "target": "y", "columns": {"y": {}, "x": {}},
           "features": {"numeric": ["x"]}, "policy": {"threshold": 0},
           "deployment": {"cpu": "2", "memory": "2Gi", "min_instances": 1, "max_instances": 5, "concurrency": 40}}
    sizing = specs.from_dict(raw).deployment.sizing()
    template = run_v2.RevisionTemplate(containers=[run_v2.Container(
        image="predictor", resources=run_v2.ResourceRequirements(limits={"cpu": "1", "memory": "1Gi"}))])
    cloudrun._size(template, sizing)
    assert dict(template.containers[0].resources.limits) == {"cpu": "2", "memory": "2Gi"}
    assert (template.scaling.min_instance_count, template.scaling.max_instance_count,
            template.max_instance_request_concurrency) == (1, 5, 40)
    partial = specs.from_dict({**raw, "deployment": {"memory": "512Mi"}}).deployment.sizing()
    assert partial == {"memory": "512Mi"}
    with pytest.raises(specs.SpecError, match="min_instances"):
        specs.from_dict({**raw, "deployment": {"min_instances": 3, "max_instances": 2}})
    with pytest.raises(specs.SpecError, match="memory"):
        specs.from_dict({**raw, "deployment": {"memory": "lots"}})
