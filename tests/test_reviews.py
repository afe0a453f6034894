"""The review API's checks that come before any state is read (pure): token, identity, routes."""

import base64

import orjson

from tollgate import reviews


def call(method, path, authorization=None):
    return reviews.handle(None, None, method, path, {}, b"", authorization, None)


def test_local_token_is_required(monkeypatch):
    monkeypatch.setenv(reviews.TOKEN_ENV, "s3cret")
    status, body, _ = call("GET", "/reviews")
    assert status == 401 and "TOLLGATE_REVIEW_TOKEN" in body["error"]
    assert call("GET", "/reviews", "Bearer wrong")[0] == 401
    assert call("GET", "/nothing-here", "Bearer s3cret")[0] == 404
    status, body, _ = call("POST", "/reviews", "Bearer s3cret")
    assert status == 405 and "approve|reject" in body["error"]


def test_on_gcp_the_identity_comes_from_the_verified_token(monkeypatch):
    monkeypatch.delenv(reviews.TOKEN_ENV, raising=False)
    claims = base64.urlsafe_b64encode(orjson.dumps({"email": "ana@example.com"})).decode().rstrip("=")
    assert reviews.caller_identity(f"Bearer header.{claims}.signature") == "ana@example.com"
    assert reviews.caller_identity(None) is None
    assert reviews.caller_identity("Bearer not-a-jwt") is None
