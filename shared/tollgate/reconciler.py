"""The reconciler: nothing a crash leaves in flight stays there.

Runs on each ``reconcile-tick`` (Cloud Scheduler every 5 minutes on GCP, the local cloud's scheduler here)
and on demand (`tollgate reconcile`). It compares what Firestore says is in flight with what Cloud Run is
actually running, and repairs only through the chain's own doors: it never runs a job or decides anything
itself, it re-publishes the event that starts a step (consumers are idempotent) and converges deployments
through the one promotion path. One pass:

1. **The outbox**: events written with a committed transaction but never published (the step that wrote
   them was killed right after) go out.
2. **Runs in a job's hands** (``validating``, ``training``, ``evaluating``): the step's Cloud Run execution
   is looked up. If it failed (every attempt: out of memory, SIGKILL, a crash before it could mark the run),
   vanished (deleted; the local cloud restarted), or is still "running" long after the job's timeout times
   its attempts, or no execution was ever recorded (the launch was killed between its claim and the job
   start), the run goes back to the status before the claim and the step's event is published again — at
   most ``MAX_RELAUNCHES`` times per step; then the run fails with a reason that names the execution.
3. **Runs waiting for an event** (``received``, ``validated``, ``trained``, ``evaluated``) longer than the grace:
   the event that moves them is published again (a dead-lettered delivery, a lost publish), as often.
4. **The training slot**: a dataset whose training ended without a decision passes it to the queued run with
   the newest batch (tollgate.chain.next_training). A trainer or evaluator that fails its run passes it itself;
   this is for runs the reconciler fails and jobs killed before they could.
5. **Deployments**: a dataset whose deployment is pending past the grace or failed, or whose latest ledger
   entry was never announced: Cloud Run traffic is made to match the Firestore pointers, the run's deployment
   recorded and the entry announced (``model-decided``; a review request too).
6. **MLflow mirrors** owed (a sync failed: MLflow was down): synced again (tollgate.tracking).

Every repair is recorded on the run (``recoveries``) and shown by `tollgate run show`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tollgate import chain, events, lifecycle, log, outbox, promotion, tracking
from tollgate.cloud import Cloud
from tollgate.cloud import run as cloudrun
from tollgate.cloud import state as st

MAX_RELAUNCHES = 2                       # per step of a run, on top of Cloud Run's own retries of each execution
GRACE = dt.timedelta(minutes=5)          # how long a run may wait, or a claim go without an execution
OUTBOX_GRACE = dt.timedelta(seconds=60)  # a step publishes its own events within seconds of its commit
KILL_MARGIN = dt.timedelta(seconds=30)   # Cloud Run's SIGTERM-to-SIGKILL and start-up, per attempt

# the status a step runs in → (the step, the status before its claim)
CLAIMED = {running: (step, before) for step, (before, running, _, _) in lifecycle.CLAIM.items()}


def run(cloud: Cloud, state: st.State, now: dt.datetime | None = None,
        grace: dt.timedelta = GRACE) -> dict[str, Any]:
    """One pass; returns what it did (also logged)."""
    now = now or st.now()
    report: dict[str, Any] = {"at": now.isoformat(), "outbox": outbox.flush(cloud, state, min(grace, OUTBOX_GRACE)),
                              "runs": [], "deployments": []}
    limits: dict[str, tuple[float, int]] = {}
    for record in state.runs_in((*CLAIMED, *lifecycle.WAITING)):
        try:
            action = _claimed(cloud, state, record, now, grace, limits) if record["status"] in CLAIMED \
                else _waiting(cloud, state, record, now, grace)
        except Exception as exc:   # one run that cannot be repaired now must not stop the others
            log.error(f"reconciler: run {record.get('run_id')} not repaired: {type(exc).__name__}: {exc}",
                      run_id=record.get("run_id"))
            action = {"run_id": record.get("run_id"), "action": "error", "why": f"{type(exc).__name__}: {exc}"}
        if action:
            report["runs"].append(action)
    for ds in state.list_datasets():
        if ds.get("training"):   # a training that ended without a decision (failed, killed) passes the slot here
            try:
                chosen = chain.next_training(cloud, state, ds["name"])
                if chosen:
                    report["runs"].append({"run_id": chosen, "action": "next-training",
                                           "why": f"the dataset's training by {ds['training'].get('run_id')} ended"})
            except Exception as exc:
                log.error(f"reconciler: dataset {ds['name']}: training slot not passed: {type(exc).__name__}: {exc}",
                          dataset=ds["name"])
        try:
            action = _deployment(cloud, state, ds, now, grace)
        except Exception as exc:
            log.error(f"reconciler: dataset {ds['name']} not converged: {type(exc).__name__}: {exc}",
                      dataset=ds["name"])
            action = {"dataset": ds["name"], "action": "error", "why": f"{type(exc).__name__}: {exc}"[:500]}
        if action:
            report["deployments"].append(action)
    try:
        report["mirrors"] = tracking.retry_pending(cloud, state)
    except Exception as exc:   # the mirror never holds up the repairs above
        log.error(f"reconciler: MLflow mirrors not retried: {type(exc).__name__}: {exc}")
        report["mirrors"] = []
    log.info("reconciled", outbox=len(report["outbox"]), runs=report["runs"], deployments=report["deployments"],
             mirrors=report["mirrors"])
    return report


# -- runs -------------------------------------------------------------------------------------
def _age(value: Any, now: dt.datetime) -> dt.timedelta:
    return now - value if isinstance(value, dt.datetime) else dt.timedelta.max


def _claimed(cloud: Cloud, state: st.State, record: dict[str, Any], now: dt.datetime, grace: dt.timedelta,
             limits: dict[str, tuple[float, int]]) -> dict[str, Any] | None:
    status = record["status"]
    job, before = CLAIMED[status]
    execution = (record.get("executions") or {}).get(job)
    if not execution:
        if _age(record.get("updated_at"), now) < grace:
            return None   # the launch is between its claim and the job start
        return _recover(cloud, state, record, job, before, None, "no execution of the job was ever started "
                        f"(the launch stopped between its claim at {record.get('updated_at')} and the start)")
    seen = cloudrun.describe_execution(cloud, execution)
    name = execution.rsplit("/", 1)[-1]
    if seen is None:
        why = f"its execution {name} no longer exists"
    elif seen["state"] == "failed" and cloudrun.memory_exceeded(seen.get("message")):
        # the same window overruns the same limit again: relaunching cannot help; say what to change
        why = (f"its execution {name} was stopped over the job's memory limit after {seen['retried'] + 1} "
               f"attempt(s): {seen['message'].split(': ', 1)[-1]}; lower training.max_rows or the encodings' "
               "width (model.max_categories, `encoding: target`), or raise the job's memory")
        return _recover(cloud, state, record, job, before, execution, why, relaunch=False)
    elif seen["state"] == "failed":
        why = (f"its execution {name} failed after {seen['retried'] + 1} attempt(s) without recording why "
               "(killed: SIGKILL, or a crash before it could)" + (f": {seen['message']}" if seen.get("message")
                                                                 else ""))
    elif seen["state"] == "succeeded":
        if _age(seen["completed"], now) < grace:
            return None   # it just finished; its own transition may still be on the way
        why = f"its execution {name} succeeded but the run never moved on"
    else:
        if job not in limits:
            limits[job] = cloudrun.job_limits(cloud, job)
        timeout, retries = limits[job]
        allowed = (dt.timedelta(seconds=timeout) + KILL_MARGIN) * (retries + 1) + grace
        if _age(seen["started"], now) < allowed:
            return None   # still within its time
        why = (f"its execution {name} has run since {seen['started']:%Y-%m-%d %H:%M:%S} UTC, longer than the "
               f"job's timeout of {timeout:.0f}s times {retries + 1} attempt(s)")
    return _recover(cloud, state, record, job, before, execution, why)


def _recover(cloud: Cloud, state: st.State, record: dict[str, Any], job: str, before: str, execution: str | None,
             why: str, relaunch: bool = True) -> dict[str, Any] | None:
    """Relaunch the step (hand the run back and re-publish its event), or fail the run when relaunched enough (or
    when a relaunch cannot help: ``relaunch=False``)."""
    run_id, status = record["run_id"], record["status"]
    relaunches = int((record.get("relaunches") or {}).get(job, 0))
    event = events.step_event(record, before)
    if relaunch and relaunches < MAX_RELAUNCHES and event is not None:
        recovery = {"job": job, "execution": execution, "why": why, "action": "relaunched",
                    "relaunch": relaunches + 1}
        if not state.recover_run(run_id, status, record, before, recovery, (event,),
                                 **{f"relaunches.{job}": relaunches + 1}):
            return None   # the run moved meanwhile: nothing to repair
        outbox.publish(cloud, state, [event])
        log.warning(f"reconciler: run {run_id} relaunched: {why}", run_id=run_id, job=job, execution=execution)
        return {"run_id": run_id, "action": "relaunched", "job": job, "why": why}
    message = (f"the {job} step was given up: {why}"
               + (f"; it was relaunched {relaunches} time(s) already" if relaunches else "")
               + f". Drop the file again to retry from the start (run {run_id})")
    recovery = {"job": job, "execution": execution, "why": why, "action": "failed"}
    if not state.recover_run(run_id, status, record, lifecycle.FAILED, recovery,
                             error={"step": job, "message": message, "execution": execution,
                                    "by": "reconciler"}):
        return None
    log.error(f"reconciler: run {run_id} failed: {message}", run_id=run_id, job=job, execution=execution)
    return {"run_id": run_id, "action": "failed", "job": job, "why": why}


def _waiting(cloud: Cloud, state: st.State, record: dict[str, Any], now: dt.datetime,
             grace: dt.timedelta) -> dict[str, Any] | None:
    if _age(record.get("updated_at"), now) < grace:
        return None
    status, run_id = record["status"], record["run_id"]
    event = events.step_event(record, status)
    nudges = int((record.get("nudges") or {}).get(status, 0))
    why = f"it waited in {status} since {record.get('updated_at')} for an event that never arrived"
    if event is None or nudges >= MAX_RELAUNCHES:
        message = (f"the run stopped in {status}: {why}"
                   + (f"; the event was published again {nudges} time(s)" if nudges else "")
                   + f". Drop the file again to retry from the start (run {run_id})")
        if not state.recover_run(run_id, status, record, lifecycle.FAILED,
                                 {"waiting": status, "why": why, "action": "failed"},
                                 error={"step": status, "message": message, "by": "reconciler"}):
            return None
        log.error(f"reconciler: run {run_id} failed: {message}", run_id=run_id)
        return {"run_id": run_id, "action": "failed", "waiting": status, "why": why}
    if not state.recover_run(run_id, status, record, status, {"waiting": status, "why": why, "action": "republished",
                                                              "topic": event.topic}, (event,),
                             **{f"nudges.{status}": nudges + 1}):
        return None
    outbox.publish(cloud, state, [event])
    log.warning(f"reconciler: run {run_id}: {event.topic} published again: {why}", run_id=run_id)
    return {"run_id": run_id, "action": "republished", "waiting": status, "why": why}


# -- deployments ------------------------------------------------------------------------------
def _deployment(cloud: Cloud, state: st.State, ds: dict[str, Any], now: dt.datetime,
                grace: dt.timedelta) -> dict[str, Any] | None:
    name = ds["name"]
    deployment = ds.get("deployment") or {}
    unsettled = deployment.get("status") == "failed" or (
        deployment.get("status") == "pending" and _age(deployment.get("at"), now) >= grace)
    entry = state.last_unannounced(name)
    if entry is not None and _age(entry.get("at"), now) < grace and not unsettled:
        entry = None   # its decider is still at work
    if not unsettled and entry is None:
        return None
    result = promotion.converge(cloud, state, name) if unsettled else None
    if entry is not None:
        record = state.get_run(entry["run_id"]) if entry.get("run_id") else None
        decided = record is not None and record.get("status") == lifecycle.DECIDED
        if decided and record.get("ledger_id") == entry["ledger_id"]:
            promotion.finish_run(cloud, state, record)   # the run's deployment, the event, a review request
        else:
            promotion.announce(cloud, state, entry, result)
    log.warning(f"reconciler: {name}: deployment converged" + (" and decision announced" if entry else ""),
                dataset=name, traffic=(result or {}).get("traffic"))
    return {"dataset": name, "action": "converged", "traffic": (result or {}).get("traffic"),
            "announced": entry["ledger_id"] if entry else None}
