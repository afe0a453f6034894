"""Function `review` (HTTP): human review of decisions (API in tollgate/reviews.py).
Function `review-expiry` (topic review-tick, on a schedule): expire overdue reviews."""

import functools
import os

import functions_framework
import orjson
from flask import Response

from tollgate import events, identity, log, promotion, reviews, runtime


@functools.cache
def verifier() -> identity.Verifier:
    """Who may be recorded as a reviewer: ID tokens for this function's URL, Google-signed on Google Cloud, signed
    by the local cloud locally (TOLLGATE_IDENTITY=local); built on the first request."""
    return identity.from_env(dict(os.environ))


@functions_framework.http
def review(request):
    with log.context(**log.trace_field(request.headers, os.environ.get("GOOGLE_CLOUD_PROJECT"))):
        status, payload, content_type = reviews.handle(
            runtime.cloud(), runtime.state(), request.method, request.path, dict(request.args), request.get_data(),
            request.headers.get("Authorization"), request.host_url.rstrip("/"), verifier())
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload, default=str)
    return Response(body, status=status, content_type=content_type)


def _expire(message: events.Message) -> str:
    expired = promotion.expire_overdue(runtime.cloud(), runtime.state())
    return f"expired {len(expired)}"


@functions_framework.cloud_event
def on_review_tick(cloud_event):
    runtime.handle_event(cloud_event, _expire)
