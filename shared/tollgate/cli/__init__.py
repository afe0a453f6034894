"""`tollgate`: drop data, follow runs and see what serves, on the local cloud or a real project.

The CLI talks to storage, Firestore and Cloud Run through the same clients as the pipeline (target.py says
which cloud). Each command group is a module; what a command prints is a view (views.py: the ``--json``
payload, pure) and its table (render.py).

    local       up, down, env                      runs        drop, runs, run show, report
    specs       spec check, infer, push            models      models, model show, history
    decisions   review ..., canary, rollback       monitoring  monitor, alerts
    operations  status, reconcile                  predictions url, predict
"""

from tollgate.cli import (  # noqa: F401 -- they register
    decisions,
    local,
    models,
    monitoring,
    operations,
    predictions,
    runs,
    specs,
)
from tollgate.cli.app import main

__all__ = ["main"]
