"""Firestore state against the emulator: transitions and version numbers under concurrency."""

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tollgate import lifecycle, serving

pytestmark = pytest.mark.emulator


def test_only_one_concurrent_transition_wins(state, unique):
    run_id = f"run-{unique}"
    assert state.create_run(run_id, {"dataset": f"ds-{unique}"})
    assert not state.create_run(run_id, {"dataset": f"ds-{unique}"})       # duplicate notification
    # the Firestore emulator times out contended transactions (20 writers on one document: 1 commits); at the
    # end of a busy session even 5 once ran out of its retries
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: state.transition(run_id, (lifecycle.RECEIVED,), lifecycle.VALIDATING),
                                range(3)))
    assert results.count(True) == 1
    run = state.get_run(run_id)
    assert run["status"] == lifecycle.VALIDATING
    assert [h["status"] for h in run["history"]] == [lifecycle.RECEIVED, lifecycle.VALIDATING]


def test_two_trainings_get_distinct_consecutive_versions(state, unique):
    dataset = f"ds-{unique}"
    runs = [f"run-{unique}-{i}" for i in range(2)]
    for run_id in runs:
        state.create_run(run_id, {"dataset": dataset})
    with ThreadPoolExecutor(2) as pool:
        versions = list(pool.map(lambda r: state.register_version(dataset, r, lambda v: {"sha256": "x"}), runs))
    assert sorted(versions) == [1, 2]
    assert [v["version"] for v in state.list_versions(dataset)] == [1, 2]
    # a retried trainer gets the version its run already registered
    assert state.register_version(dataset, runs[0], lambda v: {"sha256": "x"}) == versions[0]
    assert state.get_dataset(dataset)["next_version"] == 3


def evaluated_run(state, dataset, run_id):
    state.create_run(run_id, {"dataset": dataset})
    version = state.register_version(dataset, run_id, lambda v: {})
    state.transition(run_id, (lifecycle.RECEIVED,), lifecycle.EVALUATED)
    return version


def test_stale_decision_is_refused(state, unique):
    dataset, run_id = f"ds-{unique}", f"run-{unique}"
    evaluated_run(state, dataset, run_id)
    state.dataset_ref(dataset).set({"champion_version": 7}, merge=True)    # another run promoted meanwhile
    assert state.apply_decision(run_id, dataset, "promote", "r", {}, evaluated_against=None)[0] == "stale"
    assert state.get_run(run_id)["status"] == lifecycle.EVALUATED
    outcome, entry = state.apply_decision(run_id, dataset, "promote", "r", {}, evaluated_against=7)
    assert outcome == "applied" and entry["champion_before"] == 7 and entry["champion_after"] == 1
    assert state.apply_decision(run_id, dataset, "promote", "r", {}, evaluated_against=7) == ("duplicate", None)
    ds = state.get_dataset(dataset)
    assert (ds["champion_version"], ds["previous_version"]) == (1, 7)
    assert ds["deployment"]["status"] == "pending" and ds["deployment"]["traffic"] == [{"version": 1, "percent": 100}]
    assert [e["ledger_id"] for e in state.ledger(dataset)] == [entry["ledger_id"]]
    assert state.get_run(run_id)["ledger_id"] == entry["ledger_id"]


def test_concurrent_promotions_against_one_champion_cannot_both_win(state, unique):
    """Three runs judged against the same champion decide at once: one promotes, the others are
    told their evidence is stale (three: the Firestore emulator loses contended transactions beyond a few
    writers on one document)."""
    dataset = f"ds-{unique}"
    runs = [f"run-{unique}-{i}" for i in range(3)]
    for run_id in runs:
        evaluated_run(state, dataset, run_id)
    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(lambda r: state.apply_decision(r, dataset, "promote", "better", {},
                                                                evaluated_against=None)[0], runs))
    assert sorted(outcomes) == ["applied", "stale", "stale"]
    winner = runs[outcomes.index("applied")]
    ds = state.get_dataset(dataset)
    assert ds["champion_version"] == state.get_run(winner)["challenger_version"]
    assert len(state.ledger(dataset)) == 1


def test_review_is_approved_once_and_only_on_fresh_evidence(state, unique):
    dataset = f"ds-{unique}"
    first, second = f"run-{unique}-a", f"run-{unique}-b"
    for run_id in (first, second):       # both judged against "no champion yet"
        evaluated_run(state, dataset, run_id)
        assert state.apply_decision(run_id, dataset, "review", "small holdout", {}, None)[0] == "applied"
    review = state.get_review(first)
    assert review["status"] == "pending" and review["expires_at"] > review["requested_at"]
    assert state.get_dataset(dataset).get("champion_version") is None
    with ThreadPoolExecutor(3) as pool:              # three reviewers click at once: one decision
        outcomes = list(pool.map(lambda who: state.resolve_review(first, "approve", who, "looks fine")[0],
                                 ["ana", "bo", "cy"]))
    assert sorted(outcomes) == ["approved", "closed", "closed"]
    run = state.get_run(first)
    assert run["decision"] == "promote" and run["review"]["status"] == "approved"
    assert run["deployment"]["status"] == "pending"
    assert state.get_dataset(dataset)["champion_version"] == run["challenger_version"]
    kinds = [(e["kind"], e["event"]) for e in state.ledger(dataset)]
    assert kinds == [("decision", "review"), ("decision", "review"), ("review", "approved")]
    # the second review was judged against "no champion": stale now that the first was approved
    assert state.resolve_review(second, "approve", "ana", "ok") == ("stale", None)
    assert state.get_run(second)["status"] == lifecycle.TRAINED          # sent back to be re-evaluated
    assert state.get_review(second)["status"] == "stale"


def test_overdue_reviews_expire_and_the_champion_stays(state, unique):
    dataset, run_id = f"ds-{unique}", f"run-{unique}"
    evaluated_run(state, dataset, run_id)
    state.apply_decision(run_id, dataset, "review", "severe drift", {}, None, review_hours=1 / 3600)
    time.sleep(1.2)
    assert run_id in state.overdue_reviews()
    outcome, entry = state.resolve_review(run_id, "approve", "ana", "too late")   # past the deadline
    assert outcome == "expired" and entry["actor"] == "auto" and entry["verdict"] == "keep"
    assert state.get_run(run_id)["decision"] == "keep"
    assert run_id not in state.overdue_reviews()


def test_serving_moves_are_recorded_and_checked(state, unique):
    dataset = f"ds-{unique}"
    runs = [f"run-{unique}-{i}" for i in range(3)]
    for i, run_id in enumerate(runs):
        evaluated_run(state, dataset, run_id)
        state.apply_decision(run_id, dataset, "promote", "better", {}, 1 if i else None, canary_percent=10)
    ds = state.get_dataset(dataset)   # v1 champion (first models take all traffic), v3 replaced v2 as canary
    assert ds["champion_version"] == 1 and ds["canary"]["version"] == 3 and ds["canary"]["percent"] == 10
    assert ds["deployment"]["traffic"] == [{"version": 1, "percent": 90}, {"version": 3, "percent": 10}]
    outcome, entry, after = state.move_serving(dataset, serving.CANARY_PROMOTE, "ana", "canary fine")
    assert outcome == "moved" and after["champion_version"] == 3 and entry["kind"] == "canary"
    with pytest.raises(serving.MoveError, match="no canary"):
        state.move_serving(dataset, serving.CANARY_ABORT, "ana", "x")
    outcome, entry, after = state.move_serving(dataset, serving.ROLLBACK, "ana", "bad latency")
    assert outcome == "moved" and after["champion_version"] == 1 and entry["serving_after"]["version"] == 1
    assert state.move_serving(dataset, serving.ROLLBACK, "ana", "again")[0] == "unchanged"   # safe to repeat
    with pytest.raises(serving.MoveError, match="no version 9"):
        state.move_serving(dataset, serving.ROLLBACK, "ana", "x", version=9)
    generation = state.get_dataset(dataset)["deployment"]["generation"]
    assert not state.set_deployment(dataset, generation - 1, "done")    # an older deployment never overwrites
    assert state.set_deployment(dataset, generation, "done", uri="http://x")
    assert state.get_dataset(dataset)["deployment"]["status"] == "done"
    events = [e["event"] for e in state.ledger(dataset)]
    assert events == ["promote", "promote", "promote", "canary-promote", "rollback"]


def test_exactly_one_search_task_finishes_the_search(state, unique):
    # eight writers on one document: more than the emulator's own retries carry (it commits one of twenty at once),
    # so every commit here rides on the adapter's backoff between rounds of attempts
    run_id, tasks = f"run-{unique}", 8
    state.create_run(run_id, {"dataset": f"ds-{unique}"})
    with ThreadPoolExecutor(tasks) as pool:
        finishers = list(pool.map(lambda task: state.search_task_done(run_id, task, tasks), range(tasks)))
    assert finishers.count(True) == 1
    winner = finishers.index(True)
    assert state.search_task_done(run_id, winner, tasks)                   # its retry still finishes
    assert not state.search_task_done(run_id, (winner + 1) % tasks, tasks)
    assert state.get_run(run_id)["search_done"] == list(range(tasks))


def validated_run(state, dataset, run_id, sha):
    state.create_run(run_id, {"dataset": dataset, "curated": {"sha256": sha}})
    state.add_batch(dataset, run_id, {"sha256": sha, "rows": 10})
    assert state.transition(run_id, (lifecycle.RECEIVED,), lifecycle.VALIDATED)


def test_one_training_per_dataset_and_a_burst_coalesces(state, unique):
    from tollgate.events import Event

    dataset = f"ds-{unique}"
    runs = [f"run-{unique}-{i}" for i in range(4)]
    for i, run_id in enumerate(runs):
        validated_run(state, dataset, run_id, f"sha-{i}")
    # the first takes the slot; the others queue behind it, concurrently too
    assert state.take_training_slot(dataset, runs[0]) == "granted"
    assert state.take_training_slot(dataset, runs[0]) == "granted"                 # a redelivered event
    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(lambda r: state.take_training_slot(dataset, r), runs[1:])) == ["queued"] * 3
    assert {state.get_run(r)["status"] for r in runs[1:]} == {lifecycle.QUEUED}
    assert state.get_run(runs[1])["queued_behind"] == runs[0]
    assert state.take_training_slot(dataset, f"run-{unique}-unknown") == "skipped"
    # while the holder runs, the slot does not pass
    state.transition(runs[0], (lifecycle.VALIDATED,), lifecycle.TRAINING)
    events = lambda run: Event("data-validated", {"run_id": run["run_id"]})   # noqa: E731
    assert state.pass_training_slot(dataset, events) == (None, [], None)
    # it ended: the newest batch trains, the two older queued batches end superseded by it, with ledger lines
    state.transition(runs[0], (lifecycle.TRAINING,), lifecycle.FAILED)
    chosen, superseded, event = state.pass_training_slot(dataset, events)
    assert chosen == runs[3] and sorted(superseded) == runs[1:3] and event.payload == {"run_id": runs[3]}
    assert state.get_run(runs[3])["status"] == lifecycle.VALIDATED
    assert state.get_dataset(dataset)["training"]["run_id"] == runs[3]
    assert event.id in {e.id for e in state.outbox(before=dt.datetime.now(dt.timezone.utc) + dt.timedelta(1))}
    for run_id in runs[1:3]:
        run = state.get_run(run_id)
        assert run["status"] == lifecycle.SUPERSEDED and run["superseded_by"] == runs[3]
    lines = [e for e in state.ledger(dataset) if e["kind"] == "superseded"]
    assert sorted(e["run_id"] for e in lines) == runs[1:3] and all(e["announced"] for e in lines)
    # a run validated after the pass queues behind the new holder; once that is decided and nothing else is
    # queued, the slot is freed
    validated_run(state, dataset, f"run-{unique}-late", "sha-late")
    assert state.take_training_slot(dataset, f"run-{unique}-late") == "queued"
    state.transition(runs[3], (lifecycle.VALIDATED,), lifecycle.DECIDED)
    assert state.pass_training_slot(dataset, events)[0] == f"run-{unique}-late"
    state.transition(f"run-{unique}-late", (lifecycle.VALIDATED,), lifecycle.DECIDED)
    assert state.pass_training_slot(dataset, events) == (None, [], None)
    assert "training" not in state.get_dataset(dataset)
    assert state.take_training_slot(dataset, runs[3]) == "skipped"                  # decided: no training


def test_versions_take_tags_and_aliases_people_set(state, unique):
    """Labels a person attaches (never model facts, which stay immutable): tags on a version, aliases on the dataset
    that `model show`, `model download` and the client take wherever a version goes."""
    from tollgate.client import Client, ClientError

    dataset = f"tags_{unique}"
    state.create_run(f"run-{unique}", {"dataset": dataset})
    state.register_version(dataset, f"run-{unique}", lambda v: {"sha256": "x" * 64})
    assert state.tag_version(dataset, 1, {"ticket": "ML-12", "reviewed-by": "ana"}) == {"ticket": "ML-12",
                                                                                        "reviewed-by": "ana"}
    assert state.tag_version(dataset, 1, {"ticket": None}) == {"reviewed-by": "ana"}
    assert state.set_alias(dataset, "staging", 1) == {"staging": 1}
    client = Client()
    client._state = state
    assert client._version(dataset, "staging") == 1
    with pytest.raises(ClientError, match="not one of champion"):
        client.alias(dataset, "champion", 1)        # those follow what serves
    with pytest.raises(ClientError, match="no version 9"):
        client.alias(dataset, "audit", 9)
    assert client.alias(dataset, "staging", None) == {}
    with pytest.raises(ClientError, match="aliases \\(none yet\\)"):
        client._version(dataset, "staging")
    assert state.get_version(dataset, 1)["sha256"] == "x" * 64   # the record itself is unchanged
