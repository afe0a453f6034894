"""The review API's checks that come before any state is read (pure): the caller's identity, verified from a
signed ID token only — forged, unsigned, expired, wrong-audience and wrong-issuer tokens are refused — and
routes."""

import base64
import json
import time

import pytest

from tollgate import identity, reviews

URL = "https://review-123.europe-west1.run.app"


@pytest.fixture(scope="module")
def issuer():
    return identity.LocalIssuer.generate()


@pytest.fixture(scope="module")
def verifier(issuer):
    return identity.local_tokens(issuer.public_keys())


def call(verifier, method, path, authorization=None, url=URL):
    return reviews.handle(None, None, method, path, {}, b"", authorization, url, verifier)


def test_a_signed_token_for_the_functions_url_names_the_caller(issuer, verifier):
    token = issuer.mint("ana@example.com", URL)
    assert reviews.caller_identity(f"Bearer {token}", verifier, URL + "/") == "ana@example.com"
    assert call(verifier, "GET", "/nothing-here", f"Bearer {token}")[0] == 404
    status, body, _ = call(verifier, "POST", "/reviews", f"Bearer {token}")
    assert status == 405 and "approve|reject" in body["error"]


def _unsigned(claims: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize(("forge", "message"), [
    (lambda i: identity.LocalIssuer.generate().mint("eve@example.com", URL), "does not verify"),   # another key
    (lambda i: _unsigned({"iss": identity.LOCAL_ISSUER, "aud": URL, "email": "eve@example.com",
                          "exp": int(time.time()) + 600}), "not signed with RS256"),
    (lambda i: i.mint("eve@example.com", URL, lifetime=-3600, iat=int(time.time()) - 7200), "does not verify"),
    (lambda i: i.mint("eve@example.com", "https://another-function.run.app"), "does not verify"),   # audience
    (lambda i: i.mint("eve@example.com", URL, iss="https://accounts.google.com"), "issued by"),
    (lambda i: i.mint("eve@example.com", URL, email_verified=False), "no verified e-mail"),
    (lambda i: "header.payload.signature", "malformed"),
    (lambda i: "", "send `Authorization: Bearer"),
])
def test_forged_unsigned_expired_wrong_audience_and_wrong_issuer_tokens_are_refused(issuer, verifier, forge,
                                                                                   message):
    status, body, _ = call(verifier, "GET", "/reviews", f"Bearer {forge(issuer)}".strip())
    assert status == 401 and message in body["error"], body


def test_the_old_unverified_decode_is_gone(verifier):
    """A token whose payload merely says who it is (no valid signature) named the reviewer before."""
    claims = base64.urlsafe_b64encode(json.dumps({"email": "ana@example.com"}).encode()).decode().rstrip("=")
    status, body, _ = call(verifier, "GET", "/reviews", f"Bearer eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln")
    assert status == 401


def test_without_a_verifier_every_request_is_refused():
    status, body, _ = call(None, "GET", "/reviews", "Bearer x")
    assert status == 401 and "refuses every request" in body["error"]


def test_a_deployment_configures_google_or_local_tokens_and_extra_audiences(issuer):
    google = identity.from_env({"TOLLGATE_ID_AUDIENCES": identity.GCLOUD_AUDIENCE})
    assert google.issuers == identity.GOOGLE_ISSUERS and google.audiences == (identity.GCLOUD_AUDIENCE,)
    local = identity.from_env({"TOLLGATE_IDENTITY": "local",
                               "TOLLGATE_LOCAL_ISSUER_KEYS": json.dumps(issuer.public_keys())})
    assert local.identity(issuer.mint("bo", "http://127.0.0.1:9"), ("http://127.0.0.1:9",)) == "bo"
