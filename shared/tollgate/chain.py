"""The chain's event-driven steps, run by functions: ingest, launch and decide.

Exactly-once effects over at-least-once delivery: every step starts by moving the run from
the status it expects, in a transaction; a duplicate or late event finds another status and
changes nothing. Kept free of pandas and scikit-learn so functions start fast.
"""

from __future__ import annotations

from typing import Any

from tollgate import events, lifecycle, log, outbox, policy, promotion, tracing
from tollgate import spec as specs
from tollgate.cloud import Cloud
from tollgate.cloud import run as cloudrun
from tollgate.cloud.state import State
from tollgate.errors import NotFound
from tollgate.events import ObjectFinalized

MAX_REEVALUATIONS = 3


# -- ingest + launch (functions) -------------------------------------------------------------
def ingest(cloud: Cloud, state: State, obj: ObjectFinalized) -> str:
    """A finalized object under incoming/<dataset>/ becomes a run, and the validator starts."""
    dataset = obj.dataset
    if dataset is None:
        return "ignored"
    run_id = obj.run_id
    source = {"bucket": obj.bucket, "object": obj.name, "generation": obj.generation}
    record: dict[str, Any] = {"dataset": dataset, "source": source}
    try:
        specs.check_dataset_name(dataset)
    except specs.SpecError as exc:
        return _reject_at_ingest(state, run_id, record, "bad_dataset_name",
                                 f"incoming/{dataset}/: {exc}; drop the file under a valid dataset's folder")
    try:
        spec_text = cloud.read_bytes(specs.object_name(dataset)).decode()
        spec = specs.loads(spec_text)
        if spec.name != dataset:
            raise specs.SpecError(f"gs://{obj.bucket}/{specs.object_name(dataset)} is named {spec.name!r}, but a spec "
                                  f"governs only the incoming/<name>/ folder of its own name ({dataset!r}); "
                                  "upload it with `tollgate spec push FILE`, which names the object after the spec")
        record.update(spec=spec.raw, spec_sha256=spec.sha256)
    except (specs.SpecError, UnicodeDecodeError) as exc:
        return _reject_at_ingest(state, run_id, record, "bad_spec", f"the dataset spec is invalid: {exc}")
    except NotFound:   # anything else is temporary: the event comes back
        return _reject_at_ingest(
            state, run_id, record, "unknown_dataset",
            f"no dataset spec at gs://{obj.bucket}/{specs.object_name(dataset)}; upload one with "
            f"`tollgate spec push FILE` and drop the file again")
    created = state.create_run(run_id, record)
    log.info("run created" if created else "run exists (duplicate notification)", run_id=run_id,
             dataset=dataset, object=obj.name, generation=obj.generation)
    return launch(cloud, state, run_id, "validator")


def _reject_at_ingest(state: State, run_id: str, record: dict[str, Any], reason: str, message: str) -> str:
    if state.create_run(run_id, record):
        state.transition(run_id, (lifecycle.RECEIVED,), lifecycle.REJECTED, reason=reason, message=message)
        log.warning("run rejected at ingest", run_id=run_id, reason=reason, detail=message)
    return "rejected"


def launch(cloud: Cloud, state: State, run_id: str, job: str) -> str:
    """Claim the run for ``job`` and start one execution; only the claim's winner starts it. A trainer starts
    only with the dataset's training slot (lifecycle: one training per dataset at a time); without it the run
    is queued."""
    expect, claim, _, _ = lifecycle.CLAIM[job]
    run = state.get_run(run_id) if job == lifecycle.TRAINER else None
    if run is not None:
        slot = state.take_training_slot(run["dataset"], run_id)
        if slot != "granted":
            log.info("run queued behind the dataset's training" if slot == "queued" else "launch skipped",
                     run_id=run_id, dataset=run["dataset"], slot=slot)
            return slot if slot == "queued" else "duplicate"
    if not state.transition(run_id, (expect,), claim):
        return "duplicate"
    try:
        tasks = None
        if run is not None:   # a hyperparameter search spreads its candidates over the execution's tasks
            search = specs.from_dict(run["spec"]).model.search
            tasks = search.tasks if search else None
        execution = cloudrun.run_job(cloud, job, {"RUN_ID": run_id, **tracing.job_env()}, task_count=tasks)
    except Exception:
        # Temporary failure: give the claim back and raise so the event is redelivered.
        state.transition(run_id, (claim,), expect)
        raise
    state.update_run(run_id, **{f"executions.{job}": execution})
    log.info("job started", run_id=run_id, job=job, execution=execution)
    return "started"


def next_training(cloud: Cloud, state: State, dataset: str) -> str | None:
    """Once the dataset's training has ended, the queued run with the newest batch gets the slot and its
    data-validated event (the launch function starts its trainer); the queued runs its window covers end
    superseded. Called by the decider after each decision, by a trainer or evaluator that fails its run, and by
    the reconciler on every pass; a no-op while a training runs or nothing is queued."""
    chosen, superseded, event = state.pass_training_slot(
        dataset, lambda run: events.step_event(run, lifecycle.VALIDATED))   # type: ignore[arg-type]
    if chosen is None:
        return None
    outbox.publish(cloud, state, [event])
    log.info("the dataset's next training", dataset=dataset, run_id=chosen, superseded=superseded)
    return chosen


def decide(cloud: Cloud, state: State, run_id: str) -> str:
    """Apply the policy to an evaluated run and make it take effect (promotion.py). A redelivered
    event for a decided run finishes what is left (a deployment that failed, the announcement)."""
    run = state.get_run(run_id)
    if run is None:
        return "unknown-run"
    if run["status"] == lifecycle.DECIDED:
        finished = promotion.finish_run(cloud, state, run)
    elif run["status"] != lifecycle.EVALUATED:
        return "skipped"
    else:
        spec = specs.from_dict(run["spec"])
        finished = _record(cloud, state, run, spec, policy.decide(spec.policy, policy.evidence_of(run, spec)))
    next_training(cloud, state, run["dataset"])   # a no-op unless the run holding the slot has ended
    return finished


def _record(cloud: Cloud, state: State, run: dict[str, Any], spec: specs.DatasetSpec,
            decision: policy.Decision, force: bool = False) -> str:
    run_id = run["run_id"]
    inputs = {"evaluation": run["evaluation"], "thresholds": spec.raw.get("policy"),
              "data": run.get("curated"), "source": run.get("source"),
              "drift": (run.get("validation") or {}).get("drift")}
    outcome, _ = state.apply_decision(run_id, spec.name, decision.verdict, decision.reason, inputs,
                                      run.get("evaluated_against"), canary_percent=spec.deployment.canary_percent,
                                      review_hours=spec.review.expire_after_hours, force=force)
    if outcome == "stale":
        return _reevaluate(cloud, state, run, spec)
    if outcome != "applied":
        return outcome
    log.info("decision", run_id=run_id, verdict=decision.verdict, reason=decision.reason)
    return promotion.finish_run(cloud, state, state.get_run(run_id) or run)


def _reevaluate(cloud: Cloud, state: State, run: dict[str, Any], spec: specs.DatasetSpec) -> str:
    count = int(run.get("reevaluations", 0)) + 1
    if count > MAX_REEVALUATIONS:
        return _record(cloud, state, run, spec, policy.Decision(
            policy.REVIEW, f"the champion changed {MAX_REEVALUATIONS} times while this run was evaluated; "
                           "a person should decide once it settles"), force=True)
    event = promotion.reevaluation(run)
    if state.transition(run["run_id"], (lifecycle.EVALUATED,), lifecycle.TRAINED, events=(event,), reevaluations=count):
        outbox.publish(cloud, state, [event])
        log.info("champion changed during evaluation; re-evaluating", run_id=run["run_id"])
    return "reevaluate"
