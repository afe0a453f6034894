"""Decisions take effect: Firestore first, then Cloud Run follows, then everyone is told.

Every way the serving model changes — an automatic promotion, an approved review, a canary
promoted or aborted, a rollback — runs the same three steps:

1. one Firestore transaction moves the serving pointers and appends to the ledger (cloud/state, with the
   rules of tollgate.decisions);
2. ``converge`` makes the predictor's Cloud Run traffic match the pointers (idempotent: a
   deployment that failed half-way is finished by running it again);
3. ``announce`` publishes the ledger entry as a ``model-decided`` event (the JSON Schema is
   tollgate/schemas/model-decided.v1.json), and a review request also goes to ``review-requested``
   and the webhook.

The decider, the review function, the monitor, the reconciler and the CLI all call this module. It raises
domain errors (tollgate.errors); the review function maps them to HTTP statuses.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from tollgate import egress, events, lifecycle, log, outbox, serving
from tollgate import spec as specs
from tollgate.cloud import Cloud
from tollgate.cloud import run as cloudrun
from tollgate.cloud import state as st
from tollgate.errors import DeploymentFailed, InvalidReview, ReviewClosed, ReviewExpired, ReviewNotFound, ReviewStale
from tollgate.events import decided_event
from tollgate.jsonable import iso

WEBHOOK_ENV = "TOLLGATE_REVIEW_WEBHOOK"   # Slack-compatible incoming webhook; on GCP from Secret Manager
REVIEW_URL_ENV = "TOLLGATE_REVIEW_URL"


# -- Cloud Run follows Firestore --------------------------------------------------------------
def converge(cloud: Cloud, state: st.State, dataset: str) -> dict[str, Any] | None:
    """Make the predictor serve what the dataset's pointers say; record how it went."""
    ds = state.get_dataset(dataset)
    targets = serving.traffic(ds)
    if not targets:
        return None
    generation = (ds.get("deployment") or {}).get("generation")
    env = {"GOOGLE_CLOUD_PROJECT": cloud.settings.project, "TOLLGATE_BUCKET": cloud.settings.bucket}
    try:
        result = cloudrun.set_traffic(cloud, dataset, targets, env, sizing=_sizing(state, dataset, targets))
    except Exception as exc:
        if generation is not None:
            state.set_deployment(dataset, generation, "failed", error=str(exc)[:500])
        raise DeploymentFailed(f"the predictor of {dataset} could not be moved to {targets}: {exc}") from exc
    if generation is not None:
        state.set_deployment(dataset, generation, "done", uri=result["uri"])
    log.info("predictor traffic set", dataset=dataset, traffic=result["traffic"])
    return result


def _sizing(state: st.State, dataset: str, targets: list[tuple[int, int]]) -> dict[str, Any]:
    """The size and scaling a new revision gets: the newest target version's spec (``deployment``)."""
    from tollgate import spec as specs

    newest = max(v for v, _ in targets)
    record = state.get_version(dataset, newest) or {}
    try:
        return specs.from_dict(record["spec"]).deployment.sizing()
    except (KeyError, specs.SpecError):
        return {}


# -- events -----------------------------------------------------------------------------------
def announce(cloud: Cloud, state: st.State, entry: dict[str, Any],
             deployment: dict[str, Any] | None = None) -> dict[str, Any]:
    """Publish the entry's model-decided event once its effect is deployed (at least once: a retry
    after a failure publishes it then; ``ledger_id`` lets subscribers drop a repeat)."""
    payload = decided_event(entry, deployment)
    cloud.publish("model-decided", payload)
    state.mark_announced(entry["dataset"], entry["ledger_id"])
    return payload


def notify_webhook(state: st.State, review: dict[str, Any], payload: dict[str, Any]) -> str:
    """Post a Slack-compatible message about a review request; never fails the decision."""
    url = os.environ.get(WEBHOOK_ENV)
    if not url:
        return "not-configured"
    if (review.get("webhook") or {}).get("status") == "sent":
        return "sent"
    where = os.environ.get(REVIEW_URL_ENV)
    evaluation = payload.get("evaluation") or {}
    score = (f"{evaluation['metric']}: challenger {evaluation['challenger']:.4f}"
             + (f" vs champion {evaluation['champion']:.4f}" if evaluation.get("champion") is not None else "")
             if evaluation.get("challenger") is not None else "")
    text = (f"Tollgate: review needed for {payload['dataset']} v{payload['challenger_version']} "
            f"(run {payload['run_id']}): {payload['reason']}. {score}. "
            f"Approve or reject: `tollgate review show {payload['run_id']}`"
            + (f" or {where}/reviews/{payload['run_id']}" if where else "")
            + f". Expires {iso(review.get('expires_at'))}.")
    status = post_webhook(text, payload)
    state.review_ref(payload["run_id"]).update({"webhook": status})
    return status["status"]


def post_webhook(text: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Post a Slack-compatible message (text, one section block, and ``tollgate``: the payload) to the
    configured webhook; a failure is returned and logged, never raised.

    The webhook URL is a secret (Slack's carries its token in the path): a failure is recorded and logged as
    the exception's type and the HTTP status only, never the exception's text, which names the URL."""
    import requests

    url = os.environ.get(WEBHOOK_ENV)
    if not url:
        return {"status": "not-configured"}
    body = {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
            "tollgate": payload}
    try:
        egress.admit(url, "the webhook")
        response = requests.post(url, json=orjson.loads(orjson.dumps(body, default=str)), timeout=5,
                                 allow_redirects=False)
    except (requests.RequestException, egress.EgressRefused) as exc:
        failure: dict[str, Any] = {"status": "failed", "error": type(exc).__name__}
    else:
        if 200 <= response.status_code < 300:
            return {"status": "sent", "at": st.now()}
        failure = {"status": "failed", "error": "HTTPError", "http_status": response.status_code}
    log.warning("webhook failed", error=failure["error"], http_status=failure.get("http_status"),
                run_id=payload.get("run_id"), alert_id=payload.get("alert_id"))
    return {**failure, "at": st.now()}


# -- runs: the decider's and the reviewer's decisions -----------------------------------------
def reevaluation(run: dict[str, Any]) -> events.Event:
    """The event that sends a run (moved back to `trained` in the same transaction) to the evaluator again:
    the champion changed since it was evaluated."""
    return events.step_event(run, lifecycle.TRAINED)   # type: ignore[return-value]


def finish_run(cloud: Cloud, state: st.State, run: dict[str, Any]) -> str:
    """Deploy a run's decision if it promoted (idempotent), then announce it. Safe to repeat."""
    run_id, dataset = run["run_id"], run["dataset"]
    deployment = None
    if (run.get("deployment") or {}).get("status") in ("pending", "failed"):
        try:
            deployment = converge(cloud, state, dataset)
        except DeploymentFailed as exc:
            state.update_run(run_id, deployment={**run["deployment"], "status": "failed", "error": str(exc)[:500]})
            raise   # temporary: the event comes back and the deployment is retried
        state.update_run(run_id, deployment={**run["deployment"], "status": "done", **(deployment or {})})
        log.info("predictor deployed", run_id=run_id, dataset=dataset)
    if not run.get("ledger_id"):   # decided before the ledger linked runs to their entries
        return str(run.get("decision"))
    entry = state.ledger_entry(dataset, run["ledger_id"])
    payload = announce(cloud, state, entry, deployment)
    if entry["kind"] == "decision" and entry["verdict"] == "review":
        cloud.publish("review-requested", payload)
        notify_webhook(state, state.get_review(run_id) or {}, payload)
    return str(run.get("decision"))


def resolve_review(cloud: Cloud, state: st.State, run_id: str, action: str, actor: str,
                   reason: str) -> dict[str, Any]:
    """Approve, reject or expire a review. An approval takes the automatic promotion's path."""
    if action not in ("approve", "reject", "expire"):
        raise InvalidReview(f"unknown action {action!r}: approve or reject")
    if action != "expire" and (not actor.strip() or not reason.strip()):
        raise InvalidReview("a reviewer and a reason are required: they go into the decision ledger")
    run = state.get_run(run_id)
    if run is None or state.get_review(run_id) is None:
        raise ReviewNotFound(f"no review for run {run_id}; list pending ones with `tollgate review list`")
    spec = specs.from_dict(run["spec"])
    event = reevaluation(run)
    outcome, _ = state.resolve_review(run_id, action, actor, reason,
                                      canary_percent=spec.deployment.canary_percent, stale_event=event)
    review = state.get_review(run_id) or {}
    fresh = state.get_run(run_id) or run
    if outcome == "closed" and action == "approve" and review.get("status") == "approved" and \
            (fresh.get("deployment") or {}).get("status") in ("pending", "failed"):
        outcome = "approved"   # approved before, its deployment did not finish: approving again retries it
    elif outcome == "closed":
        raise ReviewClosed(f"the review of run {run_id} is already {review.get('status')} "
                           f"(by {review.get('reviewer')}: {review.get('resolution')})")
    if outcome == "stale":
        outbox.publish(cloud, state, [event])
        raise ReviewStale(f"the champion changed since run {run_id} was evaluated, so approving it "
                          f"would promote on stale evidence; the run is being re-evaluated "
                          f"({review.get('resolution')})")
    try:
        finish_run(cloud, state, fresh)
    except DeploymentFailed as exc:
        raise DeploymentFailed(f"{outcome} and recorded, but {exc}; approve again to retry the deployment") from exc
    if outcome == "expired" and action != "expire":
        raise ReviewExpired(f"the review of run {run_id} expired at {iso(review.get('expires_at'))}; "
                            "the champion stays")
    log.info("review resolved", run_id=run_id, outcome=outcome, actor=actor)
    return {"run_id": run_id, "outcome": outcome, "review": review,
            "serving": serving.serving_summary(state.get_dataset(run["dataset"]))}


def expire_overdue(cloud: Cloud, state: st.State) -> list[str]:
    """Expire every pending review past its deadline (the scheduled review-tick, and before listing)."""
    expired = []
    for run_id in state.overdue_reviews():
        try:
            resolve_review(cloud, state, run_id, "expire", "auto", "no decision before the review deadline")
            expired.append(run_id)
        except (ReviewClosed, ReviewNotFound, ReviewExpired):   # resolved meanwhile
            pass
    return expired


# -- serving moves: canary promote/abort, rollback --------------------------------------------
def move(cloud: Cloud, state: st.State, dataset: str, action: str, actor: str, reason: str,
         version: int | None = None) -> dict[str, Any]:
    outcome, entry, after = state.move_serving(dataset, action, actor, reason, version)
    if entry is None:   # nothing moved: finish what an earlier attempt left (its deployment, its event)
        entry = state.last_unannounced(dataset)
    deployment = converge(cloud, state, dataset)
    if entry is not None:
        announce(cloud, state, entry, deployment)
    log.info("serving moved", dataset=dataset, action=action, outcome=outcome, actor=actor)
    return {"outcome": outcome, "entry": entry, "serving": serving.serving_summary(after),
            "deployment": deployment}
