"""State in Firestore: runs (a state machine), the model registry, the decision ledger, reviews and monitoring.

Every change is a transaction that reads the current state first, so a duplicate or late event changes nothing
and two concurrent writers cannot both win. The rules the transactions apply are pure (tollgate.decisions,
tollgate.lifecycle); each part of this package reads documents and writes what a rule says:

    runs/{run_id}                          the run record (runs.py)
    outbox/{id}                            events written with the transaction they follow (runs.py)
    rejected_events/{message_id}           malformed events, recorded and acknowledged (runs.py)
    datasets/{dataset}                     next_version, serving pointers (tollgate.serving), deployment (registry.py),
                                           the training slot (training.py)
    datasets/{dataset}/versions/{version}  immutable model version records (registry.py)
    datasets/{dataset}/batches/{sha256}    curated batches for training windows (registry.py)
    datasets/{dataset}/ledger/{entry}      append-only: decisions, review outcomes, canary moves, rollbacks (ledger.py)
    reviews/{run_id}                       human reviews: pending → approved | rejected | expired | stale (ledger.py)
    monitoring/{dataset}                   cool-downs: last retraining request, last alert per version and kind
    monitoring/{dataset}/windows/{end}     the monitor's time series: one window per tick (monitoring.py)
    alerts/{alert_id}                      monitoring alerts (also published to the `alerts` topic) (monitoring.py)
    mirrors/{dataset}                      runs whose MLflow sync failed, for the reconciler to retry (mirrors.py)
"""

from tollgate.cloud.state.base import now
from tollgate.cloud.state.ledger import Ledger
from tollgate.cloud.state.mirrors import Mirrors
from tollgate.cloud.state.monitoring import Monitoring
from tollgate.cloud.state.registry import Registry
from tollgate.cloud.state.runs import Runs
from tollgate.cloud.state.training import Training


class State(Runs, Registry, Ledger, Monitoring, Training, Mirrors):
    """Every Firestore read, write and transaction of Tollgate, one client."""


__all__ = ["State", "now"]
