"""Decisions in Firestore: each decision, review outcome and serving move is one transaction that moves the
serving pointers (``datasets/{dataset}``), appends to the ledger (``datasets/{dataset}/ledger/{entry}``) and
updates the run and its review (``reviews/{run_id}``). What each writes is a pure rule (tollgate.decisions);
this module reads the documents and applies the writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.cloud import firestore

from tollgate import decisions
from tollgate.cloud.state.base import Base, now
from tollgate.events import Event
from tollgate.lifecycle import DECIDED, EVALUATED, TRAINED


class Ledger(Base):
    def _apply(self, tx: firestore.Transaction, writes: decisions.Writes, run_id: str | None, dataset: str,
               at: dt.datetime) -> None:
        """Write what a rule decided, inside the caller's transaction."""
        if writes.dataset is not None:
            tx.set(self.dataset_ref(dataset), writes.dataset, merge=list(writes.dataset))   # whole fields replaced
        if writes.ledger is not None:
            tx.create(self.dataset_ref(dataset).collection("ledger").document(writes.ledger["ledger_id"]),
                      writes.ledger)
        if writes.review_new is not None:
            tx.set(self.review_ref(run_id), writes.review_new)
        if writes.review is not None:
            tx.update(self.review_ref(run_id), writes.review)
        if writes.batch is not None:
            sha, fields = writes.batch
            tx.update(self.dataset_ref(dataset).collection("batches").document(sha), fields)
        if writes.run is not None or writes.status is not None:
            fields = dict(writes.run or {})
            if writes.status is not None:
                fields.update(status=writes.status, updated_at=at,
                              history=firestore.ArrayUnion([{"status": writes.status, "at": at}]))
            tx.update(self.run_ref(run_id), fields)

    def _new_ledger_id(self, dataset: str) -> str:
        return self.dataset_ref(dataset).collection("ledger").document().id

    def apply_decision(self, run_id: str, dataset: str, verdict: str, reason: str, entry: dict[str, Any],
                       evaluated_against: int | None, *, canary_percent: int = 0,
                       review_hours: float = 72.0, force: bool = False) -> tuple[str, dict[str, Any] | None]:
        """Record a decision (decisions.decide) in one transaction: ("applied", ledger entry), ("duplicate",
        None) when the run is decided already, or ("stale", None) when the champion changed since the
        evaluation (the caller re-evaluates). ``entry``: the evidence the ledger entry keeps."""
        run_ref, ds_ref = self.run_ref(run_id), self.dataset_ref(dataset)
        ledger_id = self._new_ledger_id(dataset)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> tuple[str, dict[str, Any] | None]:
            run, ds = run_ref.get(transaction=tx), ds_ref.get(transaction=tx)
            at = now()
            writes = decisions.decide(run.to_dict() if run.exists else None, ds.to_dict() or {}, dataset=dataset,
                                      verdict=verdict, reason=reason, inputs=entry,
                                      evaluated_against=evaluated_against, canary_percent=canary_percent,
                                      review_hours=review_hours, force=force, at=at, ledger_id=ledger_id,
                                      run_status=EVALUATED, decided_status=DECIDED)
            self._apply(tx, writes, run_id, dataset, at)
            return writes.outcome, writes.ledger

        return self._run(apply)

    def resolve_review(self, run_id: str, action: str, actor: str, reason: str, *, canary_percent: int = 0,
                       stale_event: Event | None = None) -> tuple[str, dict[str, Any] | None]:
        """Approve, reject or expire a pending review (decisions.resolve) in one transaction: (outcome, ledger
        entry or None); a "stale" approval sends the run back to be evaluated with ``stale_event``, written to
        the outbox (the caller publishes it)."""
        review_ref, run_ref = self.review_ref(run_id), self.run_ref(run_id)
        review = self.get_review(run_id)
        ledger_id = self._new_ledger_id(review["dataset"]) if review else ""

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> tuple[str, dict[str, Any] | None]:
            snap = review_ref.get(transaction=tx)
            current = snap.to_dict() if snap.exists else None
            dataset = (current or {}).get("dataset", "")
            ds: dict[str, Any] = {}
            if current is not None:
                ds = self.dataset_ref(dataset).get(transaction=tx).to_dict() or {}
            run = run_ref.get(transaction=tx).to_dict() or {}
            at = now()
            writes = decisions.resolve(current, run, ds, action=action, actor=actor, reason=reason,
                                       canary_percent=canary_percent, at=at, ledger_id=ledger_id,
                                       reevaluate_status=TRAINED)
            self._apply(tx, writes, run_id, dataset, at)
            if writes.outcome == "stale" and stale_event is not None:
                self._outbox(tx, [stale_event], at)   # back to the evaluator
            return writes.outcome, writes.ledger

        return self._run(apply)

    def move_serving(self, dataset: str, action: str, actor: str, reason: str,
                     version: int | None = None) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
        """Canary promote/abort or rollback (decisions.move) in one transaction: (outcome, ledger entry,
        dataset state after). Raises serving.MoveError when the action makes no sense now."""
        ds_ref = self.dataset_ref(dataset)
        ledger_id = self._new_ledger_id(dataset)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
            current = ds_ref.get(transaction=tx).to_dict() or {}
            at = now()
            writes = decisions.move(current, dataset=dataset, action=action, actor=actor, reason=reason,
                                    version=version, at=at, ledger_id=ledger_id,
                                    version_exists=lambda v: self.version_ref(dataset, v).get(transaction=tx).exists)
            self._apply(tx, writes, None, dataset, at)
            return writes.outcome, writes.ledger, writes.after

        return self._run(apply)

    def set_deployment(self, dataset: str, generation: int, status: str, **detail: Any) -> bool:
        """Record how the deployment of a generation went; a newer generation is never overwritten."""
        ds_ref = self.dataset_ref(dataset)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> bool:
            current = (ds_ref.get(transaction=tx).to_dict() or {}).get("deployment") or {}
            if current.get("generation") != generation:
                return False
            tx.update(ds_ref, {"deployment": {**current, "status": status, **detail, "at": now()}})
            return True

        return self._run(apply)

    def get_review(self, run_id: str) -> dict[str, Any] | None:
        snap = self.review_ref(run_id).get()
        return snap.to_dict() if snap.exists else None

    def list_reviews(self, status: str | None = None, dataset: str | None = None,
                     limit: int = 50) -> list[dict[str, Any]]:
        query = self.db.collection("reviews")
        if status:
            query = query.where(filter=firestore.FieldFilter("status", "==", status))
        if dataset:
            query = query.where(filter=firestore.FieldFilter("dataset", "==", dataset))
        found = [d.to_dict() for d in query.stream()]
        return sorted(found, key=lambda r: r["requested_at"], reverse=True)[:limit]

    def overdue_reviews(self, at: dt.datetime | None = None) -> list[str]:
        at = at or now()
        query = self.db.collection("reviews").where(filter=firestore.FieldFilter("status", "==", "pending"))
        return [d.get("run_id") for d in query.stream() if d.get("expires_at") <= at]

    def ledger_entry(self, dataset: str, ledger_id: str) -> dict[str, Any]:
        return self.dataset_ref(dataset).collection("ledger").document(ledger_id).get().to_dict()

    def mark_announced(self, dataset: str, ledger_id: str) -> None:
        """The entry's model-decided event is out (the one field of a ledger entry that ever changes)."""
        self.dataset_ref(dataset).collection("ledger").document(ledger_id).update({"announced": True})

    def last_unannounced(self, dataset: str) -> dict[str, Any] | None:
        """The latest ledger entry, if its event never went out (its deployment failed before)."""
        query = (self.dataset_ref(dataset).collection("ledger")
                 .order_by("at", direction=firestore.Query.DESCENDING).limit(1))
        latest = [d.to_dict() for d in query.stream()]
        return latest[0] if latest and latest[0].get("announced") is False else None

    def ledger(self, dataset: str) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.dataset_ref(dataset).collection("ledger").order_by("at").stream()]
