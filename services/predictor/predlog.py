"""The prediction log: every prediction, published to the `predictions` topic in batches, off the request path.

A request only appends to a bounded in-memory queue (never blocks, never fails); one thread
turns what is queued into messages of up to ``max_rows`` predictions, published with a timeout
and bounded outstanding bytes. When the queue is full or Pub/Sub fails, the predictions are
counted as lost (``tollgate_prediction_log_lost_total``), never hidden and never in the way.

Message: JSON ``{"schema": "tollgate.predictions/v2", "dataset", "model_version",
"records": [{"request_id", "row", "time", "model_version", "status", "features", "prediction",
["probabilities"], "latency_ms"}]}``, attributes ``dataset``, ``model_version`` and ``kind``
(``predictions``): one row of the warehouse's ``predictions`` table (tollgate.warehouse.tables), so
``features`` and ``probabilities`` are JSON text and ``prediction`` the value's text. A request
answered with a 4xx/5xx is one record with its ``status`` and no features (the monitor's error
rate). Ground truth sent to ``POST /feedback`` travels the same way as ``{"schema":
"tollgate.labels/v2", "dataset", "records": [{"request_id", "row", "label", "time", "seq"}]}``
(``kind`` ``labels``).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from typing import Any, Callable

import orjson

from tollgate import log
from tollgate.prepared import Columns, Outputs
from tollgate.warehouse.tables import LABELS_SCHEMA, PREDICTIONS_SCHEMA, json_text, text

SCHEMA = PREDICTIONS_SCHEMA


class PredictionLog:
    def __init__(self, publisher: Callable[[], Callable[[bytes, dict[str, str]], Any]] | None, dataset: str,
                 version: int,
                 features: tuple[tuple[str, ...], tuple[str, ...]], *, max_rows: int = 500,
                 max_delay: float = 1.0, max_queued_rows: int = 50_000,
                 on_published: Callable[[int], None] = lambda n: None,
                 on_lost: Callable[[int, str], None] = lambda n, why: None) -> None:
        self._publisher = publisher   # built by the log's thread: the Pub/Sub client never delays readiness
        self._publish: Callable[[bytes, dict[str, str]], Any] | None = None
        self.dataset, self.version = dataset, version
        self.numeric, self.categorical = features
        self.max_rows, self.max_delay, self.max_queued_rows = max_rows, max_delay, max_queued_rows
        self._on_published, self._on_lost = on_published, on_lost
        # (kind, request id, time, payload, latency, status): kind "prediction" (payload: columns and
        # outputs), "error" (no payload), "labels" (payload: [(request id, row, label)])
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="prediction-log", daemon=True)
        if publisher is not None:
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._publisher is not None

    def record(self, request_id: str, at: float, columns: Columns, outputs: Outputs, latency: float) -> None:
        """Queue one request's predictions; O(1), never blocks."""
        self._put(("prediction", request_id, at, (columns, outputs), latency, 200), len(columns))

    def record_error(self, request_id: str, at: float, status: int, latency: float) -> None:
        """Queue a prediction request that was answered with an error (the monitor's error rate)."""
        self._put(("error", request_id, at, None, latency, status), 1)

    def record_labels(self, at: float, labels: list[tuple[str, int, Any]]) -> bool:
        """Queue ground truth for logged predictions; False when it could not be queued."""
        return self._put(("labels", None, at, labels, 0.0, 0), len(labels))

    def _put(self, item: tuple[Any, ...], n: int) -> bool:
        if self._publisher is None:
            return False
        with self._cond:
            if self._closing or self._queued_rows + n > self.max_queued_rows:
                self._on_lost(n, "queue full" if not self._closing else "shutting down")
                return False
            self._queue.append(item)
            self._queued_rows += n
            if self._queued_rows >= self.max_rows:
                self._cond.notify()
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Publish what is queued (bounded by ``timeout``); on SIGTERM, after the last request."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the publishing thread ---------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._publish = self._publisher()   # type: ignore[misc]
        except Exception as exc:   # no client, no log: every prediction is counted as lost
            log.warning(f"prediction log: no Pub/Sub publisher: {type(exc).__name__}: {exc}"[:300])
        while True:
            with self._cond:
                deadline = time.monotonic() + self.max_delay
                while not self._closing and self._queued_rows < self.max_rows:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch = list(self._queue)
                self._queue.clear()
                self._queued_rows = 0
                closing = self._closing
            if batch:
                try:
                    self._send(batch)
                except Exception as exc:   # never let one bad batch end the thread (and with it the log)
                    self._lost(sum(_rows(item) for item in batch), exc)
            if closing:
                return

    def _send(self, batch: list[tuple[Any, ...]]) -> None:
        records: list[dict[str, Any]] = []
        labels: list[dict[str, Any]] = []
        for item in batch:
            try:   # one item that cannot be turned into records is dropped and counted, never the batch
                self._records(item, records, labels)
            except Exception as exc:
                self._on_lost(_rows(item), "malformed")
                log.warning(f"prediction log: a malformed item dropped: {type(exc).__name__}: {exc}"[:300])
        self._publish_chunks(SCHEMA, "predictions", records)
        self._publish_chunks(LABELS_SCHEMA, "labels", labels)

    def _records(self, item: tuple[Any, ...], records: list[dict[str, Any]], labels: list[dict[str, Any]]) -> None:
        kind, request_id, at, payload, latency, status = item
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"
        if kind == "labels":
            labels.extend([{"request_id": rid, "row": row, "label": text(label), "time": when, "seq": i}
                           for i, (rid, row, label) in enumerate(payload)])
            return
        if kind == "error":
            records.append({"request_id": request_id, "row": 0, "time": when, "model_version": self.version,
                            "status": status, "latency_ms": round(latency * 1000, 3)})
            return
        columns, outputs = payload
        probabilities = outputs.probabilities
        built = []
        for i in range(len(columns)):
            features = {name: _number(columns.numeric[i, j]) for j, name in enumerate(self.numeric)}
            features.update({name: columns.categorical[j][i] for j, name in enumerate(self.categorical)})
            features.update({name: values[i] for name, values in columns.ids.items()})   # identifiers, kept
            record = {"request_id": request_id, "row": i, "time": when, "model_version": self.version,
                      "status": status, "features": json_text(features),
                      "prediction": text(outputs.predictions[i]),
                      "latency_ms": round(latency * 1000, 3)}
            if probabilities is not None:
                record["probabilities"] = json_text(probabilities[i])
            built.append(record)
        orjson.dumps(built, option=orjson.OPT_SERIALIZE_NUMPY)   # what cannot be serialised fails here, alone
        records.extend(built)

    def _publish_chunks(self, schema: str, kind: str, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), self.max_rows):
            chunk = records[start:start + self.max_rows]
            if self._publish is None:
                self._on_lost(len(chunk), "no publisher")
                continue
            message = orjson.dumps({"schema": schema, "dataset": self.dataset, "model_version": self.version,
                                    "records": chunk}, option=orjson.OPT_SERIALIZE_NUMPY)
            try:
                future = self._publish(message, {"dataset": self.dataset, "model_version": str(self.version),
                                                 "kind": kind})
            except Exception as exc:   # flow control full, client broken: count, never raise
                self._lost(len(chunk), exc)
                continue
            if hasattr(future, "add_done_callback"):
                future.add_done_callback(lambda f, n=len(chunk): self._done(f, n))
            else:
                self._on_published(len(chunk))

    def _done(self, future: Any, n: int) -> None:
        try:
            future.result(timeout=0)
        except Exception as exc:
            self._lost(n, exc)
        else:
            self._on_published(n)

    def _lost(self, n: int, exc: BaseException) -> None:
        self._on_lost(n, type(exc).__name__)
        log.warning(f"prediction log: {n} predictions not published: {type(exc).__name__}: {exc}"[:300])


def _rows(item: tuple[Any, ...]) -> int:
    """How many records a queued item stands for (what is counted as lost if it is dropped)."""
    kind, payload = item[0], item[3]
    try:
        return len(payload) if kind == "labels" else 1 if kind == "error" else len(payload[0])
    except Exception:
        return 1


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def pubsub_publisher(project: str, topic: str, timeout: float = 30.0,
                     max_outstanding_bytes: int = 20 * 1024 * 1024) -> Callable[[bytes, dict[str, str]], Any]:
    """publish(data, attributes) → future on the `predictions` topic: bounded in time and in memory.
    Called in the log's own thread (importing and building the client takes ~0.5 s)."""
    from google.api_core import retry as retries
    from google.cloud import pubsub_v1
    from google.cloud.pubsub_v1 import types

    flow = types.PublishFlowControl(byte_limit=max_outstanding_bytes,
                                    limit_exceeded_behavior=types.LimitExceededBehavior.ERROR)
    client = pubsub_v1.PublisherClient(
        batch_settings=types.BatchSettings(max_messages=10, max_latency=0.05),
        publisher_options=types.PublisherOptions(flow_control=flow))
    path = client.topic_path(project, topic)
    retry = retries.Retry(initial=0.2, maximum=5.0, timeout=timeout)

    def publish(data: bytes, attributes: dict[str, str]) -> Any:
        return client.publish(path, data, retry=retry, timeout=timeout, **attributes)
    return publish
