"""What a decision, a review outcome or a serving move writes, given what its transaction read. Pure.

Each function here is the rule one Firestore transaction in ``cloud/state`` runs: it takes the documents the
transaction read (the run, the dataset's pointers, the review) and the time, and returns a :class:`Writes` —
the outcome and every field to write — which the adapter applies as it is. So the rules (a promotion only on
fresh evidence, a review past its deadline can only expire, a rejected batch stays out of later training, what
a ledger entry holds) are table-tested without Firestore, and each ledger entry is made in one place.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from tollgate import serving

ACTIONS = {"approve": "approved", "reject": "rejected", "expire": "expired"}


@dataclasses.dataclass
class Writes:
    """One transaction's writes. ``dataset``: fields replaced whole (others kept); ``run`` and ``review``:
    fields updated (``review_new``: the review document to create); ``batch``: the excluded batch's update;
    ``status``: the run's new status (with its history entry); ``ledger``: the entry to append."""
    outcome: str
    run: dict[str, Any] | None = None
    status: str | None = None
    dataset: dict[str, Any] | None = None
    ledger: dict[str, Any] | None = None
    review: dict[str, Any] | None = None
    review_new: dict[str, Any] | None = None
    batch: tuple[str, dict[str, Any]] | None = None     # (sha256, fields)
    after: dict[str, Any] = dataclasses.field(default_factory=dict)   # the dataset's pointers after it


def ledger_entry(dataset: str, ledger_id: str, *, kind: str, event: str, verdict: str, reason: str, actor: str,
                 at: dt.datetime, run_id: str | None, challenger_version: int | None,
                 before: dict[str, Any], after: dict[str, Any], **inputs: Any) -> dict[str, Any]:
    """A decision-ledger entry: what happened, who did it and why, with what served before and after it.
    ``inputs``: the evidence (evaluation, thresholds, data, drift, ...). ``announced`` turns true once its
    ``model-decided`` event is out."""
    return {**inputs, "kind": kind, "event": event, "verdict": verdict, "reason": reason, "run_id": run_id,
            "actor": actor, "challenger_version": challenger_version,
            "champion_before": before.get("champion_version"), "champion_after": after.get("champion_version"),
            "serving_after": serving.serving_summary(after), "at": at, "dataset": dataset, "ledger_id": ledger_id,
            "announced": False}


def deploy(current: dict[str, Any], changes: dict[str, Any], at: dt.datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the dataset fields to write, the pointers after): new pointers with a fresh deployment generation,
    pending until Cloud Run follows them."""
    after = {**current, **changes}
    generation = int((current.get("deployment") or {}).get("generation", 0)) + 1
    deployment = {"generation": generation, "status": "pending", "at": at,
                  "traffic": [{"version": v, "percent": p} for v, p in serving.traffic(after)]}
    return {**changes, "deployment": deployment, "updated_at": at}, {**after, "deployment": deployment}


def decide(run: dict[str, Any] | None, ds: dict[str, Any], *, dataset: str, verdict: str, reason: str,
           inputs: dict[str, Any], evaluated_against: int | None, canary_percent: int, review_hours: float,
           force: bool, at: dt.datetime, ledger_id: str, run_status: str, decided_status: str) -> Writes:
    """The decider's (or a forced review's) decision on an evaluated run.

    "duplicate" when the run is not ``run_status`` any more (decided already); "stale" when the champion
    changed since the evaluation — nothing is promoted on stale evidence — unless ``force`` (a review);
    otherwise "applied": the run decided, a promotion moving the pointers, a review opening
    ``reviews/{run_id}`` until its deadline, and one ledger entry."""
    if run is None or run.get("status") != run_status:
        return Writes("duplicate")
    if ds.get("champion_version") != evaluated_against and not force:
        return Writes("stale")
    run_id, challenger = run["run_id"], run.get("challenger_version")
    writes = Writes("applied", status=decided_status, after=ds)
    fields: dict[str, Any] = {"decision": verdict, "reason": reason, "decided_at": at, "decided_by": "auto",
                              "deployment": {"status": "none"}}
    if verdict == "promote":
        writes.dataset, writes.after = deploy(ds, serving.move(ds, serving.PROMOTE, version=challenger,
                                                               percent=canary_percent, run_id=run_id, at=at), at)
        fields["deployment"] = {"status": "pending", "generation": writes.after["deployment"]["generation"]}
    writes.ledger = ledger_entry(dataset, ledger_id, kind="decision", event=verdict, verdict=verdict, reason=reason,
                                 actor="auto", at=at, run_id=run_id, challenger_version=challenger, before=ds,
                                 after=writes.after, **inputs)
    if verdict == "review":
        expires = at + dt.timedelta(hours=review_hours)
        writes.review_new = {"run_id": run_id, "dataset": dataset, "status": "pending", "requested_at": at,
                             "expires_at": expires, "reason": reason, "challenger_version": challenger,
                             "evaluated_against": evaluated_against, "decision_ledger_id": ledger_id}
        fields["review"] = {"status": "pending", "expires_at": expires}
    writes.run = {**fields, "model_version": writes.after.get("champion_version"), "ledger_id": ledger_id,
                  "updated_at": at}
    return writes


def resolve(review: dict[str, Any] | None, run: dict[str, Any], ds: dict[str, Any], *, action: str, actor: str,
            reason: str, canary_percent: int, at: dt.datetime, ledger_id: str, reevaluate_status: str) -> Writes:
    """A person's (or the deadline's) answer to a pending review.

    "unknown" without a review, "closed" when it is not pending. A review past its deadline can only expire
    (recorded as such, by "auto"). "stale" when an approval finds the champion changed since the run was
    evaluated: the review closes and the run goes back to ``reevaluate_status`` to be evaluated again.
    Otherwise the outcome ("approved" promotes through the same pointer move as an automatic promotion;
    "rejected" keeps the champion and keeps the batch out of later training windows; "expired" keeps it too)
    with its ledger entry."""
    if review is None:
        return Writes("unknown")
    if review["status"] != "pending":
        return Writes("closed")
    run_id, dataset = review["run_id"], review["dataset"]
    outcome = ACTIONS[action]
    if outcome != "expired" and at >= review["expires_at"]:
        outcome, who, why = "expired", "auto", "the review deadline had passed"
    else:
        who, why = actor, reason
    champion = ds.get("champion_version")
    if outcome == "approved" and champion != review.get("evaluated_against"):
        return Writes("stale", status=reevaluate_status, run={"review.status": "stale", "updated_at": at},
                      review={"status": "stale", "resolved_at": at, "reviewer": actor,
                              "resolution": f"champion changed from v{review.get('evaluated_against')} to "
                                            f"v{champion}; the run is re-evaluated"})
    writes = Writes(outcome, after=ds)
    fields: dict[str, Any] = {"review.status": outcome, "review.reviewer": who, "review.reason": why,
                              "review.resolved_at": at, "updated_at": at, "ledger_id": ledger_id}
    if outcome == "approved":
        writes.dataset, writes.after = deploy(ds, serving.move(ds, serving.PROMOTE,
                                                               version=review["challenger_version"],
                                                               percent=canary_percent, run_id=run_id, at=at,
                                                               actor=who), at)
        fields.update(decision="promote", reason=f"approved by {who}: {why}", decided_by=who,
                      model_version=writes.after.get("champion_version"),
                      deployment={"status": "pending", "generation": writes.after["deployment"]["generation"]})
    else:
        fields.update(decision="keep", decided_by=who, reason=f"{outcome} by {who}: {why}")
    sha = (run.get("curated") or {}).get("sha256")
    if outcome == "rejected" and sha:   # a rejected batch stays out of later training windows
        writes.batch = (sha, {"excluded": {"by": who, "reason": why, "run_id": run_id, "at": at}})
    writes.ledger = ledger_entry(dataset, ledger_id, kind="review", event=outcome,
                                 verdict="promote" if outcome == "approved" else "keep", reason=why, actor=who,
                                 at=at, run_id=run_id, challenger_version=review["challenger_version"], before=ds,
                                 after=writes.after, review_reason=review.get("reason"))
    writes.review = {"status": outcome, "reviewer": who, "resolution": why, "resolved_at": at, "ledger_id": ledger_id}
    writes.run = fields
    return writes


def move(ds: dict[str, Any], *, dataset: str, action: str, actor: str, reason: str, version: int | None,
         at: dt.datetime, ledger_id: str, version_exists: Any) -> Writes:
    """A canary promoted or aborted, or a rollback: "moved" (pointers and a ledger entry), or "unchanged" when
    the pointers already say so (a repeated rollback; the caller still makes Cloud Run match them). Raises
    ``serving.MoveError`` when the action makes no sense now. ``version_exists(v)`` asks the registry."""
    target = version
    if action == serving.ROLLBACK:
        target = serving.rollback_target(ds, version)
        if not version_exists(target):
            raise serving.MoveError(f"{dataset} has no version {target}; list them with `tollgate models {dataset}`")
    changes = serving.move(ds, action, version=target, at=at, actor=actor)
    if not changes:
        return Writes("unchanged", after=ds)
    canary = ds.get("canary") or {}
    fields, after = deploy(ds, changes, at)
    entry = ledger_entry(dataset, ledger_id, kind="canary" if action != serving.ROLLBACK else "rollback",
                         event=action, verdict=action, reason=reason, actor=actor, at=at, run_id=canary.get("run_id"),
                         challenger_version=canary.get("version") if canary else target, before=ds, after=after)
    return Writes("moved", dataset=fields, ledger=entry, after=after)


def cooldown_open(last: dt.datetime | None, at: dt.datetime, cooldown: dt.timedelta) -> bool:
    """Whether a cool-down (one alert of a kind, one retraining request) lets the next one through at ``at``."""
    return last is None or at - last >= cooldown


# -- the training slot: at most one training per dataset ------------------------------------------
def slot_free(slot: dict[str, Any] | None, holder: dict[str, Any] | None, run_id: str,
              terminal: tuple[str, ...]) -> bool:
    """Whether ``run_id`` may take the dataset's training slot: nobody holds it, it holds it, or its holder
    has ended (or is gone)."""
    return not slot or slot.get("run_id") == run_id or holder is None or holder.get("status") in terminal


def _rank(run: dict[str, Any], batch_order: dict[str, Any]) -> tuple[dt.datetime, dt.datetime, str]:
    """A run's place in its dataset's batches: its batch's registration time, then its own creation."""
    earliest = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    sha = (run.get("curated") or {}).get("sha256")
    return batch_order.get(sha) or earliest, run.get("created_at") or earliest, run["run_id"]


def next_training(queued: list[dict[str, Any]], batch_order: dict[str, Any]) -> str | None:
    """The queued run that trains next: the one whose batch was registered last (its window holds every other
    queued batch); ``batch_order``: each batch's registration time by sha256. A retraining request counts by
    its batch like any other run."""
    return max(queued, key=lambda r: _rank(r, batch_order))["run_id"] if queued else None


def covered(chosen: dict[str, Any], queued: list[dict[str, Any]], batch_order: dict[str, Any]) -> list[str]:
    """The queued runs whose batch ``chosen`` trains on (registered no later than its own): superseded by it."""
    mine = _rank(chosen, batch_order)
    return [r["run_id"] for r in queued if r["run_id"] != chosen["run_id"] and _rank(r, batch_order) < mine]


def superseded_entry(dataset: str, ledger_id: str, run: dict[str, Any], by: str, ds: dict[str, Any],
                     at: dt.datetime) -> dict[str, Any]:
    """The ledger line of a run whose batch a later run trains on: nothing served changes."""
    entry = ledger_entry(dataset, ledger_id, kind="superseded", event="superseded", verdict="superseded",
                         reason=f"its batch is in the training window of run {by}, which trains on every batch "
                                "queued behind the dataset's previous training", actor="auto", at=at,
                         run_id=run["run_id"], challenger_version=None, before=ds, after=ds,
                         data=run.get("curated"), superseded_by=by)
    return {**entry, "announced": True}   # a record, not a decision: model-decided is not told
