"""The decision policy, table-tested: every branch, first model, ties, noise-level wins, drift, small holdouts."""

import pytest

from tollgate.policy import KEEP, PROMOTE, REVIEW, Evidence, decide
from tollgate.spec import Policy

POLICY = Policy(threshold=0.7, margin=0.0, confidence=0.95, min_holdout_rows=50)


def ev(challenger, champion=None, low=None, rows=500, drift="none", higher=True, metric="r2"):
    return Evidence(metric=metric, higher_is_better=higher, challenger=challenger, champion=champion,
                    improvement_low=low, holdout_rows=rows, drift=drift)


@pytest.mark.parametrize(
    ("evidence", "verdict"),
    [
        (ev(0.90), PROMOTE),                               # first model clears the threshold
        (ev(0.50), REVIEW),                                # first model below the threshold
        (ev(0.70), REVIEW),                                # first model exactly at the threshold: not above
        (ev(0.92, 0.85, low=0.02), PROMOTE),               # shown better, good enough
        (ev(0.86, 0.85, low=-0.01), KEEP),                 # noise-level win: interval includes 0
        (ev(0.85, 0.85, low=-0.02), KEEP),                 # tie
        (ev(0.60, 0.85, low=-0.30), KEEP),                 # challenger worse, champion fine
        (ev(0.65, 0.60, low=0.01), REVIEW),                # better but neither clears the threshold
        (ev(0.50, 0.55, low=-0.1), REVIEW),                # both bad
        (ev(0.95, 0.85, low=0.05, drift="severe"), REVIEW),  # severe drift: a person looks first
        (ev(0.95, 0.85, low=0.05, drift="warn"), PROMOTE),   # warn only: decide as usual
        (ev(0.95, 0.85, low=0.05, rows=10), REVIEW),       # holdout too small to judge
        (ev(0.95, None, rows=10), REVIEW),                 # even for a first model
    ],
)
def test_policy_table(evidence, verdict):
    decision = decide(POLICY, evidence)
    assert decision.verdict == verdict, decision.reason
    assert decision.reason


def test_margin_must_be_exceeded_by_the_lower_bound():
    policy = Policy(threshold=0.7, margin=0.02)
    assert decide(policy, ev(0.95, 0.90, low=0.019)).verdict == KEEP
    assert decide(policy, ev(0.95, 0.90, low=0.021)).verdict == PROMOTE


def test_lower_is_better_metric():
    policy = Policy(threshold=5.0, margin=0.0)          # RMSE must be below 5
    assert decide(policy, ev(3.0, metric="rmse", higher=False)).verdict == PROMOTE
    assert decide(policy, ev(6.0, metric="rmse", higher=False)).verdict == REVIEW
    assert decide(policy, ev(3.0, 4.0, low=0.5, metric="rmse", higher=False)).verdict == PROMOTE
    assert decide(policy, ev(6.0, 4.0, low=-2.0, metric="rmse", higher=False)).verdict == KEEP
