"""The tables `tollgate` prints: one renderer per view (views.py), on stdout."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from tollgate.cli.output import number, out
from tollgate.views import recovery, run_summary, serving_text, when, window_actions

DRIFT_COLOURS = {"none": "green", "warn": "yellow", "severe": "red"}


def run(record: dict[str, Any]) -> None:
    """One run: status, decision and reason, metrics with the interval, checks, drift, recoveries."""
    s = run_summary(record)
    table = Table(show_header=False, title=f"run {s['run_id']}")
    for key in ("dataset", "status", "followed_from", "superseded_by", "duplicate_of", "queued_behind", "decision",
                "reason", "message", "model_version", "challenger_version", "champion_version", "metric",
                "challenger_metric", "champion_metric", "rows_in", "rows_out", "drift", "quarantine"):
        if s.get(key) is not None:
            value = s[key]
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    review = s.get("review") or {}
    if review:
        table.add_row("review", f"{review['status']}" + (f" by {review['reviewer']}: {review.get('reason')}"
                                                         if review.get("reviewer") else
                                                         f" (expires {when(review.get('expires_at'))} UTC; "
                                                         f"tollgate review show {s['run_id']})"))
    diff = s.get("difference")
    if diff:
        table.add_row("improvement", f"{diff['improvement']:+.4f}  [{diff['low']:+.4f}, {diff['high']:+.4f}] "
                                     f"({diff['confidence']:.0%} paired bootstrap)")
    deployment = s.get("deployment") or {}
    if deployment.get("status") not in (None, "none"):
        traffic = ", ".join(f"v{t['version']} {t['percent']}%" for t in deployment.get("traffic") or [])
        table.add_row("deployment", deployment["status"] + (f" ({traffic})" if traffic else "")
                      + (f": {deployment['error']} (the decider retries it)"
                         if deployment.get("error") and deployment["status"] == "failed" else ""))
    if s.get("error"):
        error = s["error"]
        table.add_row("error", f"{error.get('step')}: {error.get('message')}"
                      + (f" (execution {error['execution'].rsplit('/', 1)[-1]})" if error.get("execution") else ""))
    for r in s.get("recoveries") or []:
        table.add_row("recovered", recovery(r))
    source = s.get("source") or {}
    if source.get("kind") == "retrain":
        table.add_row("source", f"retraining requested by the {source.get('requested_by')}: {source.get('reason')}")
    elif source:
        table.add_row("source", f"gs://{source['bucket']}/{source['object']}#{source['generation']}")
    out.print(table)
    validation = record.get("validation") or {}
    checks(validation)
    drift = validation.get("drift") or {}
    if drift.get("features"):
        table = Table(title=f"drift: {drift['verdict']} (FDR {drift.get('fdr')}; {drift.get('message', '')})")
        for col in ("feature", "test", "statistic", "p", "q", "distance", "score", "status"):
            table.add_column(col, justify="right" if col in ("statistic", "p", "q", "score") else "left")
        for f in drift["features"]:
            new = f" (+{len(f['new_categories'])} new)" if f.get("new_categories") else ""
            table.add_row(f["feature"], f["test"], f"{f['statistic']:.4g}", f"{f['p_value']:.2g}",
                          f"{f['q_value']:.2g}", f["distance"], f"{f['score']:.4f}",
                          f"[{DRIFT_COLOURS.get(f['status'], 'white')}]{f['status']}[/]{new}")
        out.print(table)
    elif drift.get("message"):
        out.print(f"drift: {drift['verdict']} ({drift['message']})")
    importance(record.get("evaluation") or {})
    if validation:
        out.print(f"full report: tollgate report {record['run_id']}"
                  + (f"  (evaluation: tollgate report {record['run_id']} --kind evaluation)"
                     if record.get("evaluation") else ""))


def importance(evaluation: dict[str, Any], top: int = 10, more: str = "tollgate run show --json") -> None:
    """The features the models rely on most: each one's permutation importance with its interval (the champion's
    beside the challenger's when there was one); ``more``: where the rest is."""
    imp = evaluation.get("importance") or {}
    if not imp.get("features"):
        return
    table = Table(title=f"permutation importance: loss of {imp['metric']} when a feature is shuffled "
                        f"({imp['rows']} held-out rows, {imp['repeats']} shuffles, {imp['confidence']:.0%} interval)")
    models = ["challenger"] + (["champion"] if any(f.get("champion") for f in imp["features"]) else [])
    for col in ("feature", *models):
        table.add_column(col, justify="left" if col == "feature" else "right")

    def cell(entry: dict[str, float] | None) -> str:
        return f"{entry['mean']:.4f} [{entry['low']:.4f}, {entry['high']:.4f}]" if entry else "–"

    for f in imp["features"][:top]:
        table.add_row(f["feature"], *(cell(f.get(m)) for m in models))
    out.print(table)
    if len(imp["features"]) > top:
        out.print(f"… and {len(imp['features']) - top} more ({more})", highlight=False)
    seconds = evaluation.get("seconds") or {}
    if seconds.get("total"):
        out.print(f"importance took {seconds['importance']:.2f} s of the evaluation's {seconds['total']:.2f} s "
                  f"({seconds['importance'] / seconds['total']:.0%})", highlight=False)


def checks(validation: dict[str, Any]) -> None:
    """The checks of a validation report that found something: rows, action, message, example rows."""
    if not validation.get("checks"):
        return
    failed = Table(title="checks that found something")
    for col in ("check", "action", "rows", "message", "examples"):
        failed.add_column(col, overflow="fold")
    for c in validation["checks"]:
        failed.add_row(c["name"], c["action"], str(c["failed_rows"]), c["message"],
                       "\n".join(_example(e) for e in c.get("examples") or []))
    out.print(failed)


def _example(example: dict[str, Any]) -> str:
    """``row=N`` first (Firestore does not keep key order), then the values."""
    return ", ".join(f"{k}={example[k]}" for k in sorted(example, key=lambda k: k != "row"))


def runs(records: list[dict[str, Any]]) -> None:
    table = Table(title="runs")
    for col in ("run", "dataset", "created", "status", "decision", "challenger", "champion", "serving"):
        table.add_column(col)
    for r in records:
        s = run_summary(r)
        decision = s["decided_as"] or (f"by {s['superseded_by']}" if s["superseded_by"] else "") or \
            (f"of {s['duplicate_of']}" if s["duplicate_of"] else "") or \
            (f"behind {s['queued_behind']}" if s["queued_behind"] else "")
        table.add_row(s["run_id"], s["dataset"] or "", when(s["created_at"]), s["status"] or "",
                      decision, number(s["challenger_metric"]), number(s["champion_metric"]),
                      str(s["model_version"] or ""))
    out.print(table)


def models(dataset: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"models of {dataset}")
    for col in ("version", "role", "held-out", "cross-validated", "estimator", "train rows", "batches", "run",
                "registered", "aliases, tags"):
        table.add_column(col)
    for r in rows:
        value = f"{r['metric']}={r['value']:.4f}" if r["value"] is not None else ""
        cv = f"{r['cv']['score']:.4f} ± {r['cv']['std']:.4f}" if r["cv"] else ""
        labels = ", ".join([*r.get("aliases", []), *(f"{k}={v}" for k, v in sorted((r.get("tags") or {}).items()))])
        table.add_row(str(r["version"]), r["role"], value, cv, r["estimator"] or "", str(r["train_rows"]),
                      str(r["batches"]), r["run_id"], when(r["registered_at"]), labels)
    out.print(table)


def history(dataset: str, rows: list[dict[str, Any]], at: Any, answer: dict[str, Any] | None) -> None:
    table = Table(title=f"ledger of {dataset}" + (f" up to {when(at)} UTC" if at else ""))
    for col in ("time (UTC)", "event", "actor", "run", "challenger", "serving after", "reason"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(when(r["at"]), r["event"] or "", r["actor"] or "", r["run_id"] or "",
                      str(r["challenger_version"] or ""), serving_text(r["serving_after"]), r["reason"] or "")
    out.print(table)
    if at is None:
        return
    if answer is None:
        out.print(f"At {when(at)} UTC nothing served {dataset} yet.")
        return
    since = answer["since"] or {}
    out.print(f"At {when(at)} UTC {dataset} was served by [bold]{serving_text(answer['serving'])}[/]"
              + (f", since {when(since.get('at'))} ({since.get('event')} by {since.get('actor')}"
                 f"{', run ' + since['run_id'] if since.get('run_id') else ''}): {since.get('reason')}"
                 if since else ""), highlight=False)
    canary = answer.get("canary_since")
    if canary:
        out.print(f"The canary v{canary['challenger_version']} was there since {when(canary['at'])} "
                  f"({canary['event']} by {canary['actor']}): {canary['reason']}", highlight=False)


def reviews(status: str, records: list[dict[str, Any]]) -> None:
    table = Table(title=f"reviews ({status})")
    for col in ("run", "dataset", "challenger", "requested (UTC)", "expires (UTC)", "status", "why"):
        table.add_column(col, overflow="fold")
    for r in records:
        table.add_row(r["run_id"], r["dataset"], f"v{r['challenger_version']}", when(r["requested_at"]),
                      when(r["expires_at"]), r["status"], r.get("reason") or "")
    out.print(table)
    if not records:
        out.print("no reviews" + (" waiting" if status == "pending" else ""))


def review(run_id: str, record: dict[str, Any]) -> None:
    ev = record["evidence"]
    table = Table(show_header=False, title=f"review of run {run_id} ({record['dataset']})")
    table.add_row("status", record["status"] + (f" by {record['reviewer']}: {record.get('resolution')}"
                                                if record.get("reviewer") else ""))
    table.add_row("why a person", record.get("reason") or "")
    table.add_row("expires (UTC)", when(record["expires_at"]))
    metric = ev.get("metric")
    if metric:
        champion = (ev.get("champion") or {}).get(metric)
        table.add_row(f"challenger v{record['challenger_version']}", f"{metric}={ev['challenger'].get(metric):.4f}")
        against = record.get("evaluated_against")
        table.add_row("champion" + (f" v{against}" if against is not None else ""),
                      f"{metric}={champion:.4f}" if champion is not None else "none yet (the first model)")
        diff = ev.get("difference")
        if diff:
            table.add_row("improvement", f"{diff['improvement']:+.4f}  [{diff['low']:+.4f}, {diff['high']:+.4f}] "
                                         f"({diff['confidence']:.0%} paired bootstrap, {ev['holdout_rows']} rows)")
        table.add_row("policy", ", ".join(f"{k}={v}" for k, v in (ev.get("thresholds") or {}).items()))
    cv = (ev.get("challenger_model") or {}).get("cv")
    if cv:
        table.add_row("cross-validated", f"{cv['score']:.4f} ± {cv['std']:.4f}")
    drift = ev.get("drift") or {}
    table.add_row("drift", f"{drift.get('verdict')}: " + ", ".join(
        f"{f['feature']} ({f['distance']}={f['score']:.3f}, {f['status']})" for f in drift.get("drifted") or [])
        or str(drift.get("message") or ""))
    table.add_row("rows", f"{ev['rows']['out']} used of {ev['rows']['in']}")
    for c in ev.get("checks") or []:
        table.add_row(f"check {c['name']}", f"{c['action']} {c['failed_rows']} rows: {c['message']}")
    for kind, report in ev["reports"].items():
        table.add_row(f"{kind} report", f"{report['cli']}\n{report['gs']}")
    out.print(table)
    if record["status"] == "pending":
        out.print(f"decide: tollgate review approve {run_id} --reason '...'   |   "
                  f"tollgate review reject {run_id} --reason '...'", highlight=False)


def status(payload: dict[str, Any]) -> None:
    out.print(f"project [bold]{payload['project']}[/]   bucket [bold]{payload['bucket']}[/]")
    table = Table(title="datasets")
    for col in ("dataset", "champion", "metric", "traffic", "deployment", "reviews", "predictor URL"):
        table.add_column(col)
    for d in payload["datasets"]:
        c = d["champion"] or {}
        value = f"{c['metric']}={c['value']:.4f}" if c.get("value") is not None else ""
        traffic = serving_text({"version": c.get("version"), "canary": d["canary"]}) if c else ""
        deployment = d["deployment"] or {}
        table.add_row(d["dataset"], str(c.get("version") or "none"), value, traffic,
                      deployment.get("status", "") + (f": {deployment['error'][:80]}"
                                                      if deployment.get("error") else ""),
                      f"{d['pending_reviews']} pending" if d["pending_reviews"] else "", d["predictor_url"] or "")
    out.print(table)
    recent = Table(title="recent runs")
    for col in ("run", "dataset", "status", "decision", "serving"):
        recent.add_column(col)
    for r in payload["recent_runs"]:
        recent.add_row(r["run_id"], r["dataset"] or "", r["status"] or "", r["decision"] or "",
                       str(r["model_version"] or ""))
    out.print(recent)
    if payload.get("console_url"):
        out.print(f"console: {payload['console_url']}")
    if payload.get("mlflow_url"):
        out.print(f"mlflow: {payload['mlflow_url']}")


def monitor_tick(result: dict[str, Any], bucket: str) -> None:
    for name, f in (result.get("label_files") or {}).items():
        if f["files"] or f["skipped"]:
            out.print(f"{name}: published {f['labels']} labels from {f['files']} new labels file(s)"
                      + (f"; {f['skipped']} file(s) skipped (see the monitor's log)" if f["skipped"] else ""))
    d = result["drained"]
    if d is None:
        out.print("the prediction log is in BigQuery (written by its subscriptions)")
    else:
        out.print(f"stored {d['predictions']} predictions and {d['labels']} labels from {d['messages']} messages "
                  f"in {d['files']} warehouse file(s)" + (f" ({d['malformed']} malformed, skipped)"
                                                          if d["malformed"] else ""))
    for name, w in result["datasets"].items():
        said = window_actions(w)
        out.print(f"[bold]{name}[/]: {w['requests']} requests in the window; "
                  + ("; ".join(said) if said else "nothing to act on"))
    unit = "message(s)" if d is None else "file(s)"
    for name, gone in (result.get("expired") or {}).items():
        if any(gone.values()):
            out.print(f"{name}: past its retention_days, deleted "
                      + " and ".join(f"{n} {unit} of {table}" for table, n in gone.items()))
    if result["datasets"]:
        out.print(f"details: `tollgate monitor DATASET`; report: gs://{bucket}/reports/monitoring/<dataset>/latest.html")


def attribution_text(shifted: dict[str, Any] | None) -> str:
    """A window's attribution drift in a cell: the verdict and its largest move, or why there is none."""
    if not shifted:
        return ""
    if shifted.get("reason"):
        return f"none ({shifted['reason'].replace('_', ' ')})"
    return f"{shifted['verdict']} (largest {shifted['max_shift']:.1%}, ndcg {shifted['ndcg']:.2f})"


def windows(dataset: str, records: list[dict[str, Any]]) -> None:
    latest = records[-1]
    pointers = latest.get("serving") or {}
    out.print(f"[bold]{dataset}[/]: window {latest['start'][:19]} → {latest['end'][:19]} UTC, "
              f"{latest['requests']} requests; serving {serving_text(pointers)}"
              + (f"; {latest['unmatched_labels']} labels matched no prediction of the label window"
                 if latest.get("unmatched_labels") else ""))
    table = Table(title="latest window")
    for col in ("version", "requests", "error rate", "p50 / p99 ms", "input drift", "prediction drift",
                "attribution drift", "labels", "realised (interval)"):
        table.add_column(col)
    for version, v in (latest.get("versions") or {}).items():
        r = v.get("realised")
        lat = v.get("latency_ms") or {}
        table.add_row(f"v{version}", str(v["requests"]), number(v.get("error_rate"), "{:.2%}"),
                      f"{number(lat.get('p50'), '{:.1f}')} / {number(lat.get('p99'), '{:.1f}')}",
                      (v.get("drift") or {}).get("verdict", ""), ((v.get("prediction_drift") or {}).get("status", "")),
                      attribution_text(v.get("attribution_drift")), str(v.get("labels", 0)),
                      f"{r['metric']}={r['value']:.4f} ({r['low']:.4f} to {r['high']:.4f})" if r else "")
    out.print(table)
    trend = Table(title=f"trend (last {len(records)} windows)")
    for col in ("window end", "version", "requests", "p99 ms", "realised", "actions"):
        trend.add_column(col)
    for w in records[-12:]:
        said = window_actions(w, brief=True)
        for version, v in (w.get("versions") or {}).items():
            r = v.get("realised")
            trend.add_row(w["end"][:19], f"v{version}", str(v["requests"]),
                          number((v.get("latency_ms") or {}).get("p99"), "{:.1f}"),
                          f"{r['value']:.4f}" if r else "", ", ".join(said))
            said = []
    out.print(trend)


def alerts(records: list[dict[str, Any]]) -> None:
    if not records:
        out.print("no alerts")
        return
    table = Table(title="alerts")
    for col in ("at", "dataset", "version", "kind", "severity", "message"):
        table.add_column(col)
    for a in records:
        table.add_row(when(a["at"]), a["dataset"], f"v{a['version']}", a["kind"], a["severity"], a["message"])
    out.print(table)


def trace(found: dict[str, Any]) -> None:
    """A run's spans as a tree: each under the span that caused it, with its start and duration."""
    out.print(f"trace {found['trace_id']} of run {found['run_id']} (exported to {found['exported_to']})",
              highlight=False)
    if found.get("url"):
        out.print(f"Cloud Trace: {found['url']}", highlight=False)
    spans = found.get("spans")
    if spans is None:
        return
    if not spans:
        out.print("no spans recorded for it (traces are off, or it ran before they were on)")
        return
    from tollgate import tracing

    start = spans[0]["start_ns"]
    table = Table(title=f"{len(spans)} spans")
    for col in ("span", "service", "starts", "takes", "status"):
        table.add_column(col)
    for depth, span in tracing.tree(spans):
        table.add_row("  " * depth + span["name"], span["service"], f"+{(span['start_ns'] - start) / 1e9:.2f}s",
                      f"{(span['end_ns'] - span['start_ns']) / 1e9:.2f}s", span["status"])
    out.print(table)


def reconciled(report: dict[str, Any]) -> None:
    out.print(f"outbox: {len(report['outbox'])} event(s) published" + (
        f" ({', '.join(report['outbox'])})" if report["outbox"] else ""))
    for r in report["runs"]:
        out.print(f"run {r['run_id']}: [bold]{r['action']}[/] ({r.get('job') or r.get('waiting')}): {r.get('why')}",
                  highlight=False)
    for d in report["deployments"]:
        out.print(f"dataset {d['dataset']}: [bold]{d['action']}[/]" + (f": {d['why']}" if d.get("why") else ""),
                  highlight=False)
    for m in report.get("mirrors") or []:
        out.print(f"dataset {m['dataset']}: MLflow mirror [bold]{m['status']}[/]"
                  + (f" ({m['error']}; retried on the next pass)" if m.get("error") else ""), highlight=False)
    if not report["runs"] and not report["deployments"] and not report.get("mirrors"):
        out.print("nothing stranded")


def comparison(compared: dict[str, Any]) -> None:
    table = Table(title=f"run {compared['a']} against run {compared['b']}")
    for col in ("", compared["a"], compared["b"]):
        table.add_column(col, overflow="fold")

    def shown(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else "" if value is None else str(value)
    for row in compared["rows"]:
        style = "" if row["same"] else "bold"
        table.add_row(row["field"], shown(row["a"]), shown(row["b"]), style=style)
    out.print(table)
    out.print(f"{len(compared['differences'])} field(s) differ", highlight=False)
