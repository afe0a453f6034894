"""State in Firestore: runs (a state machine), the model registry and the decision ledger.

Every change is a transaction that reads the current state first, so a duplicate or late
event changes nothing and two concurrent writers cannot both win.

    runs/{run_id}                          the run record
    datasets/{dataset}                     next_version, serving pointers (stages.py), deployment
    datasets/{dataset}/versions/{version}  immutable model version records
    datasets/{dataset}/ledger/{entry}      append-only: decisions, review outcomes, canary moves, rollbacks
    reviews/{run_id}                       human reviews: pending → approved | rejected | expired | stale
    rejected_events/{message_id}           malformed events, recorded and acknowledged
    outbox/{id}                            events written with the transaction they follow, until published
    monitoring/{dataset}                   cool-downs: last retraining request, last alert per version and kind
    monitoring/{dataset}/windows/{end}     the monitor's time series: one window per tick
    alerts/{alert_id}                      monitoring alerts (also published to the `alerts` topic)
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

from tollgate import stages
from tollgate.outbox import Event

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

    def _transaction(self) -> firestore.Transaction:
        """Contended transactions retry with backoff; ten attempts ride out a busy emulator too."""
        return self.db.transaction(max_attempts=10)

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

        return apply(self._transaction())

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

        return apply(self._transaction())

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

        return apply(self._transaction())

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

    def reserve_version(self, dataset: str, run_id: str) -> int:
        """The version number of the run's challenger, allocated once per run in one transaction before any
        artifact is written: concurrent trainings get distinct, consecutive numbers and a retried trainer
        gets its run's number again. A run that never registers (it failed for good) leaves its number
        unused."""
        ds_ref, run_ref = self.dataset_ref(dataset), self.run_ref(run_id)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> int:
            run = run_ref.get(transaction=tx)
            ds = ds_ref.get(transaction=tx)
            reserved = (run.to_dict() or {}).get("reserved_version") if run.exists else None
            if reserved:
                return int(reserved)
            version = int((ds.to_dict() or {}).get("next_version", 1)) if ds.exists else 1
            tx.set(ds_ref, {"next_version": version + 1, "updated_at": now()}, merge=True)
            if run.exists:
                tx.update(run_ref, {"reserved_version": version, "updated_at": now()})
            return version

        return apply(self._transaction())

    def register_version(self, dataset: str, run_id: str, make_record: Callable[[int], dict[str, Any]]) -> int:
        """Create the immutable record of the run's (reserved) version; its artifacts are written already.

        Idempotent per run: a retried trainer finds its record and gets its version again.
        """
        version = self.reserve_version(dataset, run_id)
        try:
            self.version_ref(dataset, version).create(
                {**make_record(version), "version": version, "dataset": dataset, "run_id": run_id,
                 "registered_at": now()})
        except AlreadyExists:
            pass
        if self.get_run(run_id) is not None:
            self.update_run(run_id, challenger_version=version)
        return version

    def add_batch(self, dataset: str, run_id: str, curated: dict[str, Any]) -> None:
        """Register a curated batch for training windows (content-addressed: once per content)."""
        ref = self.dataset_ref(dataset).collection("batches").document(curated["sha256"])
        try:
            ref.create({**curated, "run_id": run_id, "added_at": now()})
        except AlreadyExists:
            pass

    def list_batches(self, dataset: str) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.dataset_ref(dataset).collection("batches").order_by("added_at").stream()]

    # -- decisions, reviews and serving moves -----------------------------------------------
    def review_ref(self, run_id: str):  # type: ignore[no-untyped-def]
        return self.db.collection("reviews").document(run_id)

    def _ledger(self, tx: firestore.Transaction, dataset: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Append an entry to the dataset's decision ledger (inside the caller's transaction)."""
        ref = self.dataset_ref(dataset).collection("ledger").document()
        record = {**entry, "dataset": dataset, "ledger_id": ref.id, "announced": False}
        tx.create(ref, record)
        return record

    def _serve(self, tx: firestore.Transaction, dataset: str, current: dict[str, Any], changes: dict[str, Any],
               at: dt.datetime) -> dict[str, Any]:
        """Write new serving pointers with a fresh deployment generation (Cloud Run follows it)."""
        after = {**current, **changes}
        generation = int((current.get("deployment") or {}).get("generation", 0)) + 1
        deployment = {"generation": generation, "status": "pending", "at": at,
                      "traffic": [{"version": v, "percent": p} for v, p in stages.traffic(after)]}
        fields = {**changes, "deployment": deployment, "updated_at": at}
        tx.set(self.dataset_ref(dataset), fields, merge=list(fields))  # whole fields replaced, others kept
        return {**after, "deployment": deployment}

    def apply_decision(self, run_id: str, dataset: str, verdict: str, reason: str, entry: dict[str, Any],
                       evaluated_against: int | None, *, canary_percent: int = 0,
                       review_hours: float = 72.0, force: bool = False) -> tuple[str, dict[str, Any] | None]:
        """Record a decision and move the serving pointers, in one transaction.

        Returns ("applied", ledger entry), ("duplicate", None) when the run is decided already, or
        ("stale", None) when the champion changed since the evaluation (the caller re-evaluates;
        nothing is promoted on stale evidence). ``force`` records a review whatever the champion.
        A review verdict also opens ``reviews/{run_id}``, pending until approved, rejected or expired.
        """
        run_ref, ds_ref = self.run_ref(run_id), self.dataset_ref(dataset)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> tuple[str, dict[str, Any] | None]:
            run = run_ref.get(transaction=tx)
            ds = ds_ref.get(transaction=tx)
            if not run.exists or run.get("status") != EVALUATED:
                return "duplicate", None
            current = ds.to_dict() or {}
            champion = current.get("champion_version")
            if champion != evaluated_against and not force:
                return "stale", None
            at = now()
            challenger = run.get("challenger_version")
            after = current
            fields: dict[str, Any] = {"status": DECIDED, "decision": verdict, "reason": reason, "decided_at": at,
                                      "decided_by": "auto", "deployment": {"status": "none"}}
            if verdict == "promote":
                after = self._serve(tx, dataset, current, stages.move(
                    current, stages.PROMOTE, version=challenger, percent=canary_percent, run_id=run_id, at=at), at)
                fields["deployment"] = {"status": "pending", "generation": after["deployment"]["generation"]}
            record = self._ledger(tx, dataset, {
                **entry, "kind": "decision", "event": verdict, "verdict": verdict, "reason": reason,
                "run_id": run_id, "actor": "auto", "challenger_version": challenger, "champion_before": champion,
                "champion_after": after.get("champion_version"), "serving_after": stages.serving_summary(after),
                "at": at})
            if verdict == "review":
                expires = at + dt.timedelta(hours=review_hours)
                tx.set(self.review_ref(run_id), {
                    "run_id": run_id, "dataset": dataset, "status": "pending", "requested_at": at,
                    "expires_at": expires, "reason": reason, "challenger_version": challenger,
                    "evaluated_against": evaluated_against, "decision_ledger_id": record["ledger_id"]})
                fields["review"] = {"status": "pending", "expires_at": expires}
            fields.update(model_version=after.get("champion_version"), ledger_id=record["ledger_id"], updated_at=at,
                          history=firestore.ArrayUnion([{"status": DECIDED, "at": at}]))
            tx.update(run_ref, fields)
            return "applied", record

        return apply(self._transaction())

    def resolve_review(self, run_id: str, action: str, actor: str, reason: str, *, canary_percent: int = 0,
                       stale_event: Event | None = None) -> tuple[str, dict[str, Any] | None]:
        """Approve, reject or expire a pending review, in one transaction.

        "approved" promotes the challenger through the same pointer move as an automatic promotion,
        only if the champion is still the one it was judged against; otherwise the review is closed
        as "stale" and the run goes back to be re-evaluated (``stale_event``, written to the outbox; the
        caller publishes it). A review past
        its deadline can only expire. Returns (outcome, ledger entry or None): outcome is "approved",
        "rejected", "expired", "stale", "closed" (not pending any more) or "unknown".
        """
        review_ref, run_ref = self.review_ref(run_id), self.run_ref(run_id)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> tuple[str, dict[str, Any] | None]:
            review = review_ref.get(transaction=tx)
            if not review.exists:
                return "unknown", None
            r = review.to_dict()
            ds_ref = self.dataset_ref(r["dataset"])
            ds = ds_ref.get(transaction=tx)
            run = run_ref.get(transaction=tx)
            if r["status"] != "pending":
                return "closed", None
            at = now()
            outcome = {"approve": "approved", "reject": "rejected", "expire": "expired"}[action]
            if outcome != "expired" and at >= r["expires_at"]:
                outcome, actor_, why = "expired", "auto", "the review deadline had passed"
            else:
                actor_, why = actor, reason
            current = ds.to_dict() or {}
            champion = current.get("champion_version")
            if outcome == "approved" and champion != r.get("evaluated_against"):
                tx.update(review_ref, {"status": "stale", "resolved_at": at, "reviewer": actor,
                                       "resolution": f"champion changed from v{r.get('evaluated_against')} to "
                                                     f"v{champion}; the run is re-evaluated"})
                tx.update(run_ref, {"status": TRAINED, "review.status": "stale", "updated_at": at,
                                    "history": firestore.ArrayUnion([{"status": TRAINED, "at": at}])})
                self._outbox(tx, [stale_event] if stale_event else [], at)   # back to the evaluator
                return "stale", None
            after = current
            run_fields: dict[str, Any] = {"review.status": outcome, "review.reviewer": actor_,
                                          "review.reason": why, "review.resolved_at": at, "updated_at": at}
            if outcome == "approved":
                after = self._serve(tx, r["dataset"], current, stages.move(
                    current, stages.PROMOTE, version=r["challenger_version"], percent=canary_percent,
                    run_id=run_id, at=at, actor=actor_), at)
                run_fields.update(decision="promote", reason=f"approved by {actor_}: {why}", decided_by=actor_,
                                  model_version=after.get("champion_version"),
                                  deployment={"status": "pending", "generation": after["deployment"]["generation"]})
            else:
                run_fields.update(decision="keep", decided_by=actor_, reason=f"{outcome} by {actor_}: {why}")
            sha = (run.to_dict() or {}).get("curated", {}).get("sha256")
            if outcome == "rejected" and sha:   # a rejected batch stays out of later training windows
                tx.update(ds_ref.collection("batches").document(sha),
                          {"excluded": {"by": actor_, "reason": why, "run_id": run_id, "at": at}})
            record = self._ledger(tx, r["dataset"], {
                "kind": "review", "event": outcome, "verdict": "promote" if outcome == "approved" else "keep",
                "reason": why, "run_id": run_id, "actor": actor_, "challenger_version": r["challenger_version"],
                "champion_before": champion, "champion_after": after.get("champion_version"),
                "serving_after": stages.serving_summary(after), "review_reason": r.get("reason"), "at": at})
            tx.update(review_ref, {"status": outcome, "reviewer": actor_, "resolution": why, "resolved_at": at,
                                   "ledger_id": record["ledger_id"]})
            tx.update(run_ref, {**run_fields, "ledger_id": record["ledger_id"]})
            return outcome, record

        return apply(self._transaction())

    def move_serving(self, dataset: str, action: str, actor: str, reason: str,
                     version: int | None = None) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
        """Canary promote/abort or rollback: pointers and a ledger entry in one transaction.

        Returns (outcome, ledger entry, dataset state after): "moved", or "unchanged" when the pointers
        already say so (a repeated rollback; the caller still makes Cloud Run match them).
        Raises stages.MoveError when the action makes no sense now.
        """
        ds_ref = self.dataset_ref(dataset)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
            ds = ds_ref.get(transaction=tx)
            current = ds.to_dict() or {}
            target = version
            if action == stages.ROLLBACK:
                target = stages.rollback_target(current, version)
                if not self.version_ref(dataset, target).get(transaction=tx).exists:
                    raise stages.MoveError(f"{dataset} has no version {target}; list them with "
                                           f"`tollgate models {dataset}`")
            at = now()
            changes = stages.move(current, action, version=target, at=at, actor=actor)
            if not changes:
                return "unchanged", None, current
            canary = current.get("canary") or {}
            after = self._serve(tx, dataset, current, changes, at)
            record = self._ledger(tx, dataset, {
                "kind": "canary" if action != stages.ROLLBACK else "rollback", "event": action,
                "verdict": action, "reason": reason, "actor": actor, "run_id": canary.get("run_id"),
                "challenger_version": canary.get("version") if canary else target,
                "champion_before": current.get("champion_version"),
                "champion_after": after.get("champion_version"), "serving_after": stages.serving_summary(after),
                "at": at})
            return "moved", record, after

        return apply(self._transaction())

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

        return apply(self._transaction())

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

    # -- monitoring ------------------------------------------------------------------------
    def monitoring_ref(self, dataset: str):  # type: ignore[no-untyped-def]
        return self.db.collection("monitoring").document(dataset)

    def record_window(self, dataset: str, result: dict[str, Any]) -> None:
        """One tick's window; its end time is its id, so a retried tick rewrites the same document."""
        doc_id = result["end"].replace(":", "-").replace("+", "Z")
        self.monitoring_ref(dataset).collection("windows").document(doc_id).set({**result, "recorded_at": now()})

    def windows(self, dataset: str, limit: int = 48) -> list[dict[str, Any]]:
        """The latest windows, oldest first."""
        query = (self.monitoring_ref(dataset).collection("windows")
                 .order_by("end", direction=firestore.Query.DESCENDING).limit(limit))
        return [d.to_dict() for d in query.stream()][::-1]

    def claim_cooldown(self, dataset: str, key: str, cooldown: dt.timedelta, at: dt.datetime | None = None) -> bool:
        """True for exactly one caller per ``cooldown`` and key (an alert kind, a retraining request):
        one problem does not raise ten alerts or start ten trainings."""
        at = at or now()
        ref = self.monitoring_ref(dataset)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> bool:
            snap = ref.get(transaction=tx)
            last = ((snap.to_dict() or {}).get("cooldowns") or {}).get(key) if snap.exists else None
            if last is not None and at - last < cooldown:
                return False
            tx.set(ref, {"cooldowns": {key: at}}, merge=True)
            return True
        return apply(self._transaction())

    def add_alert(self, alert_id: str, alert: dict[str, Any]) -> bool:
        try:
            self.db.collection("alerts").document(alert_id).create({**alert, "alert_id": alert_id})
            return True
        except AlreadyExists:
            return False

    def alerts(self, dataset: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        query = self.db.collection("alerts")
        if dataset:
            query = query.where(filter=firestore.FieldFilter("dataset", "==", dataset))
            found = [d.to_dict() for d in query.stream()]
        else:
            found = [d.to_dict() for d in query.order_by("at", direction=firestore.Query.DESCENDING)
                     .limit(limit).stream()]
        return sorted(found, key=lambda a: a["at"], reverse=True)[:limit]
