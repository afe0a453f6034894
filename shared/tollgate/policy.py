"""The decision policy (docs/architecture.md, "The chain"), pure and table-tested.

    if challenger > champion and challenger > threshold: promote challenger
    elif champion > threshold:                           keep champion
    else:                                                human review

"Better" is measured on the same held-out rows: the lower bound of the paired-bootstrap
interval of the improvement must exceed the spec's margin, so noise never promotes a model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tollgate.spec import DatasetSpec, Policy

PROMOTE, KEEP, REVIEW = "promote", "keep", "review"


@dataclasses.dataclass(frozen=True)
class Evidence:
    metric: str
    higher_is_better: bool
    challenger: float
    champion: float | None          # None: the dataset has no champion yet
    improvement_low: float | None   # lower bound of the interval of (challenger better by)
    holdout_rows: int
    drift: str = "none"             # validator verdict: none | warn | severe


@dataclasses.dataclass(frozen=True)
class Decision:
    verdict: str
    reason: str


def clears(score: float, threshold: float, higher_is_better: bool) -> bool:
    return score > threshold if higher_is_better else score < threshold


def decide(policy: Policy, ev: Evidence) -> Decision:
    cmp = "above" if ev.higher_is_better else "below"
    if ev.drift == "severe":
        return Decision(REVIEW, "the validator found severe drift in this batch; a person should look first")
    if ev.holdout_rows < policy.min_holdout_rows:
        return Decision(REVIEW, f"only {ev.holdout_rows} held-out rows, fewer than the "
                                f"{policy.min_holdout_rows} the policy needs for a fair comparison")
    challenger_ok = clears(ev.challenger, policy.threshold, ev.higher_is_better)
    if ev.champion is None:
        if challenger_ok:
            return Decision(PROMOTE, f"first model: {ev.metric}={ev.challenger:.4f} is {cmp} "
                                     f"the threshold {policy.threshold}")
        return Decision(REVIEW, f"first model: {ev.metric}={ev.challenger:.4f} is not {cmp} "
                                f"the threshold {policy.threshold}")
    better = ev.improvement_low is not None and ev.improvement_low > policy.margin
    if challenger_ok and better:
        return Decision(PROMOTE, f"challenger {ev.metric}={ev.challenger:.4f} beats champion "
                                 f"{ev.champion:.4f}: the {policy.confidence:.0%} interval of the improvement "
                                 f"starts at {ev.improvement_low:+.4f} > margin {policy.margin}")
    if clears(ev.champion, policy.threshold, ev.higher_is_better):
        why = ("is not shown better than the champion" if challenger_ok
               else f"is not {cmp} the threshold {policy.threshold}")
        return Decision(KEEP, f"challenger {ev.metric}={ev.challenger:.4f} {why}; champion "
                              f"{ev.champion:.4f} stays")
    return Decision(REVIEW, f"neither model is good enough: challenger {ev.challenger:.4f}, champion "
                            f"{ev.champion:.4f}, threshold {policy.threshold}")


def evidence_of(run: dict[str, Any], spec: DatasetSpec) -> Evidence:
    """What the policy weighs, read off an evaluated run (its evaluation and its validation's drift verdict)."""
    ev = run["evaluation"]
    metric = spec.primary_metric
    champion = ev.get("champion")
    diff = ev.get("difference")
    return Evidence(
        metric=metric, higher_is_better=spec.higher_is_better,
        challenger=float(ev["challenger"]["metrics"][metric]),
        champion=float(champion["metrics"][metric]) if champion else None,
        improvement_low=float(diff["low"]) if diff else None,
        holdout_rows=int(ev["holdout_rows"]),
        drift=(run.get("validation") or {}).get("drift", {}).get("verdict", "none"),
    )
