"""The entry point of every Cloud Run job (`services/<job>/main.py` calls ``job_main("<job>")``).

It reads the environment, runs the job once and exits non-zero on failure, logging one JSON line with
``"severity": "ERROR"``. For a run's step (validator, trainer, evaluator; RUN_ID in the environment):

- a permanent error (no retry can fix it: a model outside the allow-list, a batch that does not match its hash,
  a bad spec) marks the run failed at once;
- a temporary one leaves the run to the job's next attempt (``max_retries`` in topology.yaml; the attempt count
  arrives as ``TOLLGATE_MAX_ATTEMPTS``), and the last attempt marks it failed;
- SIGTERM (the task's timeout, a cancelled execution) is an error like any other;
- a job killed outright (out of memory, SIGKILL) cannot mark anything: the reconciler finds its failed execution.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Any

from tollgate import artifacts, lifecycle, log, tracing
from tollgate import spec as specs
from tollgate.errors import StepFailed

# Errors no retry can fix: the run is failed at once.
PERMANENT = (StepFailed, artifacts.ArtifactError, specs.SpecError)


def mark_failed(state: Any, run_id: str, step: str, message: str, **detail: Any) -> bool:
    """A step gave up: the run ends as failed, with the step and a message a person can act on."""
    return state.transition(run_id, (lifecycle.VALIDATING, lifecycle.TRAINING, lifecycle.EVALUATING),
                            lifecycle.FAILED, error={"step": step, "message": message[:2000], **detail})


def pass_training_slot(cloud: Any, state: Any, run_id: str) -> None:
    """A run that held its dataset's training slot ended without a decision: the queued run with the newest
    batch trains now, not on the reconciler's next pass (which stays the backstop: a job killed outright
    cannot get here)."""
    from tollgate import chain

    run = state.get_run(run_id) or {}
    if run.get("dataset"):
        chain.next_training(cloud, state, run["dataset"])


class Interrupted(Exception):
    """Cloud Run sent SIGTERM (the task's timeout, or the execution was cancelled)."""


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted("the task was stopped by SIGTERM (its timeout passed, or the execution was cancelled)")


def _run(job: str, cloud: Any, state: Any, run_id: str) -> str:
    if job == lifecycle.VALIDATOR:
        from tollgate.jobs import validator

        return validator.run(cloud, state, run_id)
    if job == lifecycle.TRAINER:
        from tollgate.jobs import trainer

        return trainer.run(cloud, state, run_id, task=int(os.environ.get("CLOUD_RUN_TASK_INDEX", "0")),
                           tasks=int(os.environ.get("CLOUD_RUN_TASK_COUNT", "1")))
    if job == lifecycle.EVALUATOR:
        from tollgate.jobs import evaluator

        return evaluator.run(cloud, state, run_id)
    raise StepFailed(f"no job {job!r}: one of {', '.join(lifecycle.STEPS)}, {lifecycle.MONITOR}")


def job_main(job: str) -> None:
    """``__main__`` of the job ``job``: run it once with the environment's settings; exit 1 on failure."""
    from tollgate.cloud import Cloud
    from tollgate.cloud.state import State
    from tollgate.settings import Settings

    signal.signal(signal.SIGTERM, _interrupt)
    run_id = os.environ.get("RUN_ID", "")
    attempt = int(os.environ.get("CLOUD_RUN_TASK_ATTEMPT", "0"))
    attempts = int(os.environ.get("TOLLGATE_MAX_ATTEMPTS", "1"))
    log.bind(run_id=run_id or None, job=job, **log.run_trace(os.environ.get("GOOGLE_CLOUD_PROJECT"), run_id))
    try:
        cloud = Cloud(Settings.from_env())
        state = State(cloud.firestore)
        if job == lifecycle.MONITOR:
            from tollgate.jobs import monitor

            datasets = [d for d in os.environ.get("DATASETS", "").split(",") if d] or None
            result = monitor.run(cloud, state, datasets)
            log.info("monitor finished", drained=result["drained"], datasets=sorted(result["datasets"]))
            return
        if not run_id:
            raise StepFailed("RUN_ID is not set; jobs are started by the pipeline with RUN_ID in their env")
        with tracing.run_span(job, run_id, parent=os.environ.get(tracing.JOB_ENV), service=job,
                              **{"cloud_run.execution": os.environ.get("CLOUD_RUN_EXECUTION"),
                                 "cloud_run.task_attempt": attempt}):
            outcome = _run(job, cloud, state, run_id)
        log.info(f"{job} finished", outcome=outcome)
    except BaseException as exc:   # noqa: BLE001 -- a job's last word, whatever ended it
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            raise
        permanent = isinstance(exc, PERMANENT)
        last = attempt + 1 >= attempts
        log.error(f"{job} failed: {type(exc).__name__}: {exc}", attempt=attempt + 1, attempts=attempts,
                  permanent=permanent, stack=traceback.format_exc())
        if run_id and job in lifecycle.STEPS and (permanent or last):
            try:
                execution = os.environ.get("CLOUD_RUN_EXECUTION")
                cloud = Cloud(Settings.from_env())
                state = State(cloud.firestore)
                marked = mark_failed(state, run_id, job, str(exc) if permanent else f"{type(exc).__name__}: {exc}",
                                     attempt=attempt + 1, attempts=attempts,
                                     **({"execution": execution} if execution else {}))
                if marked and job in (lifecycle.TRAINER, lifecycle.EVALUATOR):
                    pass_training_slot(cloud, state, run_id)
            except Exception as inner:  # the original error is what matters; say both
                log.error(f"could not mark the run failed: {inner}")
        sys.exit(1)
