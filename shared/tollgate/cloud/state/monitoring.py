"""Monitoring in Firestore: each tick's windows (``monitoring/{dataset}/windows/{end}``), cool-downs
(``monitoring/{dataset}``) and alerts (``alerts/{alert_id}``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

from tollgate import decisions
from tollgate.cloud.state.base import Base, now


class Monitoring(Base):
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
            if not decisions.cooldown_open(last, at, cooldown):
                return False
            tx.set(ref, {"cooldowns": {key: at}}, merge=True)
            return True
        return self._run(apply)

    def label_file_seen(self, dataset: str, key: str) -> bool:
        """Whether a labels file (``key``: its name and generation) was published already."""
        return self.monitoring_ref(dataset).collection("label_files").document(key).get().exists

    def record_label_file(self, dataset: str, key: str, info: dict[str, Any]) -> None:
        """A labels file published (or skipped, with its ``error``): never read again."""
        self.monitoring_ref(dataset).collection("label_files").document(key).set({**info, "at": now()})

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
