"""The console: IAP's signed header verified (never trusted), every page rendered from Firestore, and each
refusal: no identity, a bad CSRF token, a stale approval, an expired review, an unconfirmed serving move."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.console.auth import IAP_ISSUER, IapVerifier, Unauthenticated
from services.console.main import Console, create_app
from tests.test_artifacts import RAW

AUDIENCE = "/projects/123/locations/us-central1/services/console"


def keypair():
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def assertion(private: str, kid: str = "k1", **claims) -> str:
    from google.auth import jwt
    from google.auth.crypt import es256

    now = int(time.time())
    payload = {"iss": IAP_ISSUER, "aud": AUDIENCE, "email": "ada@example.com", "sub": "accounts.google.com:1",
               "iat": now, "exp": now + 600, **claims}
    return jwt.encode(es256.ES256Signer.from_string(private, kid), payload).decode()


@pytest.fixture(scope="module")
def iap():
    private, public = keypair()
    return private, IapVerifier(AUDIENCE, keys=lambda: {"k1": public})


def test_a_signed_iap_assertion_names_the_user(iap):
    private, verifier = iap
    assert verifier.identity(assertion(private)) == "ada@example.com"
    assert verifier.identity(assertion(private, email="accounts.google.com:bo@example.com")) == "bo@example.com"


def unsigned(claims: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'kid': 'k1'})}.{part(claims)}."


@pytest.mark.parametrize("forge, message", [
    (lambda p: assertion(keypair()[0]), "does not verify"),                         # signed by another key
    (lambda p: unsigned({"iss": IAP_ISSUER, "aud": AUDIENCE, "email": "eve@example.com"}), "not signed with ES256"),
    (lambda p: assertion(p, aud="/projects/999/global/backendServices/1"), "does not verify"),   # another app
    (lambda p: assertion(p, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200), "does not verify"),
    (lambda p: assertion(p, iss="https://accounts.google.com"), "not by https://cloud.google.com/iap"),
    (lambda p: assertion(p, kid="unknown"), "does not verify"),
    (lambda p: "not-a-jwt", "malformed"),
    (lambda p: None, "no X-Goog-IAP-JWT-Assertion header"),
])
def test_a_forged_or_unsigned_assertion_is_refused(iap, forge, message):
    private, verifier = iap
    with pytest.raises(Unauthenticated, match=message):
        verifier.identity(forge(private))


def test_on_gcp_every_page_fails_closed_without_a_verified_identity(iap):
    private, verifier = iap
    client = create_app({"TOLLGATE_CONSOLE_AUTH": "iap", "TOLLGATE_CONSOLE_SECRET": "s"}, console=Console(),
                        verifier=verifier).test_client()
    refused = client.get("/reviews")
    assert refused.status_code == 401 and b"no X-Goog-IAP-JWT-Assertion header" in refused.data
    forged = client.get("/", headers={"X-Goog-IAP-JWT-Assertion": assertion(keypair()[0])})
    assert forged.status_code == 401
    unconfigured = create_app({"TOLLGATE_CONSOLE_SECRET": "s"}, console=Console()).test_client()
    assert unconfigured.get("/").status_code == 401      # no audience: no page at all
    assert unconfigured.get("/health").status_code == 200
    assert unconfigured.get("/static/plotly.min.js").status_code == 200     # the charts' library, served here


# ------------------------------------------------------------------ pages and actions, over the emulators

@pytest.fixture
def console(cloud, state):
    app = create_app({"TOLLGATE_CONSOLE_AUTH": "local", "TOLLGATE_ACTOR": "ada", "TOLLGATE_CONSOLE_SECRET": "t"},
                     console=Console(cloud, state))
    return app.test_client()


def csrf(page: bytes) -> str:
    return re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()


@pytest.fixture
def pending(state, unique):
    """A dataset with two runs waiting for review (both judged against "no champion yet")."""
    from tollgate import lifecycle

    dataset = f"ds_{unique}"
    runs = [f"run-{unique}-a", f"run-{unique}-b"]
    for run_id in runs:
        state.create_run(run_id, {"dataset": dataset, "spec": {**RAW, "name": dataset}})
        state.register_version(dataset, run_id, lambda v: {})
        state.transition(run_id, (lifecycle.RECEIVED,), lifecycle.EVALUATED)
        state.apply_decision(run_id, dataset, "review", "small holdout", {}, None)
    return dataset, runs


@pytest.mark.emulator
def test_every_page_renders_what_firestore_holds(console, pending, state):
    dataset, (first, _) = pending
    overview = console.get("/")
    assert overview.status_code == 200 and dataset.encode() in overview.data and b"2 pending" in overview.data
    page = console.get(f"/datasets/{dataset}")
    assert page.status_code == 200 and first.encode() in page.data and b"/static/plotly.min.js" in page.data
    def runs_table(query: str) -> bytes:
        return console.get(f"/datasets/{dataset}?{query}").data.split(b'id="runs"', 1)[1]
    assert first.encode() in runs_table("decision=review") and first.encode() not in runs_table("status=failed")
    assert runs_table("runs=1").count(b'href="/runs/') == 1 and b"more runs" in runs_table("runs=1")
    assert console.get(f"/datasets/{dataset}?runs=-5").status_code == 200
    assert console.get(f"/datasets/{dataset}?at=yesterday").status_code == 200       # the page says why
    assert b"not an ISO time" in console.get(f"/datasets/{dataset}?at=yesterday").data
    assert console.get(f"/runs/{first}").status_code == 200
    assert console.get(f"/datasets/{dataset}/versions/1").status_code == 200
    assert console.get(f"/datasets/{dataset}/monitoring").status_code == 200
    moved = {"verdict": "drift", "max_shift": 0.042, "message": "trip_seconds 63% → 59% of the attribution"}
    state.record_window(dataset, {"dataset": dataset, "start": "2026-11-22T10:00:00+00:00",
                                  "end": "2026-11-22T11:00:00+00:00", "requests": 300, "versions": {"1": {
                                      "requests": 300, "error_rate": 0.0, "latency_ms": {"p99": 3.0},
                                      "drift": {"verdict": "none"}, "attribution_drift": moved}}})
    watched = console.get(f"/datasets/{dataset}/monitoring").data
    assert b"attribution drift" in watched and b"drift (4.2%)" in watched and "63% → 59%".encode() in watched
    inbox = console.get("/reviews")
    assert inbox.status_code == 200 and first.encode() in inbox.data
    review = console.get(f"/reviews/{first}")
    assert review.status_code == 200 and b'id="approve"' in review.data
    assert console.get("/runs/nope").status_code == 404 and console.get("/datasets/nope").status_code == 404
    compared = console.get(f"/compare?a={first}&b={pending[1][1]}")   # two runs side by side
    assert compared.status_code == 200 and b'id="comparison"' in compared.data and b"challenger version" in \
        compared.data and b'class="differs"' in compared.data
    assert console.get(f"/compare?a={first}").status_code == 404


@pytest.mark.emulator
def test_the_run_and_version_pages_show_what_each_model_relies_on(console, state, unique):
    from tollgate import lifecycle

    dataset, run_id = f"imp_{unique}", f"run-{unique}-imp"
    state.create_run(run_id, {"dataset": dataset, "spec": {**RAW, "name": dataset}})
    state.register_version(dataset, run_id, lambda v: {})
    importance = {"metric": "r2", "repeats": 5, "rows": 120, "confidence": 0.95, "features": [
        {"feature": "trip_miles", "challenger": {"mean": 0.41, "std": 0.02, "low": 0.38, "high": 0.44},
         "champion": {"mean": 0.35, "std": 0.01, "low": 0.33, "high": 0.37}},
        {"feature": "<b>$ band</b>", "challenger": {"mean": 0.0012, "std": 0.001, "low": -0.0001, "high": 0.0025},
         "champion": None}]}
    evaluation = {"metric": "r2", "holdout_rows": 120, "challenger": {"metrics": {"r2": 0.8}, "version": 1},
                  "champion": {"metrics": {"r2": 0.7}, "version": 0}, "difference": None, "slices": [],
                  "importance": importance}
    state.transition(run_id, (lifecycle.RECEIVED,), lifecycle.EVALUATED, evaluation=evaluation)
    page = console.get(f"/runs/{run_id}").data.decode()
    table = page.split('id="importance"', 1)[1].split("</table>", 1)[0]
    assert "<td>trip_miles</td>" in table and "0.4100" in table and "0.3500" in table and "[0.3800, 0.4400]" in table
    assert "&lt;b&gt;$ band&lt;/b&gt;" in table and "<b>$" not in table   # a column name is text, never markup
    version = console.get(f"/datasets/{dataset}/versions/1").data.decode()
    table = version.split('id="importance"', 1)[1].split("</table>", 1)[0]
    assert "this version" in table and "0.4100" in table and "0.3500" not in table   # its own, not the champion's


@pytest.mark.emulator
def test_a_decision_needs_the_csrf_token_a_reason_and_fresh_evidence(console, state, pending):
    dataset, (first, second) = pending
    form = {"action": "reject", "reason": "too few rows", "champion_version": ""}
    assert console.post(f"/reviews/{first}/decide", data=form).status_code == 400              # no token
    assert console.post(f"/reviews/{first}/decide", data={**form, "csrf_token": "forged"}).status_code == 400
    token = csrf(console.get(f"/reviews/{first}").data)
    assert console.get(f"/reviews/{first}/decide").status_code == 405                       # no change on GET
    no_reason = console.post(f"/reviews/{first}/decide", data={**form, "reason": " ", "csrf_token": token})
    assert no_reason.status_code == 400 and b"a reason is required" in no_reason.data
    stale = console.post(f"/reviews/{first}/decide", data={**form, "champion_version": "7", "csrf_token": token})
    assert stale.status_code == 409 and b"reload the review" in stale.data
    done = console.post(f"/reviews/{first}/decide", data={**form, "csrf_token": token})
    assert done.status_code == 303 and done.headers["Location"].endswith(f"/runs/{first}")
    assert state.get_review(first)["status"] == "rejected" and state.get_review(first)["reviewer"] == "ada"
    assert [(e["event"], e["actor"]) for e in state.ledger(dataset)][-1] == ("rejected", "ada")
    again = console.post(f"/reviews/{first}/decide", data={**form, "csrf_token": token})
    assert again.status_code == 409                                                         # already decided
    state.db.collection("reviews").document(second).update(
        {"expires_at": dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)})
    expired = console.post(f"/reviews/{second}/decide", data={**form, "action": "approve", "csrf_token": token})
    assert expired.status_code in (404, 409, 410) and state.get_review(second)["status"] == "expired"


@pytest.mark.emulator
def test_a_serving_move_needs_a_confirmation_and_a_reason(console, pending):
    dataset, (first, _) = pending
    page = console.get(f"/datasets/{dataset}").data
    assert b'id="serving-form"' not in page and b"None now" in page   # no canary, no predecessor: nothing offered
    token = csrf(console.get(f"/reviews/{first}").data)   # a form of the console's: the session's CSRF token
    unconfirmed = console.post(f"/datasets/{dataset}/serving",
                               data={"action": "rollback", "reason": "bad", "csrf_token": token})
    assert unconfirmed.status_code == 400 and b"confirm" in unconfirmed.data
    nothing = console.post(f"/datasets/{dataset}/serving", data={"action": "rollback", "reason": "bad",
                                                                 "confirm": "yes", "csrf_token": token})
    assert nothing.status_code == 409                     # nothing serves, so nothing to roll back to
    unknown = console.post(f"/datasets/{dataset}/serving", data={"action": "delete", "reason": "x",
                                                                 "confirm": "yes", "csrf_token": token})
    assert unknown.status_code == 400


@pytest.mark.emulator
def test_a_model_is_downloaded_only_with_its_registered_hash(console, cloud, state, unique):
    from tollgate import artifacts

    dataset, blob = f"ds_{unique}", b"model bytes"
    state.create_run(f"run-{unique}", {"dataset": dataset})
    version = state.register_version(dataset, f"run-{unique}", lambda v: {"sha256": artifacts.sha256(blob)})
    cloud.bucket.blob(f"models/{dataset}/{version}/model.skops").upload_from_string(blob)
    got = console.get(f"/datasets/{dataset}/versions/{version}/model.skops")
    assert got.status_code == 200 and got.data == blob and got.headers["X-Sha256"] == artifacts.sha256(blob)
    cloud.bucket.blob(f"models/{dataset}/{version}/model.skops").upload_from_string(b"altered")
    assert console.get(f"/datasets/{dataset}/versions/{version}/model.skops").status_code == 500


def test_charts_take_firestore_times_and_records_as_they_are():
    from google.api_core.datetime_helpers import DatetimeWithNanoseconds

    from services.console import charts

    at = DatetimeWithNanoseconds(2026, 11, 30, 12, 0, 0, tzinfo=dt.timezone.utc)
    models = [{"version": 1, "role": "champion", "metric": "r2", "value": 0.9, "cv": {"score": 0.88, "std": 0.01},
               "registered_at": at}, {"version": 2, "role": "challenger", "metric": "r2", "value": None}]
    html = charts.metric_over_versions(models, [{"at": at, "event": "promote"}])
    assert "Plotly.newPlot" in html and "2026-11-30T12:00:00" in html and "cdn" not in html.lower()
    assert charts.metric_over_versions([models[1]], []) is None
    drift = {"drift": {"features": [{"feature": "fare", "score": 0.3, "status": "severe"}]}}
    assert "fare" in charts.drift(drift) and charts.drift({}) is None
    windows = [{"end": at, "versions": {"3": {"error_rate": 0.01, "latency_ms": {"p99": 12.0},
                                               "realised": {"value": 0.8}}}}]
    assert "v3" in charts.windows(windows) and charts.windows([]) is None


def test_each_feature_is_drawn_against_the_reference_on_the_reports_bins():
    import numpy as np
    import pandas as pd

    from services.console import charts
    from tollgate import drift
    from tollgate import spec as specs

    spec = specs.from_dict(RAW)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500), "c": rng.choice(["x", "y"], 500),
                          "y": rng.normal(size=500)})
    reference = drift.profile(frame, spec)
    builder = drift.ProfileBuilder(drift.profiled_columns(spec), reference)   # the validator's: the reference's bins
    builder.add(frame.assign(a=frame["a"] + 3))
    batch = builder.result()
    drawn = charts.features(batch, reference, ["c"])
    assert len(drawn) == len(batch["columns"]) and '"c"' in drawn[0]          # the drift table's order first
    assert all('"reference"' in html and '"batch"' in html for html in drawn)
    assert len(charts.features(batch, None, [])) == len(batch["columns"])        # no champion yet: the batch alone
    assert charts.features(None, None, []) == []


def test_category_values_and_names_are_drawn_as_text_not_markup():
    """Plotly renders a subset of HTML in labels: a category `<a href=...>` or a column `<b>x</b>` from a user's
    file would be a link or bold text. Escaped, it is shown as written."""
    import numpy as np
    import pandas as pd

    from services.console import charts
    from tollgate import drift
    from tollgate import spec as specs

    raw = {**RAW, "columns": {**RAW["columns"], "c": {"type": "string"}}}
    spec = specs.from_dict(raw)
    hostile = '<a href="javascript:alert(1)">click</a>'
    frame = pd.DataFrame({"a": np.arange(50.0), "b": np.arange(50.0), "c": [hostile, "$\\x$"] * 25,
                          "y": np.arange(50.0)})
    profile = drift.profile(frame, spec)
    html = "".join(charts.features(profile, None, ["c"]))
    assert "&lt;a href" in html and '<a href="javascript' not in html and "$\\\\x$" in html
