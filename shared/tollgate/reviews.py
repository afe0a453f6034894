"""The review API behind the HTTP function `review`: list, show (with the evidence), approve, reject.

    GET  /reviews[?status=pending|approved|rejected|expired|stale|all][&dataset=D]
    GET  /reviews/<run_id>                                   one review and its evidence
    GET  /reviews/<run_id>/report/<validation|evaluation>    the run's HTML report
    POST /reviews/<run_id>/approve   {"reason": "..."}
    POST /reviews/<run_id>/reject    {"reason": "..."}

Every request carries ``Authorization: Bearer <ID token>`` for the function's URL, and the reviewer recorded in
the ledger is the e-mail that token was verified to name (``tollgate.identity``): on Google Cloud a Google-signed
ID token (Cloud Run IAM admits only the ``reviewers``, and the function verifies the token again itself); on the
local cloud one it signs (``tollgate review token``). A body cannot name someone else: a ``reviewer`` field that
differs from the verified caller is refused.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollgate import errors, identity, promotion, serving
from tollgate.cloud import Cloud
from tollgate.cloud import state as st

STATUSES = ("pending", "approved", "rejected", "expired", "stale")
# The core's errors as the API answers them.
STATUS = {errors.InvalidReview: 400, errors.ReviewNotFound: 404, errors.ReviewClosed: 409, errors.ReviewStale: 409,
          errors.ReviewExpired: 410, errors.DeploymentFailed: 502}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def caller_identity(authorization: str | None, verifier: identity.Verifier | None, url: str | None) -> str:
    """The verified e-mail of the caller's bearer token, for the function's ``url`` (the one the request came
    to); 401 otherwise."""
    if verifier is None:
        raise HttpError(401, "the review function cannot verify callers: it refuses every request")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme != "Bearer" or not token.strip():
        raise HttpError(401, "send `Authorization: Bearer <ID token>` for this function's URL (`tollgate review "
                             "token` prints one; on Google Cloud `gcloud auth print-identity-token`)")
    try:
        return verifier.identity(token.strip(), (url.rstrip("/"),) if url else ())
    except identity.Unauthenticated as exc:
        raise HttpError(401, f"not authenticated: {exc}") from None


def expired_if_overdue(cloud: Cloud, state: st.State, review: dict[str, Any]) -> dict[str, Any]:
    """The review as it stands now: a pending one past its deadline is expired first (as the scheduled tick
    would), so a reader never sees it as still open."""
    if review["status"] == "pending" and review["expires_at"] <= st.now():
        promotion.expire_overdue(cloud, state)
        return state.get_review(review["run_id"]) or review
    return review


def evidence(cloud: Cloud, state: st.State, review: dict[str, Any], base_url: str | None) -> dict[str, Any]:
    """What a reviewer needs: both models' scores with the interval, drift, checks, lineage, reports."""
    run = state.get_run(review["run_id"]) or {}
    evaluation = run.get("evaluation") or {}
    metric = evaluation.get("metric")
    champion = evaluation.get("champion")
    validation = run.get("validation") or {}
    drift = validation.get("drift") or {}
    version = state.get_version(review["dataset"], review["challenger_version"]) or {}
    reports = {}
    for kind in ("validation", "evaluation"):
        name = f"reports/{review['run_id']}/{kind}.html"
        reports[kind] = {"gs": f"gs://{cloud.settings.bucket}/{name}",
                         "url": f"{base_url}/reviews/{review['run_id']}/report/{kind}" if base_url else None,
                         "cli": f"tollgate report {review['run_id']} --kind {kind} --open"}
    return {
        "metric": metric,
        "challenger": ((evaluation.get("challenger") or {}).get("metrics") or {}),
        "champion": (champion.get("metrics") or {}) if champion else None,
        "difference": evaluation.get("difference"),
        "holdout_rows": evaluation.get("holdout_rows"),
        "thresholds": (run.get("spec") or {}).get("policy"),
        "drift": {"verdict": drift.get("verdict"), "message": drift.get("message"),
                  "drifted": [{k: f.get(k) for k in ("feature", "test", "distance", "score", "q_value", "status")}
                              for f in drift.get("features") or [] if f.get("status") != "none"]},
        "rows": {"in": validation.get("rows_in"), "out": validation.get("rows_out")},
        "checks": [{k: c.get(k) for k in ("name", "action", "failed_rows", "message")}
                   for c in validation.get("checks") or []],
        "challenger_model": {"version": review["challenger_version"], "estimator": version.get("estimator"),
                             "train_rows": version.get("train_rows"), "cv": (version.get("metrics") or {}).get("cv"),
                             "training_batches": serving.training_batches(version)},
        "source": run.get("source"),
        "reports": reports,
    }


def handle(cloud: Cloud, state: st.State, method: str, path: str, args: dict[str, str],
           body: bytes, authorization: str | None, base_url: str | None,
           verifier: identity.Verifier | None) -> tuple[int, Any, str]:
    """One request → (status, payload, content type). Every failure is a 4xx with a message."""
    try:
        caller = caller_identity(authorization, verifier, base_url)
        parts = [p for p in path.strip("/").split("/") if p]
        if not parts or parts[0] != "reviews":
            raise HttpError(404, "not found: the review API lives under /reviews")
        if method == "GET" and len(parts) == 1:
            status = args.get("status", "pending")
            if status not in (*STATUSES, "all"):
                raise HttpError(400, f"status must be one of {', '.join(STATUSES)} or all")
            promotion.expire_overdue(cloud, state)
            reviews = state.list_reviews(None if status == "all" else status, args.get("dataset"))
            return 200, {"reviews": reviews}, "application/json"
        if len(parts) == 1:
            raise HttpError(405, f"{method} /reviews: list with GET; decide with POST /reviews/<run_id>/approve|reject")
        run_id = parts[1]
        review = state.get_review(run_id)
        if review is None:
            raise HttpError(404, f"no review for run {run_id}; list pending ones with GET /reviews")
        if method == "GET" and len(parts) == 2:
            review = expired_if_overdue(cloud, state, review)
            return 200, {**review, "evidence": evidence(cloud, state, review, base_url)}, "application/json"
        if method == "GET" and len(parts) == 4 and parts[2] == "report":
            if parts[3] not in ("validation", "evaluation"):
                raise HttpError(404, "reports: validation or evaluation")
            try:
                return 200, cloud.read_bytes(f"reports/{run_id}/{parts[3]}.html"), "text/html; charset=utf-8"
            except errors.NotFound:
                raise HttpError(404, f"run {run_id} has no {parts[3]} report") from None
        if method == "POST" and len(parts) == 3 and parts[2] in ("approve", "reject"):
            try:
                request = orjson.loads(body or b"{}")
            except orjson.JSONDecodeError as exc:
                raise HttpError(400, f"the body is not valid JSON: {exc}") from None
            if not isinstance(request, dict):
                raise HttpError(400, 'the body must be a JSON object: {"reason": "..."}')
            named = request.get("reviewer")
            if named not in (None, "", caller):   # the audit trail records who verifiably decided, no one else
                raise HttpError(400, f"the reviewer is the caller your token names ({caller}), not {str(named)[:80]!r}"
                                     ": leave `reviewer` out")
            result = promotion.resolve_review(cloud, state, run_id, parts[2], caller,
                                              str(request.get("reason") or ""))
            return 200, result, "application/json"
        raise HttpError(405 if len(parts) <= 3 else 404, f"{method} {path} is not part of the review API")
    except (errors.ReviewError, errors.DeploymentFailed) as exc:
        return STATUS[type(exc)], {"error": str(exc)}, "application/json"
    except HttpError as exc:
        return exc.status, {"error": str(exc)}, "application/json"
