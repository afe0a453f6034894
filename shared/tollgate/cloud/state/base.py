"""What every part of the Firestore adapter shares: the client, transactions and document references."""

from __future__ import annotations

import datetime as dt

from google.cloud import firestore


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def _transaction(self) -> firestore.Transaction:
        """Contended transactions retry with backoff; ten attempts ride out a busy emulator too."""
        return self.db.transaction(max_attempts=10)

    def run_ref(self, run_id: str):  # type: ignore[no-untyped-def]
        return self.db.collection("runs").document(run_id)

    def dataset_ref(self, dataset: str):  # type: ignore[no-untyped-def]
        return self.db.collection("datasets").document(dataset)

    def version_ref(self, dataset: str, version: int):  # type: ignore[no-untyped-def]
        return self.dataset_ref(dataset).collection("versions").document(f"{version:06d}")

    def review_ref(self, run_id: str):  # type: ignore[no-untyped-def]
        return self.db.collection("reviews").document(run_id)

    def monitoring_ref(self, dataset: str):  # type: ignore[no-untyped-def]
        return self.db.collection("monitoring").document(dataset)
