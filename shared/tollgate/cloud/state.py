"""State in Firestore: runs (a state machine), the model registry and the decision ledger.

Every change is a transaction that reads the current state first, so a duplicate or late
event changes nothing and two concurrent writers cannot both win.

    runs/{run_id}                          the run record
    datasets/{dataset}                     next_version, champion_version, previous_version, serving
    datasets/{dataset}/versions/{version}  immutable model version records
    datasets/{dataset}/ledger/{entry}      append-only decisions
    rejected_events/{message_id}           malformed events, recorded and acknowledged
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

# Run statuses, in order. Terminal ones end a run.
RECEIVED, VALIDATING, VALIDATED = "received", "validating", "validated"
TRAINING, TRAINED, EVALUATING, EVALUATED = "training", "trained", "evaluating", "evaluated"
DECIDED, REJECTED, FAILED = "decided", "rejected", "failed"
TERMINAL = (DECIDED, REJECTED, FAILED)
ORDER = (RECEIVED, VALIDATING, VALIDATED, TRAINING, TRAINED, EVALUATING, EVALUATED, DECIDED)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class State:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    # -- runs ------------------------------------------------------------------------------
    def run_ref(self, run_id: str):  # type: ignore[no-untyped-def]
        return self.db.collection("runs").document(run_id)

    def create_run(self, run_id: str, record: dict[str, Any]) -> bool:
        """Create the run; False if it exists already (a duplicate notification)."""
        at = now()
        try:
            self.run_ref(run_id).create({**record, "run_id": run_id, "status": RECEIVED, "created_at": at,
                                         "updated_at": at, "history": [{"status": RECEIVED, "at": at}]})
            return True
        except AlreadyExists:
            return False

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        snap = self.run_ref(run_id).get()
        return snap.to_dict() if snap.exists else None

    def transition(self, run_id: str, expect: tuple[str, ...], to: str, **fields: Any) -> bool:
        """Move a run from one of ``expect`` to ``to``; False (nothing written) from any other status."""
        ref = self.run_ref(run_id)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> bool:
            snap = ref.get(transaction=tx)
            if not snap.exists or snap.get("status") not in expect:
                return False
            at = now()
            tx.update(ref, {**fields, "status": to, "updated_at": at,
                            "history": firestore.ArrayUnion([{"status": to, "at": at}])})
            return True

        return apply(self.db.transaction())

    def search_task_done(self, run_id: str, task: int, tasks: int) -> bool:
        """Record that search task ``task`` of ``tasks`` has written its results; True for exactly one
        task: the one whose record completes the set (it then fits the winner). A retried finisher
        is told True again."""
        ref = self.run_ref(run_id)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> bool:
            snap = ref.get(transaction=tx)
            run = snap.to_dict() or {}
            done = sorted(set(run.get("search_done") or []) | {task})
            finisher = run.get("search_finisher")
            if finisher is None and len(done) >= tasks:
                finisher = task
            tx.update(ref, {"search_done": done, "search_finisher": finisher, "updated_at": now()})
            return finisher == task

        return apply(self.db.transaction())

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Record facts that do not change the status (execution names, deployment progress)."""
        self.run_ref(run_id).update({**fields, "updated_at": now()})

    def list_runs(self, limit: int = 20, dataset: str | None = None) -> list[dict[str, Any]]:
        query = self.db.collection("runs")
        if dataset:
            query = query.where(filter=firestore.FieldFilter("dataset", "==", dataset))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING).limit(limit)
        return [d.to_dict() for d in query.stream()]

    def record_rejected_event(self, message_id: str, reason: str, detail: dict[str, Any]) -> None:
        self.db.collection("rejected_events").document(message_id or "unknown").set(
            {"reason": reason, "detail": detail, "at": now()})

    # -- registry --------------------------------------------------------------------------
    def dataset_ref(self, dataset: str):  # type: ignore[no-untyped-def]
        return self.db.collection("datasets").document(dataset)

    def version_ref(self, dataset: str, version: int):  # type: ignore[no-untyped-def]
        return self.dataset_ref(dataset).collection("versions").document(f"{version:06d}")

    def get_dataset(self, dataset: str) -> dict[str, Any]:
        snap = self.dataset_ref(dataset).get()
        return snap.to_dict() if snap.exists else {}

    def list_datasets(self) -> list[dict[str, Any]]:
        return [{"name": d.id, **d.to_dict()} for d in self.db.collection("datasets").stream()]

    def get_version(self, dataset: str, version: int) -> dict[str, Any] | None:
        snap = self.version_ref(dataset, version).get()
        return snap.to_dict() if snap.exists else None

    def list_versions(self, dataset: str) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.dataset_ref(dataset).collection("versions").order_by("version").stream()]

    def register_version(self, dataset: str, run_id: str, make_record: Callable[[int], dict[str, Any]]) -> int:
        """Allocate the next version number and create its immutable record, in one transaction.

        Idempotent per run: a retried trainer gets the version its run already registered.
        Concurrent registrations get distinct, consecutive numbers.
        """
        ds_ref, run_ref = self.dataset_ref(dataset), self.run_ref(run_id)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> int:
            run = run_ref.get(transaction=tx)
            ds = ds_ref.get(transaction=tx)
            if run.exists and run.to_dict().get("challenger_version"):
                return int(run.get("challenger_version"))
            version = int((ds.to_dict() or {}).get("next_version", 1)) if ds.exists else 1
            tx.set(ds_ref, {"next_version": version + 1, "updated_at": now()}, merge=True)
            tx.create(self.version_ref(dataset, version),
                      {**make_record(version), "version": version, "dataset": dataset, "run_id": run_id,
                       "registered_at": now()})
            if run.exists:
                tx.update(run_ref, {"challenger_version": version, "updated_at": now()})
            return version

        return apply(self.db.transaction())

    def add_batch(self, dataset: str, run_id: str, curated: dict[str, Any]) -> None:
        """Register a curated batch for training windows (content-addressed: once per content)."""
        ref = self.dataset_ref(dataset).collection("batches").document(curated["sha256"])
        try:
            ref.create({**curated, "run_id": run_id, "added_at": now()})
        except AlreadyExists:
            pass

    def list_batches(self, dataset: str) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.dataset_ref(dataset).collection("batches").order_by("added_at").stream()]

    # -- decisions -------------------------------------------------------------------------
    def apply_decision(self, run_id: str, dataset: str, verdict: str, reason: str, entry: dict[str, Any],
                       evaluated_against: int | None) -> str:
        """Record a decision and move stages atomically.

        Returns "applied", "duplicate" (already decided) or "stale" (the champion changed since
        the evaluation: the caller re-evaluates, never promotes on stale evidence).
        """
        run_ref, ds_ref = self.run_ref(run_id), self.dataset_ref(dataset)
        ledger_ref = ds_ref.collection("ledger").document(f"decision-{run_id}")

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> str:
            run = run_ref.get(transaction=tx)
            ds = ds_ref.get(transaction=tx)
            if not run.exists or run.get("status") != EVALUATED:
                return "duplicate"
            state = ds.to_dict() or {}
            champion = state.get("champion_version")
            if champion != evaluated_against:
                return "stale"
            at = now()
            challenger = run.get("challenger_version")
            serving = champion
            if verdict == "promote":
                serving = challenger
                tx.set(ds_ref, {"champion_version": challenger, "previous_version": champion,
                                "serving": {"version": challenger, "since": at, "run_id": run_id},
                                "updated_at": at}, merge=True)
            tx.create(ledger_ref, {**entry, "kind": "decision", "verdict": verdict, "reason": reason,
                                   "run_id": run_id, "dataset": dataset, "actor": entry.get("actor", "auto"),
                                   "champion_before": champion, "champion_after": serving, "at": at})
            tx.update(run_ref, {"status": DECIDED, "decision": verdict, "reason": reason,
                                "model_version": serving, "decided_at": at, "updated_at": at,
                                "deployment": {"status": "pending" if verdict == "promote" else "none"},
                                "history": firestore.ArrayUnion([{"status": DECIDED, "at": at}])})
            return "applied"

        return apply(self.db.transaction())

    def ledger(self, dataset: str) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.dataset_ref(dataset).collection("ledger").order_by("at").stream()]
