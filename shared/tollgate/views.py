"""What each `tollgate` command shows, as plain data: the ``--json`` payloads, and what the tables render. Pure:
records in (runs, versions, ledger entries, windows as Firestore returns them), dicts out."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tollgate import lifecycle, serving


def when(value: Any) -> str:
    """A time as people read it in tables: UTC, to the second (an ISO text from an API answer too)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def parse_time(value: str) -> dt.datetime:
    """An ISO 8601 time (``Z`` or an offset; no zone means UTC), or a ValueError that shows the form."""
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO time such as 2026-11-22T14:30:00Z (no zone means UTC)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def held_out_score(run: dict[str, Any] | None) -> tuple[str | None, float | None]:
    """(primary metric, the challenger's score on its run's held-out rows), as the evaluator recorded them."""
    ev = (run or {}).get("evaluation") or {}
    metric = ev.get("metric")
    return metric, ((ev.get("challenger") or {}).get("metrics") or {}).get(metric)


def error(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A failed run's error with the step it failed in (``step``: older runs wrote ``stage``)."""
    if not record:
        return None
    return {**{k: v for k, v in record.items() if k != "stage"}, "step": lifecycle.failed_step(record)}


# What run_summary reads of a run record: a page listing hundreds of runs asks Firestore for these only, not for
# each run's validation checks, drift table, slices and history.
RUN_SUMMARY_FIELDS = (
    "run_id", "dataset", "status", "decision", "reason", "message", "model_version", "challenger_version",
    "evaluated_against", "evaluation.metric", "evaluation.challenger", "evaluation.champion", "evaluation.difference",
    "validation.rows_in", "validation.rows_out", "drift", "source", "quarantine", "error", "deployment", "review",
    "decided_by", "recoveries", "queued_behind", "superseded_by", "duplicate_of", "followed_from", "created_at",
    "updated_at",
)


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """The run record as `drop --json`, `runs --json` and `run show --json` print it."""
    ev = run.get("evaluation") or {}
    metric, challenger_score = held_out_score(run)
    return {
        "run_id": run["run_id"], "dataset": run.get("dataset"), "status": run.get("status"),
        "decision": run.get("decision"), "reason": run.get("reason"), "message": run.get("message"),
        "model_version": run.get("model_version"), "challenger_version": run.get("challenger_version"),
        "champion_version": run.get("evaluated_against"),
        "challenger_metric": challenger_score,
        "champion_metric": (((ev.get("champion") or {}).get("metrics") or {}).get(metric)
                            if ev.get("champion") else None),
        "metric": metric, "difference": ev.get("difference"),
        "rows_in": (run.get("validation") or {}).get("rows_in"),
        "rows_out": (run.get("validation") or {}).get("rows_out"),
        "drift": (run.get("drift") or {}).get("verdict"),
        "source": run.get("source"), "quarantine": run.get("quarantine"), "error": error(run.get("error")),
        "deployment": run.get("deployment"), "review": run.get("review"), "decided_by": run.get("decided_by"),
        "recoveries": run.get("recoveries") or [],
        "queued_behind": run.get("queued_behind") if run.get("status") == lifecycle.QUEUED else None,
        "superseded_by": run.get("superseded_by"), "followed_from": run.get("followed_from"),
        "duplicate_of": run.get("duplicate_of"), "decided_as": decided_as(run),
        "created_at": run.get("created_at"), "updated_at": run.get("updated_at"),
    }


def decided_as(run: dict[str, Any]) -> str | None:
    """How the run's decision came about, in words: ``promote``, or ``review → approved → promote`` when a person
    decided (the run's ``decision`` is then what the review did)."""
    review = run.get("review") or {}
    if not run.get("decision"):
        return None
    if review.get("status") in (None, "pending"):
        return "review (pending)" if review.get("status") == "pending" else run["decision"]
    return f"review → {review['status']} → {run['decision']}"


def run_detail(run: dict[str, Any]) -> dict[str, Any]:
    """`run show --json`: the summary, and the validation, evaluation, history and executions behind it."""
    return {**run_summary(run), "validation": run.get("validation"), "evaluation": run.get("evaluation"),
            "history": run.get("history"), "executions": run.get("executions")}


# What model_rows reads of each version's run: its role and its held-out score.
MODEL_ROW_FIELDS = ("status", "decision", "review", "evaluation.metric", "evaluation.challenger")


def model_rows(ds: dict[str, Any], versions: list[dict[str, Any]],
               runs: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """`models --json`: each version with its role, held-out and cross-validated metric, lineage summary."""
    rows = []
    for v in versions:
        run = runs.get(v["run_id"])
        metric, value = held_out_score(run)
        rows.append({"version": v["version"], "role": serving.role_of(v["version"], ds, run), "run_id": v["run_id"],
                     "metric": metric, "value": value, "cv": (v.get("metrics") or {}).get("cv"),
                     "estimator": v.get("estimator"), "train_rows": v.get("train_rows"),
                     "batches": serving.training_batches(v), "sha256": v.get("sha256"),
                     "registered_at": v.get("registered_at"), "code_version": v.get("code_version"),
                     "tags": v.get("tags") or {},
                     "aliases": sorted(a for a, n in (ds.get("aliases") or {}).items() if n == v["version"])})
    return rows


def model_record(record: dict[str, Any], role: str) -> dict[str, Any]:
    """`model show`: the whole registry record (without the spec it was trained under) and its role."""
    return {**{k: v for k, v in record.items() if k != "spec"}, "role": role}


def version_importance(run: dict[str, Any] | None) -> dict[str, Any] | None:
    """The permutation importance a version was evaluated with, as that version's own (``this version``): the
    challenger's of the run that trained it."""
    imp = ((run or {}).get("evaluation") or {}).get("importance") or {}
    if not imp.get("features"):
        return None
    return {**imp, "features": [{"feature": f["feature"], "this version": f["challenger"]} for f in imp["features"]]}


def serving_text(pointers: dict[str, Any] | None) -> str:
    """What serves, in words: ``v3 90% + canary v4 10%``."""
    if not pointers or pointers.get("version") is None:
        return "nothing"
    canary = pointers.get("canary")
    if canary:
        return f"v{pointers['version']} {100 - canary['percent']}% + canary v{canary['version']} {canary['percent']}%"
    return f"v{pointers['version']}"


def history_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`history --json`: the ledger, oldest first."""
    return [{"at": e.get("at"), "ledger_id": e.get("ledger_id"), "kind": e.get("kind", "decision"),
             "event": e.get("event", e.get("verdict")), "verdict": e.get("verdict"), "run_id": e.get("run_id"),
             "actor": e.get("actor"), "challenger_version": e.get("challenger_version"),
             "champion_before": e.get("champion_before"), "serving_after": e.get("serving_after"),
             "reason": e.get("reason")} for e in entries]


def dataset_status(ds: dict[str, Any], champion_run: dict[str, Any] | None, predictor_url: str | None,
                   pending_reviews: int) -> dict[str, Any]:
    """One dataset in `status --json`: its champion, traffic, deployment, reviews and predictor URL."""
    champion = ds.get("champion_version")
    metric, score = held_out_score(champion_run)
    return {"dataset": ds["name"], "predictor_url": predictor_url,
            "champion": {"version": champion, "metric": metric, "value": score} if champion else None,
            "serving": ds.get("serving"), "canary": ds.get("canary"), "deployment": ds.get("deployment"),
            "pending_reviews": pending_reviews}


def status(project: str, bucket: str, datasets: list[dict[str, Any]], runs: list[dict[str, Any]],
           console_url: str | None = None, mlflow_url: str | None = None) -> dict[str, Any]:
    """`status --json`: each dataset with its own ``predictor_url``, and ``predictor_urls`` by dataset (there is
    no one predictor: each dataset has its own service); the console's URL when known, and the local cloud's
    MLflow when it runs one."""
    return {"bucket": f"gs://{bucket}", "project": project, "console_url": console_url, "mlflow_url": mlflow_url,
            "predictor_urls": {d["dataset"]: d["predictor_url"] for d in datasets},
            "datasets": datasets, "recent_runs": [run_summary(r) for r in runs]}


def window_actions(window: dict[str, Any], brief: bool = False) -> list[str]:
    """What a monitoring window did, in words: its alerts, a retraining request, a canary verdict (``brief``:
    without the reasons, for a trend table)."""
    actions = window.get("actions") or {}
    said = [a["kind"] if brief else f"alert {a['kind']}: {a['message']}" for a in actions.get("alerts") or []]
    if actions.get("retraining"):
        run_id = actions["retraining"]
        said.append(f"retrain {run_id}" if brief else f"retraining requested: run {run_id}")
    if actions.get("canary"):
        canary = actions["canary"]
        said.append(f"canary {canary['verdict']}" + ("" if brief else f": {canary['reason']}"))
    return said


def recovery(r: dict[str, Any]) -> str:
    """One repair the reconciler made to a run, in words."""
    what = f"the {r['job']} step" if r.get("job") else f"the run waiting in {r.get('waiting')}"
    return (f"{when(r.get('at'))} UTC by the {r.get('by', 'reconciler')}: {r.get('action')} {what}, "
            f"because {r.get('why')}")


def compare_runs(a: dict[str, Any], b: dict[str, Any], version_a: dict[str, Any] | None,
                 version_b: dict[str, Any] | None) -> dict[str, Any]:
    """`runs compare` and the console's comparison: two runs side by side (their records and the versions they
    trained), each field once, and the fields that differ."""
    def fields(run: dict[str, Any], version: dict[str, Any] | None) -> dict[str, Any]:
        s = run_summary(run)
        version = version or {}
        cv = (version.get("metrics") or {}).get("cv") or {}
        curated = run.get("curated") or {}
        out = {"dataset": s["dataset"], "status": s["status"], "decision": s["decided_as"],
               "reason": s["reason"] or s["message"], "challenger version": s["challenger_version"],
               "champion version": s["champion_version"], "estimator": version.get("estimator"),
               "params": version.get("params"), "search": (version.get("search") or {}).get("method"),
               "train rows": version.get("train_rows"), "holdout rows": (run.get("evaluation") or {}).get(
                   "holdout_rows"), "rows in": s["rows_in"], "rows kept": s["rows_out"], "drift": s["drift"],
               "data sha256": curated.get("sha256"), "spec sha256": run.get("spec_sha256"),
               "code version": version.get("code_version"), f"cv {cv.get('metric', '')}".strip(): cv.get("score"),
               "created": when(s["created_at"])}
        metrics = (((run.get("evaluation") or {}).get("challenger") or {}).get("metrics")) or {}
        out.update({f"held-out {k}": v for k, v in metrics.items()})
        return out

    left, right = fields(a, version_a), fields(b, version_b)
    names = list(dict.fromkeys([*left, *right]))
    rows = [{"field": n, "a": left.get(n), "b": right.get(n), "same": left.get(n) == right.get(n)} for n in names]
    return {"a": a["run_id"], "b": b["run_id"], "rows": rows, "differences": [r["field"] for r in rows
                                                                              if not r["same"]]}
