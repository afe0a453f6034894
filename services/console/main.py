"""The Tollgate console: the pipeline at a glance in a browser, and reviews and serving moves decided with a click.

Server-rendered Flask over the same adapters and rules as the CLI: the pages show the CLI's views
(`tollgate.views`), a review is decided by `promotion.resolve_review` (what the `review` function runs), a
canary or rollback by `promotion.move`. No rule or state change is implemented twice.

Every page has its own URL. Forms carry a CSRF token and change state only on POST, each with a required reason,
recorded in the ledger with the verified identity. Charts are Plotly, whose JavaScript the console serves itself.

    TOLLGATE_CONSOLE_AUTH      iap (default: the identity IAP signed, verified) or local (the local cloud's user)
    TOLLGATE_CONSOLE_AUDIENCE  with iap: its audience, /projects/NUMBER/global/backendServices/ID (terraform sets it)
    TOLLGATE_CONSOLE_SECRET    the key CSRF tokens are signed with
"""

from __future__ import annotations

import getpass
import os
import time
from pathlib import Path
from typing import Any, Mapping

from flask import Flask, Response, abort, g, redirect, render_template, request, send_file, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from services.console import charts
from services.console.auth import IAP_HEADER, IapVerifier, Unauthenticated, Verifier
from tollgate import errors, lifecycle, log, promotion, reviews, serving, tracing, views
from tollgate.cloud import Adapters

HERE = Path(__file__).parent
RUN_STATUSES = (*lifecycle.ORDER, lifecycle.QUEUED, lifecycle.SUPERSEDED, lifecycle.DUPLICATE, lifecycle.REJECTED,
                lifecycle.FAILED)
ACTIONS = {"canary-promote": "promote the canary to 100%", "canary-abort": "abort the canary (0%)",
           "rollback": "roll back to the previous champion"}


def available_actions(ds: dict[str, Any]) -> dict[str, str]:
    """The serving moves the dataset's state allows: the canary's only while one runs, a rollback once a champion
    had a predecessor."""
    return {key: text for key, text in ACTIONS.items()
            if (ds.get("canary") if key.startswith("canary-") else ds.get("previous_version") is not None)}


class Console(Adapters):
    """The cloud and Firestore the pages read, made on first use (the same adapters as the CLI's target)."""

    def __init__(self, cloud: Any = None, state: Any = None) -> None:
        super().__init__(cloud, state)
        self.urls: dict[str, tuple[str, float]] = {}   # dataset → (predictor URL, when it was read)


def create_app(env: Mapping[str, str] | None = None, console: Console | None = None,
               verifier: Verifier | None = None) -> Flask:
    env = dict(os.environ if env is None else env)
    app = Flask(__name__, template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"))
    secret = env.get("TOLLGATE_CONSOLE_SECRET")
    mode = env.get("TOLLGATE_CONSOLE_AUTH", "iap")
    if mode not in ("iap", "local"):
        raise ValueError(f"TOLLGATE_CONSOLE_AUTH={mode!r}: iap or local")
    app.config.update(SECRET_KEY=secret or os.urandom(32).hex(), WTF_CSRF_TIME_LIMIT=None,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SECURE=mode == "iap")
    CSRFProtect(app)
    data = console or Console()
    if mode == "iap" and verifier is None and env.get("TOLLGATE_CONSOLE_AUDIENCE"):
        verifier = IapVerifier(env["TOLLGATE_CONSOLE_AUDIENCE"])
    local_user = env.get("TOLLGATE_ACTOR") or _login()
    app.jinja_env.filters["when"] = views.when
    app.jinja_env.filters["num"] = lambda v, p="{:.4f}": "" if v is None else p.format(v)
    app.jinja_env.globals.update(serving_text=views.serving_text)

    @app.before_request
    def identify() -> Response | None:
        if request.endpoint in ("health", "static", "plotly"):
            return None
        try:
            if mode == "local":
                g.identity = local_user
            elif verifier is None:
                raise Unauthenticated("TOLLGATE_CONSOLE_AUDIENCE is not set: the console cannot verify IAP's "
                                      "header, so it refuses every request")
            else:
                g.identity = verifier.identity(request.headers.get(IAP_HEADER))
        except Unauthenticated as exc:
            log.warning("console request refused", reason=str(exc), path=request.path)
            return _error(401, str(exc))
        return None

    @app.errorhandler(CSRFError)
    def csrf_refused(exc: CSRFError) -> Response:
        return _error(400, f"the form's CSRF token is missing or wrong ({exc.description}); reload the page")

    @app.errorhandler(404)
    def not_found(exc: Any) -> Response:
        return _error(404, getattr(exc, "description", None) or f"nothing at {request.path}")

    @app.get("/health")
    def health() -> Response:
        return Response("ok", mimetype="text/plain")

    @app.get("/static/plotly.min.js")
    def plotly() -> Response:
        return send_file(charts.PLOTLY_JS, mimetype="application/javascript", max_age=86400)

    @app.get("/")
    def overview() -> str:
        rows = []
        for status in data.dataset_statuses(lambda name: _predictor_url(data, name)):   # the CLI's, the same way
            name = status["dataset"]
            last = data.state.list_runs(1, name, views.RUN_SUMMARY_FIELDS)
            rows.append({**status, "last_run": views.run_summary(last[0]) if last else None,
                         "alerts": data.state.alerts(name, limit=3)})
        return render_template("overview.html", datasets=rows, identity=g.identity)

    @app.get("/datasets/<name>")
    def dataset(name: str) -> str:
        ds = _dataset(data, name)
        versions = data.state.list_versions(name)
        models = views.model_rows(ds, versions, data.state.get_runs([v["run_id"] for v in versions],
                                                                     views.MODEL_ROW_FIELDS))
        entries = data.state.ledger(name)
        at_text = request.args.get("at", "").strip()
        answer, at_error = None, None
        if at_text:
            try:
                at = views.parse_time(at_text)
                answer = {"at": at, "found": serving.serving_at(entries, at)}
            except ValueError as exc:
                at_error = str(exc)
        status, decision = request.args.get("status", ""), request.args.get("decision", "")
        # the newest runs, 50 unless asked for more (a filter looks through the newest 500)
        shown = max(1, min(request.args.get("runs", 50, type=int) or 50, 1_000))
        listed = data.state.list_runs(500 if status or decision else shown, name, views.RUN_SUMMARY_FIELDS)
        runs = [r for r in map(views.run_summary, listed)
                if status in ("", r["status"]) and decision in ("", r["decision"])][:shown]
        return render_template("dataset.html", ds=ds, name=name, models=models, ledger=views.history_rows(entries),
                               runs=runs, shown=shown, status=status, decision=decision, answer=answer,
                               at_text=at_text,
                               at_error=at_error, chart=charts.metric_over_versions(models, entries),
                               statuses=RUN_STATUSES, actions=available_actions(ds), identity=g.identity)

    @app.get("/datasets/<name>/monitoring")
    def monitoring(name: str) -> str:
        _dataset(data, name)
        windows = data.state.windows(name, limit=96)
        return render_template("monitoring.html", name=name, windows=windows, alerts=data.state.alerts(name),
                               chart=charts.windows(windows), identity=g.identity)

    @app.get("/datasets/<name>/versions/<int:version>")
    def version(name: str, version: int) -> str:
        record = data.state.get_version(name, version) or abort(404, f"{name} has no version {version}")
        run = data.state.get_run(record["run_id"])
        role = serving.role_of(version, data.state.get_dataset(name), run)
        return render_template("version.html", name=name, record=views.model_record(record, role),
                               importance=views.version_importance(run), identity=g.identity)

    @app.get("/datasets/<name>/versions/<int:version>/model.skops")
    def download(name: str, version: int) -> Response:
        from tollgate import artifacts

        record = data.state.get_version(name, version) or abort(404, f"{name} has no version {version}")
        try:
            blob = artifacts.read_verified(data.cloud, record)
        except artifacts.ArtifactError as exc:
            return _error(500, f"{exc}; it is not served")
        return Response(blob, mimetype="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="{name}-v{version}.skops"',
            "X-Sha256": record["sha256"]})

    @app.get("/runs/<run_id>")
    def run(run_id: str) -> str:
        record = data.state.get_run(run_id) or abort(404, f"no run {run_id}")
        detail = views.run_detail(record)
        version_record = None
        if record.get("challenger_version"):
            version_record = data.state.get_version(record["dataset"], record["challenger_version"])
        profile, reference = _profiles(data, record)
        order = [f["feature"] for f in ((detail.get("validation") or {}).get("drift") or {}).get("features") or []]
        trace = tracing.describe(run_id, data.cloud.settings.project)
        spans = tracing.tree(trace.get("spans") or [])
        return render_template("run.html", run=detail, steps=_steps(record.get("history") or []),
                               version=version_record, drift_chart=charts.drift(detail.get("validation")),
                               feature_charts=charts.features(profile, reference, order),
                               review=data.state.get_review(run_id), trace=trace, spans=spans,
                               first_ns=spans[0][1]["start_ns"] if spans else 0, identity=g.identity)

    @app.get("/compare")
    def compare() -> str:
        a, b = request.args.get("a", "").strip(), request.args.get("b", "").strip()
        runs = [data.state.get_run(r) if r else None for r in (a, b)]
        if not all(runs):
            abort(404, "compare two runs: /compare?a=RUN&b=RUN (each a run id)")

        def version(run: dict[str, Any]) -> dict[str, Any] | None:
            number = run.get("challenger_version")
            return data.state.get_version(run["dataset"], int(number)) if number is not None else None
        compared = views.compare_runs(runs[0], runs[1], version(runs[0]), version(runs[1]))
        return render_template("compare.html", compared=compared, identity=g.identity)

    @app.get("/runs/<run_id>/reports/<kind>")
    def report(run_id: str, kind: str) -> Response:
        from tollgate.errors import NotFound

        if kind not in ("validation", "evaluation"):
            abort(404, "reports: validation or evaluation")
        try:
            html = data.cloud.read_bytes(f"reports/{run_id}/{kind}.html")
        except NotFound:
            abort(404, f"run {run_id} has no {kind} report")
        return Response(html, mimetype="text/html", headers={"Content-Security-Policy": "script-src 'none'"})

    @app.get("/reviews")
    def review_list() -> str:
        status = request.args.get("status", "pending")
        if status not in (*reviews.STATUSES, "all"):
            abort(404, f"status: one of {', '.join(reviews.STATUSES)} or all")
        promotion.expire_overdue(data.cloud, data.state)
        return render_template("reviews.html", reviews=data.state.list_reviews(None if status == "all" else status),
                               status=status, statuses=reviews.STATUSES, identity=g.identity)

    @app.get("/reviews/<run_id>")
    def review(run_id: str) -> str:
        record = data.state.get_review(run_id) or abort(404, f"no review for run {run_id}")
        record = reviews.expired_if_overdue(data.cloud, data.state, record)
        ds = data.state.get_dataset(record["dataset"])
        evidence = reviews.evidence(data.cloud, data.state, record, None)
        return render_template("review.html", review=record, evidence=evidence, champion=ds.get("champion_version"),
                               identity=g.identity)

    @app.post("/reviews/<run_id>/decide")
    def decide(run_id: str) -> Response | str:
        action, reason = request.form.get("action", ""), request.form.get("reason", "").strip()
        if action not in ("approve", "reject"):
            return _error(400, "the action is approve or reject")
        if not reason:
            return _error(400, "a reason is required: it goes into the decision ledger")
        record = data.state.get_review(run_id) or abort(404, f"no review for run {run_id}")
        seen = request.form.get("champion_version", "")
        current = data.state.get_dataset(record["dataset"]).get("champion_version")
        if seen != ("" if current is None else str(current)):
            return _error(409, f"the champion of {record['dataset']} is v{current} now, not the v{seen or 'none'} "
                               "the evidence page showed: reload the review and decide on what serves now")
        try:
            promotion.resolve_review(data.cloud, data.state, run_id, action, g.identity, reason)
        except (errors.ReviewError, errors.DeploymentFailed) as exc:
            return _error(reviews.STATUS[type(exc)], str(exc))
        return redirect(url_for("run", run_id=run_id), code=303)

    @app.post("/datasets/<name>/serving")
    def serving_move(name: str) -> Response | str:
        _dataset(data, name)
        action, reason = request.form.get("action", ""), request.form.get("reason", "").strip()
        if action not in ACTIONS:
            return _error(400, f"the action is one of {', '.join(ACTIONS)}")
        if not reason or request.form.get("confirm") != "yes":
            return _error(400, "confirm the move and give a reason: both go into the ledger")
        try:
            promotion.move(data.cloud, data.state, name, action, g.identity, reason)
        except serving.MoveError as exc:
            return _error(409, f"{name}: {exc}")
        except errors.DeploymentFailed as exc:
            return _error(502, f"{exc}; Firestore already says what should serve: repeat the move to finish it")
        return redirect(url_for("dataset", name=name), code=303)

    return app


def _error(status: int, message: str) -> Response:
    body = render_template("error.html", status=status, message=message, identity=getattr(g, "identity", None))
    return Response(body, status=status, mimetype="text/html")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local user"


def _spec_names(data: Console) -> list[str]:
    return data.cloud.list_specs()


def _dataset(data: Console, name: str) -> dict[str, Any]:
    ds = data.state.get_dataset(name)
    if not ds and name not in _spec_names(data):
        abort(404, f"no dataset {name!r}: push its spec with `tollgate spec push`")
    return ds or {"name": name}


URL_TTL = 300.0   # a predictor service's URL never changes once it exists; the Admin API is not asked per page


def _predictor_url(data: Console, dataset: str) -> str | None:
    from tollgate.cloud import run as cloudrun

    cached = data.urls.get(dataset)
    if cached and time.monotonic() - cached[1] < URL_TTL:
        return cached[0]
    try:
        service = cloudrun.get_service(data.cloud, dataset)
    except Exception as exc:   # the page still shows everything else
        log.warning("predictor service not read", dataset=dataset, error=type(exc).__name__)
        return None
    url = service.uri if service else None
    if url:
        data.urls[dataset] = (url, time.monotonic())
    return url


def _profiles(data: Console, run: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The batch's profile (its validation report) and the reference it was compared with (the profile stored
    beside the champion of that time); None where there is none."""
    report = data.cloud.read_json(f"reports/{run['run_id']}/validation.json") or {}   # None: no such object
    champion = (report.get("reference") or {}).get("champion_version")
    if champion is None:
        return report.get("profile"), None
    return report.get("profile"), data.cloud.read_json(f"models/{run['dataset']}/{int(champion)}/profile.json")


def _steps(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run's status changes with how long each lasted."""
    steps = []
    for i, entry in enumerate(history):
        after = history[i + 1]["at"] if i + 1 < len(history) else None
        seconds = (after - entry["at"]).total_seconds() if after and entry.get("at") else None
        steps.append({**entry, "seconds": seconds})
    return steps
