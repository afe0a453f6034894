"""The model registry in Firestore: ``datasets/{dataset}`` (next version number, serving pointers, deployment),
its immutable ``versions/{version}`` records and its curated ``batches/{sha256}``."""

from __future__ import annotations

from typing import Any, Callable

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore

from tollgate.cloud.state.base import Base, now


class Registry(Base):
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

    def reserve_version(self, dataset: str, run_id: str, after: int | None = None) -> int:
        """The version number of the run's challenger, allocated once per run in one transaction before any
        artifact is written: concurrent trainings get distinct, consecutive numbers and a retried trainer
        gets its run's number again. A run that never registers (it failed for good) leaves its number
        unused. ``after``: the numbers up to it are taken in the bucket by artifacts this registry does not know
        (a local cloud whose Firestore started over): the run gets a number past them instead."""
        ds_ref, run_ref = self.dataset_ref(dataset), self.run_ref(run_id)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> int:
            run = run_ref.get(transaction=tx)
            ds = ds_ref.get(transaction=tx)
            reserved = (run.to_dict() or {}).get("reserved_version") if run.exists else None
            if reserved and (after is None or int(reserved) > after):
                return int(reserved)
            version = int((ds.to_dict() or {}).get("next_version", 1)) if ds.exists else 1
            version = max(version, (after or 0) + 1)
            tx.set(ds_ref, {"next_version": version + 1, "updated_at": now()}, merge=True)
            if run.exists:
                tx.update(run_ref, {"reserved_version": version, "updated_at": now()})
            return version

        return self._run(apply)

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

    def tag_version(self, dataset: str, version: int, tags: dict[str, str | None]) -> dict[str, Any]:
        """Set (or, with None, remove) a registered version's tags: labels people attach (``reviewed-by``,
        ``ticket``), never facts of the model, which stay immutable. Returns the version's tags."""
        ref = self.version_ref(dataset, version)
        if not ref.get().exists:
            raise LookupError(f"{dataset} has no version {version}")
        ref.update({f"tags.`{k}`": (firestore.DELETE_FIELD if v is None else v) for k, v in tags.items()})
        return (ref.get().to_dict() or {}).get("tags") or {}

    def set_alias(self, dataset: str, alias: str, version: int | None) -> dict[str, int]:
        """Point a name people choose (``staging``, ``audit-2026``) at a registered version, or remove it (None);
        the dataset's aliases."""
        ref = self.dataset_ref(dataset)
        if version is not None and not self.version_ref(dataset, version).get().exists:
            raise LookupError(f"{dataset} has no version {version}")
        ref.set({"aliases": {alias: firestore.DELETE_FIELD if version is None else int(version)}}, merge=True)
        return (ref.get().to_dict() or {}).get("aliases") or {}

    def add_batch(self, dataset: str, run_id: str, curated: dict[str, Any]) -> None:
        """Register a curated batch for training windows (content-addressed: once per content)."""
        ref = self.dataset_ref(dataset).collection("batches").document(curated["sha256"])
        try:
            ref.create({**curated, "run_id": run_id, "added_at": now()})
        except AlreadyExists:
            pass

    def get_batch(self, dataset: str, sha256: str) -> dict[str, Any] | None:
        snap = self.dataset_ref(dataset).collection("batches").document(sha256).get()
        return snap.to_dict() if snap.exists else None

    def list_batches(self, dataset: str) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.dataset_ref(dataset).collection("batches").order_by("added_at").stream()]
