"""The decision policy, table-tested: every branch, first model, ties, noise-level wins, drift, small holdouts."""

import pytest

from tollgate.policy import KEEP, PROMOTE, REVIEW, Evidence, decide, refit
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


REFRESH = Policy(threshold=0.7, margin=0.0, confidence=0.95, min_holdout_rows=50, refresh=True)


def refit_ev(challenger, champion, low, improvement, refit=True):
    return Evidence(metric="r2", higher_is_better=True, challenger=challenger, champion=champion,
                    improvement_low=low, holdout_rows=500, improvement=improvement, refit=refit)


@pytest.mark.parametrize(
    ("policy", "evidence", "verdict"),
    [
        (REFRESH, refit_ev(0.86, 0.85, -0.01, 0.01), PROMOTE),           # a refit at least as good: refreshed
        (REFRESH, refit_ev(0.85, 0.85, -0.02, 0.0), PROMOTE),            # a tie of a refit: refreshed
        (REFRESH, refit_ev(0.84, 0.85, -0.03, -0.01), KEEP),             # a refit that scores worse: kept out
        (REFRESH, refit_ev(0.86, 0.85, -0.01, 0.01, refit=False), KEEP),  # another model: must be shown better
        (REFRESH, refit_ev(0.65, 0.60, -0.01, 0.05), REVIEW),            # a refit below the threshold: never
        (POLICY, refit_ev(0.86, 0.85, -0.01, 0.01), KEEP),               # refresh off: today's rule
    ],
)
def test_refresh_promotes_a_refit_that_scores_at_least_as_well(policy, evidence, verdict):
    decision = decide(policy, evidence)
    assert decision.verdict == verdict, decision.reason
    assert ("refresh" in decision.reason) == (verdict == PROMOTE)


def version(**changes):
    return {"estimator": "hist_gradient_boosting", "features": ["a", "b"], "target": "y", "task": "regression",
            "train_rows": 800, **changes}


@pytest.mark.parametrize(
    ("challenger", "windows", "is_refit", "why"),
    [
        (version(), (["b1", "b2"], ["b1"]), True, "a refit on the champion's 1 batch and 1 newer"),
        (version(estimator="random_forest"), (["b1", "b2"], ["b1"]), False, "the estimator changed"),
        (version(features=["a"]), (["b1", "b2"], ["b1"]), False, "the features changed"),
        (version(), (["b2", "b3"], ["b1", "b2"]), False, "1 of the champion's batches are not in"),
        (version(), (["b1"], ["b1"]), False, "no batch the champion had not seen"),
        (version(), ([], []), False, "no batch the champion had not seen"),
    ],
)
def test_a_refit_is_the_same_model_on_a_window_holding_the_champions(challenger, windows, is_refit, why):
    answer = refit(challenger, version(train_rows=500), *windows)
    assert answer["refit"] is is_refit and why in answer["why"], answer
    assert (answer["train_rows"], answer["champion_train_rows"]) == (challenger["train_rows"], 500)
