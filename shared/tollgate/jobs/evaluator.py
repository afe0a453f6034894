"""Job `evaluator`: score the challenger and the champion on the same held-out rows of the run's batch
(RUN_ID), with the paired-bootstrap interval of the gain, per-slice metrics and each feature's permutation
importance; reports/<run>/evaluation.*."""

from __future__ import annotations

import time

from tollgate import events, lifecycle, log, outbox, policy, reports
from tollgate import spec as specs
from tollgate.cloud import Cloud
from tollgate.cloud.state import State
from tollgate.jobs.common import load_batch, load_model, open_run, window_batches


def run(cloud: Cloud, state: State, run_id: str) -> str:
    from tollgate import evaluation, training

    started = time.monotonic()
    record = open_run(cloud, state, run_id, lifecycle.EVALUATOR)
    if record is None:
        return "skipped"
    spec = specs.from_dict(record["spec"])
    newest = load_batch(cloud, record["curated"])
    _, holdout = training.split_newest(newest, spec)
    y = training.target(holdout, spec)
    features = training.features_frame(holdout, spec)
    challenger_version = int(record["challenger_version"])
    challenger, challenger_record = load_model(cloud, state, spec.name, challenger_version)
    champion_version = state.get_dataset(spec.name).get("champion_version")
    scored = evaluation.score(challenger, features, spec.task)
    champion = champion_scored = champion_record = None
    if champion_version is not None:
        champion, champion_record = load_model(cloud, state, spec.name, int(champion_version))
        champion_scored = evaluation.score(champion, features, spec.task)
    result = evaluation.compare(holdout, y, scored, champion_scored, spec)
    importance_started = time.monotonic()
    result["importance"] = evaluation.permutation_importance(challenger, champion, features, y, spec)
    importance_seconds = time.monotonic() - importance_started
    if champion_record is not None:
        result["refit"] = policy.refit(
            challenger_record, champion_record,
            window_batches(cloud, spec.name, challenger_version, challenger_record),
            window_batches(cloud, spec.name, int(champion_version), champion_record))
    result["challenger"]["version"] = challenger_version
    if result["champion"] is not None:
        result["champion"]["version"] = int(champion_version)
    attempt = int(record.get("reevaluations", 0))
    name = f"reports/{run_id}/evaluation" + (f"-{attempt}" if attempt else "")
    report = {"run_id": run_id, "dataset": spec.name, "data": record["curated"], **result}
    cloud.write_json_once(f"{name}.json", report)
    html, undrawn = reports.drawn("evaluation", report,
                                  lambda: reports.evaluation_html(report, y, scored, champion_scored))
    cloud.write_once(f"{name}.html", html.encode(), "text/html; charset=utf-8")
    if undrawn:
        log.warning("evaluation report not drawn; the run goes on", run_id=run_id, error=undrawn)
    # what the evaluation cost, from reading the run to its reports written: the share importance takes of it
    result["seconds"] = {"total": round(time.monotonic() - started, 3), "importance": round(importance_seconds, 3)}
    event = events.step_event({"run_id": run_id, "dataset": spec.name}, lifecycle.EVALUATED)
    if state.transition(run_id, (lifecycle.EVALUATING,), lifecycle.EVALUATED, events=(event,), evaluation=result,
                        evaluated_against=champion_version,
                        **({"reports.evaluation_undrawn": undrawn} if undrawn else {})):
        outbox.publish(cloud, state, [event])
    log.info("models evaluated", run_id=run_id, challenger=challenger_version, champion=champion_version,
             metric=spec.primary_metric, score=result["challenger"]["metrics"].get(spec.primary_metric),
             champion_score=(result["champion"] or {}).get("metrics", {}).get(spec.primary_metric))
    return "evaluated"

