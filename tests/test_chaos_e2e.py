"""Fault injection in the suite (bounded: one seed, a short burst): job task and function processes SIGKILLed at
random moments while files arrive, one chain function's master killed outright and restarted alone by
`tollgate up`; then every dropped generation has exactly one run in a terminal status, nothing is in flight,
serving equals the ledger's last move and the predictor answers with it, registry versions are contiguous and
verify, no artifact lacks a record, no run is decided twice. ``make chaos`` runs more seeds and drops."""

from __future__ import annotations

import os

import pytest

from tests import chaos

pytestmark = pytest.mark.e2e


def test_the_chain_keeps_its_invariants_when_processes_die_at_random(local_cloud, cloud, state):
    seed = int(os.environ.get("CHAOS_SEED", "7"))
    report = chaos.run(local_cloud, cloud, state, seed=seed, drops=4, chaos_seconds=40)
    assert report.kills, "the monkey killed nothing: the test tested nothing"
    assert not report.violations, (report.kills, report.statuses, report.violations)
    assert all(part.alive() for part in local_cloud.parts.values())   # the dead part came back, alone
