"""What every part of the Firestore adapter shares: the client, transactions and document references."""

from __future__ import annotations

import datetime as dt
from typing import Callable, TypeVar

from google.api_core import exceptions, retry
from google.cloud import firestore

T = TypeVar("T")


def contended(exc: Exception) -> bool:
    """The client library's answer once every attempt of a transaction was aborted by contention."""
    return isinstance(exc, ValueError) and isinstance(exc.__cause__, exceptions.Aborted)


# The client library retries an aborted transaction at once, without a pause (it keeps the transaction's place in
# line on Firestore); the emulator instead lets the same writers collide again until the attempts run out. Between
# rounds of attempts the writers back off with jitter, so a few contending on one document all commit.
CONTENTION = retry.Retry(predicate=contended, initial=0.05, maximum=2.0, multiplier=2.0, timeout=120.0)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base:
    def __init__(self, db: firestore.Client) -> None:
        self.db = db

    def _run(self, apply: Callable[[firestore.Transaction], T]) -> T:
        """Run a ``@firestore.transactional`` function, rounds of three attempts apart with jittered backoff."""
        return CONTENTION(lambda: apply(self.db.transaction(max_attempts=3)))()

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
