"""What a decision, a review outcome or a serving move writes (tollgate.decisions), table-tested without
Firestore: the transactions in cloud/state only apply these writes."""

from __future__ import annotations

import datetime as dt

import pytest

from tollgate import decisions, lifecycle, serving

AT = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)
RUN = {"run_id": "run-1", "status": lifecycle.EVALUATED, "challenger_version": 4, "curated": {"sha256": "abc"}}
SERVING_V3 = {"champion_version": 3, "previous_version": 2, "deployment": {"generation": 7}}


def decide(run=RUN, ds=SERVING_V3, verdict="promote", evaluated_against=3, canary=0, force=False):
    return decisions.decide(run, ds, dataset="taxi", verdict=verdict, reason="better", inputs={"evaluation": {}},
                            evaluated_against=evaluated_against, canary_percent=canary, review_hours=72, force=force,
                            at=AT, ledger_id="L1", run_status=lifecycle.EVALUATED, decided_status=lifecycle.DECIDED)


@pytest.mark.parametrize(("kwargs", "outcome", "champion_after", "canary_after"), [
    ({}, "applied", 4, None),                                                    # promoted: v4 serves
    ({"canary": 10}, "applied", 3, 4),                                           # on trial: v3 keeps 90%
    ({"verdict": "keep"}, "applied", 3, None),                                   # nothing moves
    ({"evaluated_against": 2}, "stale", None, None),                             # judged against another champion
    ({"evaluated_against": 2, "verdict": "review", "force": True}, "applied", 3, None),   # a forced review
    ({"run": {**RUN, "status": lifecycle.DECIDED}}, "duplicate", None, None),   # decided already
    ({"run": None}, "duplicate", None, None),
])
def test_decide(kwargs, outcome, champion_after, canary_after):
    writes = decide(**kwargs)
    assert writes.outcome == outcome
    if outcome != "applied":
        assert (writes.run, writes.dataset, writes.ledger) == (None, None, None)
        return
    assert writes.status == lifecycle.DECIDED and writes.ledger["ledger_id"] == writes.run["ledger_id"] == "L1"
    assert writes.after.get("champion_version") == champion_after
    assert (writes.after.get("canary") or {}).get("version") == canary_after
    entry = writes.ledger
    assert (entry["kind"], entry["actor"], entry["champion_before"], entry["announced"]) == ("decision", "auto", 3,
                                                                                           False)
    assert entry["serving_after"] == serving.serving_summary(writes.after) and entry["evaluation"] == {}
    if kwargs.get("verdict", "promote") == "promote":   # a new deployment generation, pending until Cloud Run follows
        assert writes.dataset["deployment"]["generation"] == 8 and writes.run["deployment"]["status"] == "pending"
    else:
        assert writes.dataset is None and writes.run["deployment"] == {"status": "none"}


def test_a_review_verdict_opens_a_review_until_its_deadline():
    writes = decide(verdict="review")
    assert writes.review_new["status"] == "pending" and writes.review_new["expires_at"] == AT + dt.timedelta(hours=72)
    assert writes.review_new["decision_ledger_id"] == "L1" and writes.run["review"]["status"] == "pending"


REVIEW = {"run_id": "run-1", "dataset": "taxi", "status": "pending", "expires_at": AT + dt.timedelta(hours=1),
          "evaluated_against": 3, "challenger_version": 4, "reason": "severe drift"}


def resolve(action="approve", review=REVIEW, ds=SERVING_V3, at=AT, canary=0):
    return decisions.resolve(review, RUN, ds, action=action, actor="ana", reason="looks right", canary_percent=canary,
                             at=at, ledger_id="L2", reevaluate_status=lifecycle.TRAINED)


@pytest.mark.parametrize(("kwargs", "outcome", "actor", "champion_after", "excluded"), [
    ({}, "approved", "ana", 4, False),
    ({"action": "reject"}, "rejected", "ana", 3, True),               # the batch stays out of later training
    ({"action": "expire"}, "expired", "ana", 3, False),
    ({"at": AT + dt.timedelta(hours=2)}, "expired", "auto", 3, False),   # past the deadline: it can only expire
    ({"ds": {**SERVING_V3, "champion_version": 5}}, "stale", None, None, False),   # the champion moved
    ({"review": {**REVIEW, "status": "rejected"}}, "closed", None, None, False),
    ({"review": None}, "unknown", None, None, False),
])
def test_resolve(kwargs, outcome, actor, champion_after, excluded):
    writes = resolve(**kwargs)
    assert writes.outcome == outcome
    if outcome in ("closed", "unknown"):
        assert (writes.run, writes.review, writes.ledger) == (None, None, None)
        return
    if outcome == "stale":   # back to the evaluator; nothing promoted on stale evidence
        assert writes.status == lifecycle.TRAINED and writes.review["status"] == "stale" and writes.ledger is None
        assert "champion changed from v3 to v5" in writes.review["resolution"]
        return
    assert writes.review["status"] == outcome and writes.review["reviewer"] == actor
    assert writes.ledger["kind"] == "review" and writes.ledger["actor"] == actor
    assert writes.after.get("champion_version") == champion_after
    assert writes.run["decision"] == ("promote" if outcome == "approved" else "keep")
    assert (writes.batch is not None) == excluded
    if excluded:
        excluded_by = {"by": "ana", "reason": "looks right", "run_id": "run-1", "at": AT}
        assert writes.batch == ("abc", {"excluded": excluded_by})


def test_an_approval_promotes_through_the_same_move_as_the_decider_canary_included():
    writes = resolve(canary=10)
    assert writes.after["champion_version"] == 3 and writes.after["canary"]["version"] == 4
    assert writes.after["canary"]["actor"] == "ana" and writes.run["deployment"]["generation"] == 8


@pytest.mark.parametrize(("ds", "action", "version", "outcome", "champion_after"), [
    ({**SERVING_V3, "canary": {"version": 4, "percent": 10}}, serving.CANARY_PROMOTE, None, "moved", 4),
    ({**SERVING_V3, "canary": {"version": 4, "percent": 10}}, serving.CANARY_ABORT, None, "moved", 3),
    (SERVING_V3, serving.ROLLBACK, None, "moved", 2),
    ({**SERVING_V3, "serving": {"by": serving.ROLLBACK}}, serving.ROLLBACK, None, "unchanged", 3),   # repeated
])
def test_move(ds, action, version, outcome, champion_after):
    writes = decisions.move(ds, dataset="taxi", action=action, actor="bo", reason="r", version=version, at=AT,
                            ledger_id="L3", version_exists=lambda v: True)
    assert writes.outcome == outcome and writes.after.get("champion_version") == champion_after
    assert (writes.ledger is None) == (outcome == "unchanged")


def test_a_rollback_to_a_version_that_does_not_exist_is_refused():
    with pytest.raises(serving.MoveError, match="taxi has no version 9"):
        decisions.move(SERVING_V3, dataset="taxi", action=serving.ROLLBACK, actor="bo", reason="r", version=9, at=AT,
                       ledger_id="L3", version_exists=lambda v: v != 9)


@pytest.mark.parametrize(("last", "open_"), [(None, True), (AT - dt.timedelta(minutes=59), False),
                                             (AT - dt.timedelta(minutes=60), True)])
def test_cooldowns(last, open_):
    assert decisions.cooldown_open(last, AT, dt.timedelta(minutes=60)) is open_


@pytest.mark.parametrize(("done", "finisher", "task", "expected"), [
    ([], None, 0, ([0], None)),          # one of three written: nobody finishes yet
    ([0, 2], None, 1, ([0, 1, 2], 1)),   # the one that completes the set finishes
    ([0, 1, 2], 1, 1, ([0, 1, 2], 1)),   # a retried finisher stays the finisher
    ([0, 1, 2], 1, 0, ([0, 1, 2], 1)),   # a late retry of another task does not
])
def test_search_finisher(done, finisher, task, expected):
    assert lifecycle.search_finisher(done, finisher, task, 3) == expected


# -- the training slot --------------------------------------------------------------------------------
def queued_run(run_id, sha, minute):
    return {"run_id": run_id, "status": lifecycle.QUEUED, "curated": {"sha256": sha},
            "created_at": AT + dt.timedelta(minutes=minute)}


def test_slot_is_free_only_when_nobody_trains():
    training = {"run_id": "a", "status": lifecycle.TRAINING}
    assert decisions.slot_free(None, None, "b", lifecycle.TERMINAL)
    assert decisions.slot_free({"run_id": "b"}, None, "b", lifecycle.TERMINAL)              # its own
    assert not decisions.slot_free({"run_id": "a"}, training, "b", lifecycle.TERMINAL)
    assert not decisions.slot_free({"run_id": "a"}, {**training, "status": lifecycle.EVALUATED}, "b",
                                   lifecycle.TERMINAL)                                   # not decided yet
    assert decisions.slot_free({"run_id": "a"}, {**training, "status": lifecycle.FAILED}, "b", lifecycle.TERMINAL)
    assert decisions.slot_free({"run_id": "a"}, None, "b", lifecycle.TERMINAL)              # the holder is gone


def test_the_newest_batch_trains_and_covers_the_older_ones():
    # batches registered in the order x, y, z; the runs were created in another order
    order = {"x": AT, "y": AT + dt.timedelta(seconds=1), "z": AT + dt.timedelta(seconds=2)}
    queued = [queued_run("r-z", "z", 0), queued_run("r-x", "x", 1), queued_run("r-y", "y", 2)]
    assert decisions.next_training(queued, order) == "r-z"
    chosen = queued[0]
    assert sorted(decisions.covered(chosen, queued, order)) == ["r-x", "r-y"]
    # a run of the same content created earlier is covered; a later batch never is
    twin = queued_run("r-x2", "x", 5)
    assert decisions.covered(twin, [*queued, twin], order) == ["r-x"]
    assert decisions.covered(queued[1], queued, order) == []
    assert decisions.next_training([], order) is None
    # a batch not registered (cannot happen after the validator, but never crash): oldest
    assert decisions.next_training([queued_run("r-?", "?", 9), queued[1]], order) == "r-x"


def test_a_superseded_run_is_recorded_and_nothing_serves_differently():
    entry = decisions.superseded_entry("taxi", "L9", queued_run("r-x", "x", 0), "r-z", SERVING_V3, AT)
    assert entry["kind"] == "superseded" and entry["superseded_by"] == "r-z" and entry["run_id"] == "r-x"
    assert entry["champion_before"] == entry["champion_after"] == 3
    assert entry["announced"] and "r-z" in entry["reason"] and entry["data"] == {"sha256": "x"}
