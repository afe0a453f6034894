"""Mirrors owed to experiment trackers: ``mirrors/{dataset}`` lists the runs (and the serving aliases) whose
sync to MLflow failed, for the reconciler to retry (tollgate.tracking)."""

from __future__ import annotations

from typing import Any, Iterable

from google.cloud import firestore

from tollgate.cloud.state.base import Base, now


class Mirrors(Base):
    def mirror_ref(self, dataset: str):  # type: ignore[no-untyped-def]
        return self.db.collection("mirrors").document(dataset)

    def mirror_pending(self, dataset: str, run_ids: Iterable[str], error: str) -> None:
        """Record that the dataset's mirror is behind: these runs and its aliases are to be synced again."""
        update: dict[str, Any] = {"dataset": dataset, "pending": True, "error": error[:300], "failed_at": now(),
                                  "attempts": firestore.Increment(1)}
        runs = [r for r in run_ids if r]
        if runs:
            update["runs"] = firestore.ArrayUnion(runs)
        self.mirror_ref(dataset).set(update, merge=True)

    def mirror_synced(self, dataset: str, run_ids: Iterable[str]) -> None:
        """The runs (and the aliases) are mirrored: they leave the pending list; the mirror is caught up when
        nothing else was added meanwhile (one transaction)."""
        done = set(run_ids)
        ref = self.mirror_ref(dataset)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> None:
            snap = ref.get(transaction=tx)
            if not snap.exists:
                return
            left = [r for r in (snap.to_dict().get("runs") or []) if r not in done]
            tx.update(ref, {"runs": left, "pending": bool(left), "synced_at": now(), "attempts": 0})

        self._run(apply)

    def pending_mirrors(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.db.collection("mirrors").where(filter=firestore.FieldFilter(
            "pending", "==", True)).stream()]

    def get_mirror(self, dataset: str) -> dict[str, Any] | None:
        snap = self.mirror_ref(dataset).get()
        return snap.to_dict() if snap.exists else None
