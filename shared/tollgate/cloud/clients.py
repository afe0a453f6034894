"""Lazily created Google clients and thin helpers around storage, Pub/Sub and Cloud Run."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from pathlib import Path
from typing import IO, Any

import orjson

from tollgate.errors import NotFound
from tollgate.settings import Settings

_READ_CHUNK = 16 * 2**20


class Cloud:
    """Every cloud handle a deployable needs, created on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- clients ---------------------------------------------------------------------------
    @functools.cached_property
    def storage(self):  # type: ignore[no-untyped-def]
        from google.cloud import storage

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            return storage.Client(project=self.settings.project, credentials=AnonymousCredentials())
        return storage.Client(project=self.settings.project)

    @functools.cached_property
    def firestore(self):  # type: ignore[no-untyped-def]
        from google.cloud import firestore

        return firestore.Client(project=self.settings.project)

    @functools.cached_property
    def publisher(self):  # type: ignore[no-untyped-def]
        from google.cloud import pubsub_v1

        return pubsub_v1.PublisherClient()

    @functools.cached_property
    def warehouse(self):  # type: ignore[no-untyped-def]
        """The prediction log and labels in SQL: BigQuery, or DuckDB over the bucket's Parquet locally."""
        from tollgate.warehouse import engines

        if self.settings.warehouse == "duckdb":
            return engines.DuckDB.on_bucket(self.settings.bucket, os.environ.get("STORAGE_EMULATOR_HOST"))
        return engines.BigQuery(self.settings.project, self.settings.bigquery_dataset, bucket=self.settings.bucket,
                                curated_dataset=self.settings.bigquery_curated_dataset)

    def _run_client_kwargs(self) -> dict[str, Any]:
        if not self.settings.cloud_run_endpoint:
            return {}
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return {"credentials": AnonymousCredentials(), "transport": "rest",
                "client_options": ClientOptions(api_endpoint=self.settings.cloud_run_endpoint)}

    @functools.cached_property
    def jobs(self):  # type: ignore[no-untyped-def]
        from google.cloud import run_v2

        return run_v2.JobsClient(**self._run_client_kwargs())

    @functools.cached_property
    def executions(self):  # type: ignore[no-untyped-def]
        from google.cloud import run_v2

        return run_v2.ExecutionsClient(**self._run_client_kwargs())

    @functools.cached_property
    def services(self):  # type: ignore[no-untyped-def]
        from google.cloud import run_v2

        return run_v2.ServicesClient(**self._run_client_kwargs())

    @functools.cached_property
    def revisions(self):  # type: ignore[no-untyped-def]
        from google.cloud import run_v2

        return run_v2.RevisionsClient(**self._run_client_kwargs())

    # -- names -----------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return f"projects/{self.settings.project}/locations/{self.settings.region}"

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.settings.project}/topics/{topic}"

    # -- storage ---------------------------------------------------------------------------
    @property
    def bucket(self):  # type: ignore[no-untyped-def]
        return self.storage.bucket(self.settings.bucket)

    def write_once(self, name: str, data: bytes, content_type: str = "application/octet-stream",
                   metadata: dict[str, str] | None = None) -> int:
        """Create an object only if it does not exist (412 otherwise); returns its generation. ``metadata``: the
        object's custom metadata (who wrote it).

        An existing object with the same bytes is accepted (a retried step writes the same
        content-addressed artifact); different bytes raise ``FileExistsError``.
        """
        from google.api_core.exceptions import PreconditionFailed

        blob = self.bucket.blob(name)
        if metadata:
            blob.metadata = metadata
        try:
            blob.upload_from_string(data, content_type=content_type, if_generation_match=0)
            return int(blob.generation)
        except PreconditionFailed:
            existing = self.bucket.get_blob(name)
            if existing is not None and existing.download_as_bytes() == data:
                return int(existing.generation)
            raise FileExistsError(f"gs://{self.settings.bucket}/{name} already exists with other content")

    def write_json_once(self, name: str, payload: Any) -> int:
        return self.write_once(name, orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
                                                  default=str), "application/json")

    def write_file_once(self, name: str, source: Path, content_type: str = "application/octet-stream") -> int:
        """``write_once`` for a local file, streamed; an existing object with the same MD5 is accepted."""
        from google.api_core.exceptions import PreconditionFailed

        blob = self.bucket.blob(name)
        try:
            blob.upload_from_filename(str(source), content_type=content_type, if_generation_match=0)
            return int(blob.generation)
        except PreconditionFailed:
            existing = self.bucket.get_blob(name)
            digest = hashlib.md5(usedforsecurity=False)
            with source.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            if existing is not None and existing.md5_hash == base64.b64encode(digest.digest()).decode():
                return int(existing.generation)
            raise FileExistsError(f"gs://{self.settings.bucket}/{name} already exists with other content")

    def read_bytes(self, name: str, generation: int | None = None) -> bytes:
        """An object's bytes; :class:`tollgate.errors.NotFound` when it (or that generation) does not exist."""
        from google.api_core import exceptions

        try:
            return self.bucket.blob(name, generation=generation).download_as_bytes()
        except exceptions.NotFound:
            raise NotFound(f"gs://{self.settings.bucket}/{name}" + (f"#{generation}" if generation else "")
                           + " does not exist") from None

    def read_json(self, name: str, generation: int | None = None) -> Any:
        """A JSON object, or None when it does not exist."""
        try:
            return orjson.loads(self.read_bytes(name, generation))
        except NotFound:
            return None

    def open_read(self, name: str, generation: int | None = None) -> tuple[IO[bytes], int]:
        """A seekable, streaming reader of one object generation, and its size in bytes."""
        blob = self.bucket.get_blob(name, generation=generation)
        if blob is None:
            raise NotFound(f"gs://{self.settings.bucket}/{name}#{generation} does not exist")
        return blob.open("rb", chunk_size=_READ_CHUNK), int(blob.size)

    def upload_file(self, source: Path, name: str) -> Any:
        blob = self.bucket.blob(name)
        blob.upload_from_filename(str(source))
        return blob

    def list_names(self, prefix: str) -> list[str]:
        return [b.name for b in self.storage.list_blobs(self.settings.bucket, prefix=prefix)]

    def list_specs(self) -> list[str]:
        """The datasets whose spec is in the bucket (``specs/<name>.yaml``, a valid dataset name)."""
        from tollgate.spec import DATASET_NAME

        names = [n.removeprefix("specs/").removesuffix(".yaml") for n in self.list_names("specs/")
                 if n.endswith(".yaml") and n.count("/") == 1]
        return sorted(n for n in names if DATASET_NAME.fullmatch(n))

    # -- pub/sub ---------------------------------------------------------------------------
    def publish(self, topic: str, payload: dict[str, Any], **attributes: str) -> str:
        """Publish JSON and wait for the message id (a step is not done until its event is out). Inside a run's
        span, the message carries its ``traceparent``: the consumer's span becomes its child (tollgate.tracing)."""
        from tollgate import tracing

        future = self.publisher.publish(self.topic_path(topic), orjson.dumps(payload, default=str),
                                        **{k: str(v) for k, v in {**tracing.carrier(), **attributes}.items()})
        return future.result(timeout=60)
