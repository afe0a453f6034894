"""Runs in Firestore: ``runs/{run_id}`` (a state machine: tollgate.lifecycle), the events that follow their
transitions (``outbox/{id}``: tollgate.outbox) and malformed events (``rejected_events/{message_id}``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

from tollgate import lifecycle
from tollgate.cloud.state.base import Base, now
from tollgate.events import Event
from tollgate.lifecycle import RECEIVED


class Runs(Base):
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

    def transition(self, run_id: str, expect: tuple[str, ...], to: str, *, events: tuple[Event, ...] = (),
                   note: dict[str, Any] | None = None, **fields: Any) -> bool:
        """Move a run from one of ``expect`` to ``to``; False (nothing written) from any other status.
        ``events`` go into the outbox in the same transaction (the caller then publishes them: outbox.py);
        ``note`` goes on the history entry (e.g. why the reconciler moved the run)."""
        ref = self.run_ref(run_id)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> bool:
            snap = ref.get(transaction=tx)
            if not snap.exists or snap.get("status") not in expect:
                return False
            at = now()
            self._outbox(tx, events, at)
            tx.update(ref, {**fields, "status": to, "updated_at": at,
                            "history": firestore.ArrayUnion([{"status": to, "at": at, **(note or {})}])})
            return True

        return self._run(apply)

    # -- the outbox (outbox.py) -------------------------------------------------------------
    def _outbox(self, tx: firestore.Transaction, events: tuple[Event, ...] | list[Event], at: dt.datetime) -> None:
        for event in events:
            tx.create(self.db.collection("outbox").document(event.id),
                      {"topic": event.topic, "payload": event.payload, "attributes": event.attributes,
                       "run_id": event.payload.get("run_id"), "created_at": at})

    def outbox(self, before: dt.datetime) -> list[Event]:
        """Events written before ``before`` and not published yet, oldest first."""
        found = [(d.get("created_at"), Event(d.get("topic"), d.get("payload"), d.get("attributes") or {}, d.id))
                 for d in self.db.collection("outbox").where(
                     filter=firestore.FieldFilter("created_at", "<", before)).stream()]
        return [event for _, event in sorted(found, key=lambda pair: pair[0])]

    def outbox_done(self, event_id: str) -> None:
        self.db.collection("outbox").document(event_id).delete()

    def search_task_done(self, run_id: str, task: int, tasks: int) -> bool:
        """Record that search task ``task`` of ``tasks`` has written its results; True for exactly one
        task: the one whose record completes the set (lifecycle.search_finisher)."""
        ref = self.run_ref(run_id)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> bool:
            run = ref.get(transaction=tx).to_dict() or {}
            done, finisher = lifecycle.search_finisher(run.get("search_done") or [], run.get("search_finisher"),
                                                       task, tasks)
            tx.update(ref, {"search_done": done, "search_finisher": finisher, "updated_at": now()})
            return finisher == task

        return self._run(apply)

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Record facts that do not change the status (execution names, deployment progress)."""
        self.run_ref(run_id).update({**fields, "updated_at": now()})

    def runs_in(self, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
        """Every run in one of ``statuses`` (the reconciler's in-flight runs: few at any time)."""
        query = self.db.collection("runs").where(filter=firestore.FieldFilter("status", "in", list(statuses)))
        return [d.to_dict() for d in query.stream()]

    def recover_run(self, run_id: str, status: str, seen: dict[str, Any], to: str, recovery: dict[str, Any],
                    events: tuple[Event, ...] = (), **fields: Any) -> bool:
        """The reconciler's move: only if the run is still as it was judged (same status, same execution of
        the step, same last update), so two reconcilers, or a reconciler and a late job, never both act."""
        ref = self.run_ref(run_id)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> bool:
            snap = ref.get(transaction=tx)
            run = snap.to_dict() or {}
            if not snap.exists or run.get("status") != status or run.get("updated_at") != seen.get("updated_at") \
                    or (run.get("executions") or {}) != (seen.get("executions") or {}):
                return False
            at = now()
            self._outbox(tx, events, at)
            entry = {**recovery, "at": at, "by": "reconciler"}
            changes = {**fields, "updated_at": at, "recoveries": firestore.ArrayUnion([entry])}
            if to != status:
                changes.update(status=to, history=firestore.ArrayUnion([{"status": to, "at": at,
                                                                          "by": "reconciler"}]))
            tx.update(ref, changes)
            return True

        return self._run(apply)

    def get_runs(self, run_ids: list[str], fields: tuple[str, ...] | None = None) -> dict[str, dict[str, Any] | None]:
        """Several runs in one round trip (a page listing a hundred versions reads their runs at once); with
        ``fields``, only those field paths of each."""
        found: dict[str, dict[str, Any] | None] = dict.fromkeys(run_ids)
        if run_ids:
            refs = [self.run_ref(r) for r in dict.fromkeys(run_ids)]
            for snap in self.db.get_all(refs, field_paths=list(fields) if fields else None):
                if snap.exists:
                    found[snap.id] = snap.to_dict()
        return found

    def list_runs(self, limit: int = 20, dataset: str | None = None,
                  fields: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """The newest runs (of ``dataset``); with ``fields``, only those field paths of each."""
        query = self.db.collection("runs")
        if dataset:
            query = query.where(filter=firestore.FieldFilter("dataset", "==", dataset))
        if fields:
            query = query.select(list(fields))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING).limit(limit)
        return [d.to_dict() for d in query.stream()]

    def record_rejected_event(self, message_id: str, reason: str, detail: dict[str, Any]) -> None:
        self.db.collection("rejected_events").document(message_id or "unknown").set(
            {"reason": reason, "detail": detail, "at": now()})
