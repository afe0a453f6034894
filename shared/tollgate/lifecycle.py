"""A run's lifecycle: its statuses, and the steps (Cloud Run jobs) that move it. Pure: names only.

A run is one dropped file (or one retraining request) on its way to a decision::

    received → validating → validated → training → trained → evaluating → evaluated → decided
                     ↘ rejected (the batch cannot be used)        any step ↘ failed
                     ↘ duplicate (its rows are a batch the dataset has already)
                                   ↘ queued → validated (its turn to train) | superseded

At most one run per dataset trains at a time (it holds the dataset's training slot from its claim of the
trainer to its end). A batch validated meanwhile is *queued*; when the slot frees, the queued run with the
newest batch trains, on a window that holds every queued batch, and the others end *superseded* by it.

Each step is a Cloud Run job, named once: ``validator``, ``trainer``, ``evaluator`` (the monitor is a job too,
but it runs on a schedule, not for a run). A step's job *claims* the run by moving it from the status before
it to its own (``training``), and publishes the event that starts the next step when it is done.
"""

from __future__ import annotations

RECEIVED, VALIDATING, VALIDATED = "received", "validating", "validated"
TRAINING, TRAINED, EVALUATING, EVALUATED = "training", "trained", "evaluating", "evaluated"
DECIDED, REJECTED, FAILED = "decided", "rejected", "failed"
QUEUED, SUPERSEDED, DUPLICATE = "queued", "superseded", "duplicate"
TERMINAL = (DECIDED, REJECTED, FAILED, SUPERSEDED, DUPLICATE)
ORDER = (RECEIVED, VALIDATING, VALIDATED, TRAINING, TRAINED, EVALUATING, EVALUATED, DECIDED)
WAITING = (RECEIVED, VALIDATED, TRAINED, EVALUATED)   # for an event that starts the next step

VALIDATOR, TRAINER, EVALUATOR, MONITOR = "validator", "trainer", "evaluator", "monitor"
STEPS = (VALIDATOR, TRAINER, EVALUATOR)

# step → (the status it claims the run from, the status while it runs, its status once done, the event it then
# publishes)
CLAIM = {
    VALIDATOR: (RECEIVED, VALIDATING, VALIDATED, "data-validated"),
    TRAINER: (VALIDATED, TRAINING, TRAINED, "model-trained"),
    EVALUATOR: (TRAINED, EVALUATING, EVALUATED, "model-evaluated"),
}
STEP_OF = {running: step for step, (_, running, _, _) in CLAIM.items()}   # validating → validator, ...

# What a person reads while following a run.
PROGRESS = {
    RECEIVED: "received, starting the validator", VALIDATING: "validating the batch",
    VALIDATED: "valid, starting the trainer", TRAINING: "training a challenger",
    TRAINED: "trained, starting the evaluator", EVALUATING: "scoring challenger and champion",
    EVALUATED: "evaluated, deciding", DECIDED: "decided", REJECTED: "rejected", FAILED: "failed",
    QUEUED: "valid, waiting for the dataset's training in progress",
    SUPERSEDED: "superseded: its batch is trained on by a later run",
    DUPLICATE: "a duplicate: the dataset has these rows already",
}

# Runs stored before one name per step recorded the failed step as a verb.
_OLD_STEP_NAMES = {"validate": VALIDATOR, "train": TRAINER, "evaluate": EVALUATOR}


def done(status: str, step: str) -> bool:
    """Whether a run in ``status`` is past ``step`` (its work is done already)."""
    finished = CLAIM[step][2]
    return status in ORDER and ORDER.index(status) >= ORDER.index(finished)


def failed_step(error: dict | None) -> str | None:
    """The step a failed run's ``error`` names (``step``; older runs wrote ``stage``, as a verb or a job)."""
    if not error:
        return None
    step = error.get("step") or error.get("stage")
    return _OLD_STEP_NAMES.get(step, step)


def search_finisher(done: list[int], finisher: int | None, task: int, tasks: int) -> tuple[list[int], int | None]:
    """(tasks done, the finisher) once search task ``task`` of ``tasks`` has written its results: the task
    whose record completes the set finishes the search (fits the winner); a retried finisher stays it."""
    done = sorted(set(done) | {task})
    if finisher is None and len(done) >= tasks:
        finisher = task
    return done, finisher
