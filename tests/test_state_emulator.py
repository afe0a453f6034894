"""Firestore state against the emulator: transitions and version numbers under concurrency."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from tollgate.cloud import state as st

pytestmark = pytest.mark.emulator


def test_only_one_concurrent_transition_wins(state, unique):
    run_id = f"run-{unique}"
    assert state.create_run(run_id, {"dataset": f"ds-{unique}"})
    assert not state.create_run(run_id, {"dataset": f"ds-{unique}"})       # duplicate notification
    with ThreadPoolExecutor(5) as pool:                                   # EMULATORS.md: ≤ 5 writers
        results = list(pool.map(lambda _: state.transition(run_id, (st.RECEIVED,), st.VALIDATING), range(5)))
    assert results.count(True) == 1
    run = state.get_run(run_id)
    assert run["status"] == st.VALIDATING
    assert [h["status"] for h in run["history"]] == [st.RECEIVED, st.VALIDATING]


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


def test_stale_decision_is_refused(state, unique):
    dataset, run_id = f"ds-{unique}", f"run-{unique}"
    state.create_run(run_id, {"dataset": dataset})
    state.register_version(dataset, run_id, lambda v: {})
    state.transition(run_id, (st.RECEIVED,), st.EVALUATED)
    state.dataset_ref(dataset).set({"champion_version": 7}, merge=True)    # another run promoted meanwhile
    assert state.apply_decision(run_id, dataset, "promote", "r", {}, evaluated_against=None) == "stale"
    assert state.get_run(run_id)["status"] == st.EVALUATED
    assert state.apply_decision(run_id, dataset, "promote", "r", {}, evaluated_against=7) == "applied"
    assert state.apply_decision(run_id, dataset, "promote", "r", {}, evaluated_against=7) == "duplicate"
    assert state.get_dataset(dataset)["champion_version"] == 1
    assert len(state.ledger(dataset)) == 1


def test_exactly_one_search_task_finishes_the_search(state, unique):
    run_id = f"run-{unique}"
    state.create_run(run_id, {"dataset": f"ds-{unique}"})
    with ThreadPoolExecutor(3) as pool:
        finishers = list(pool.map(lambda task: state.search_task_done(run_id, task, 3), range(3)))
    assert finishers.count(True) == 1
    winner = finishers.index(True)
    assert state.search_task_done(run_id, winner, 3)                       # its retry still finishes
    assert not state.search_task_done(run_id, (winner + 1) % 3, 3)
    assert state.get_run(run_id)["search_done"] == [0, 1, 2]
