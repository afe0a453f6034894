"""The training slot in Firestore: ``datasets/{dataset}.training`` names the one run of the dataset that may
train now (tollgate.lifecycle: queued and superseded runs). Taking and passing it are transactions over the
dataset, the holder and the queued runs; which run trains next, and which queued runs its window covers, are
pure rules (tollgate.decisions)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from google.cloud import firestore

from tollgate import decisions, lifecycle
from tollgate.cloud.state.base import Base, now
from tollgate.events import Event


class Training(Base):
    def _queued(self, tx: firestore.Transaction, dataset: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The dataset's queued runs, and the registration time of each one's batch (reads only)."""
        query = (self.db.collection("runs").where(filter=firestore.FieldFilter("dataset", "==", dataset))
                 .where(filter=firestore.FieldFilter("status", "==", lifecycle.QUEUED)))
        queued = [d.to_dict() for d in tx.get(query)]
        return queued, self._batch_order(tx, dataset, queued)

    def _batch_order(self, tx: firestore.Transaction, dataset: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
        order = {}
        for run in runs:
            sha = (run.get("curated") or {}).get("sha256")
            if sha and sha not in order:
                snap = self.dataset_ref(dataset).collection("batches").document(sha).get(transaction=tx)
                order[sha] = (snap.to_dict() or {}).get("added_at") if snap.exists else None
        return order

    def _hold(self, tx: firestore.Transaction, dataset: str, ds: dict[str, Any], chosen: dict[str, Any],
              superseded: list[dict[str, Any]], at: dt.datetime) -> None:
        """``chosen`` takes the slot (validated, ready for its trainer); each run its window covers ends
        superseded by it, with a ledger line (writes only)."""
        ds_ref = self.dataset_ref(dataset)
        for run in superseded:
            ledger_id = self._new_ledger_id(dataset)
            tx.create(ds_ref.collection("ledger").document(ledger_id),
                      decisions.superseded_entry(dataset, ledger_id, run, chosen["run_id"], ds, at))
            tx.update(self.run_ref(run["run_id"]), {
                "status": lifecycle.SUPERSEDED, "superseded_by": chosen["run_id"], "updated_at": at,
                "reason": f"superseded: run {chosen['run_id']} trains on a window that holds this run's batch",
                "history": firestore.ArrayUnion([{"status": lifecycle.SUPERSEDED, "at": at,
                                                  "by": chosen["run_id"]}])})
        if (ds.get("training") or {}).get("run_id") != chosen["run_id"]:
            tx.set(ds_ref, {"training": {"run_id": chosen["run_id"], "since": at}}, merge=["training"])
        if chosen.get("status") == lifecycle.QUEUED:
            tx.update(self.run_ref(chosen["run_id"]), {"status": lifecycle.VALIDATED, "updated_at": at, "history":
                                                       firestore.ArrayUnion([{"status": lifecycle.VALIDATED,
                                                                              "at": at}])})

    def take_training_slot(self, dataset: str, run_id: str) -> str:
        """"granted" when ``run_id`` may train now: the slot is free, its own, or its holder has ended (it takes
        it, and the queued runs whose batch its window holds end superseded); "queued" when another run of the
        dataset trains (it waits until the slot passes); "skipped" for a run neither validated nor queued (a
        duplicate event)."""
        ds_ref, run_ref = self.dataset_ref(dataset), self.run_ref(run_id)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> str:
            ds = ds_ref.get(transaction=tx).to_dict() or {}
            slot = ds.get("training") or {}
            holder = (self.run_ref(slot["run_id"]).get(transaction=tx).to_dict()
                      if slot.get("run_id") and slot["run_id"] != run_id else None)
            run = run_ref.get(transaction=tx).to_dict() or {}
            if slot.get("run_id") == run_id:
                return "granted"
            if run.get("status") not in (lifecycle.VALIDATED, lifecycle.QUEUED):
                return "skipped"
            at = now()
            if decisions.slot_free(slot, holder, run_id, lifecycle.TERMINAL):
                queued, order = self._queued(tx, dataset)
                order.update(self._batch_order(tx, dataset, [run]))
                covered = set(decisions.covered(run, queued, order))
                self._hold(tx, dataset, ds, run, [q for q in queued if q["run_id"] in covered], at)
                return "granted"
            if run.get("status") == lifecycle.VALIDATED:
                tx.update(run_ref, {"status": lifecycle.QUEUED, "queued_behind": slot["run_id"], "updated_at": at,
                                    "history": firestore.ArrayUnion([{"status": lifecycle.QUEUED, "at": at,
                                                                      "behind": slot["run_id"]}])})
            return "queued"

        return self._run(apply)

    def pass_training_slot(self, dataset: str,
                           event_for: Callable[[dict[str, Any]], Event]) -> tuple[str | None, list[str], Event | None]:
        """When the slot's holder has ended: (the queued run that now holds it, the queued runs it supersedes,
        its data-validated event ``event_for(run)`` — written to the outbox here, for the caller to publish).
        Nothing queued: the slot is freed. (None, [], None) while the holder still trains."""
        ds_ref = self.dataset_ref(dataset)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> tuple[str | None, list[str], Event | None]:
            ds = ds_ref.get(transaction=tx).to_dict() or {}
            slot = ds.get("training") or {}
            holder = self.run_ref(slot["run_id"]).get(transaction=tx).to_dict() if slot.get("run_id") else None
            if slot and not decisions.slot_free(slot, holder, "", lifecycle.TERMINAL):
                return None, [], None
            queued, order = self._queued(tx, dataset)
            chosen_id = decisions.next_training(queued, order)
            if chosen_id is None:
                if slot:
                    tx.update(ds_ref, {"training": firestore.DELETE_FIELD})
                return None, [], None
            chosen = next(r for r in queued if r["run_id"] == chosen_id)
            covered = set(decisions.covered(chosen, queued, order))   # the newest: every other queued run
            superseded = [r for r in queued if r["run_id"] in covered]
            at = now()
            event = event_for(chosen)
            self._outbox(tx, (event,), at)   # type: ignore[attr-defined]
            self._hold(tx, dataset, ds, chosen, superseded, at)
            return chosen_id, [r["run_id"] for r in superseded], event

        return self._run(apply)
