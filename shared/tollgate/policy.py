"""The decision policy (docs/architecture.md, "The chain"), pure and table-tested.

    if challenger > champion and challenger > threshold: promote challenger
    elif champion > threshold:                           keep champion
    else:                                                human review

"Better" is measured on the same held-out rows: the lower bound of the paired-bootstrap
interval of the improvement must exceed the spec's margin, so noise never promotes a model.

With ``policy.refresh``, a *refit* — the champion's family, features and target trained again on a window holding
every batch the champion was trained on, and more — also replaces the champion when it clears the threshold and
scores at least as well on the same fresh rows: more data of the same kind is not noise, and a model kept on half
the data when the whole is at hand is what a data scientist would not ship.
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
    improvement: float | None = None   # the point estimate of (challenger better by)
    refit: bool = False             # the challenger is the champion trained again on its window and more


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
    if challenger_ok and policy.refresh and ev.refit and ev.improvement is not None and ev.improvement >= 0:
        return Decision(PROMOTE, f"refresh: challenger {ev.metric}={ev.challenger:.4f} is the champion's model "
                                 f"trained again on its data and newer, and scores at least as well as champion "
                                 f"{ev.champion:.4f} on the same rows (improvement {ev.improvement:+.4f}, "
                                 f"{policy.confidence:.0%} interval from {ev.improvement_low:+.4f})")
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
        improvement=float(diff["improvement"]) if diff else None,
        refit=bool((ev.get("refit") or {}).get("refit")),
    )


MODEL_FIELDS = ("estimator", "features", "target", "task")


def refit(challenger: dict[str, Any], champion: dict[str, Any], challenger_window: list[str],
          champion_window: list[str]) -> dict[str, Any]:
    """Whether the challenger's version is a refit of the champion's: the same family, features, target and task
    (their registry records), trained on a window (the batches' sha256) holding every batch of the champion's and
    at least one more. The answer says why, for the evaluation report and the ledger."""
    changed = [k for k in MODEL_FIELDS if challenger.get(k) != champion.get(k)]
    missing = sorted(set(champion_window) - set(challenger_window))
    newer = len(set(challenger_window) - set(champion_window))
    if changed:
        why = f"not a refit: the {', '.join(changed)} changed"
    elif missing:
        why = f"not a refit: {len(missing)} of the champion's batches are not in the challenger's window"
    elif not newer:
        why = "not a refit: the challenger was trained on no batch the champion had not seen"
    else:
        seen = len(set(champion_window))
        why = f"a refit on the champion's {seen} batch{'es' * (seen != 1)} and {newer} newer"
    return {"refit": not changed and not missing and newer > 0, "why": why,
            "train_rows": challenger.get("train_rows"), "champion_train_rows": champion.get("train_rows")}
