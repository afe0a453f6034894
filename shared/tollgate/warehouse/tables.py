"""The warehouse's two tables: the prediction log and the labels, and how a Pub/Sub message becomes rows.

On Google Cloud, BigQuery subscriptions on the `predictions` topic write each message as one row of
table ``predictions`` or ``labels`` (by the message's ``kind`` attribute): the message's fields are
columns and ``records`` a repeated record (``RECORD_FIELDS``), with the subscription's metadata
(``message_id``, ``publish_time``). Locally, the monitor's drain writes the same records *flattened*,
one Parquet row per record with its message's id and publish time (``ROW_SCHEMAS``), under
``warehouse/<table>/<dataset>/date=YYYY-MM-DD/hour=HH/<delivery>.parquet`` by publish time: one file per pulled
batch, never rewritten. The SQL reads both through the relations ``prediction_rows`` and ``label_rows``
(sql.py), which flatten and de-duplicate each world's layout into the same rows.

Every value a record carries is a number, a timestamp or text: features and probabilities are JSON text,
predictions and labels are the value's text (``text``), so that a BigQuery subscription writes them as
declared columns, whatever a dataset's features are.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import orjson
import pyarrow as pa

from tollgate.spec import SpecError, check_dataset_name

ROOT = "warehouse/"            # the local tables' folder in the bucket
PREDICTIONS, LABELS = "predictions", "labels"
TABLES = (PREDICTIONS, LABELS)
PREDICTIONS_SCHEMA = "tollgate.predictions/v2"
LABELS_SCHEMA = "tollgate.labels/v2"

UTC_US = pa.timestamp("us", tz="UTC")

# The fields of one record of each table, in BigQuery's terms (name, type); terraform declares the same.
RECORD_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    PREDICTIONS: (("request_id", "STRING"), ("row", "INT64"), ("time", "TIMESTAMP"), ("model_version", "INT64"),
                  ("status", "INT64"), ("latency_ms", "FLOAT64"), ("prediction", "STRING"),
                  ("probabilities", "STRING"), ("features", "STRING")),
    LABELS: (("request_id", "STRING"), ("row", "INT64"), ("keys", "STRING"), ("label", "STRING"),
             ("time", "TIMESTAMP"), ("seq", "INT64")),
}
# The message's own fields (columns of the BigQuery table beside `records` and the metadata).
MESSAGE_FIELDS = (("schema", "STRING"), ("dataset", "STRING"), ("model_version", "INT64"))

_ARROW = {"STRING": pa.string(), "INT64": pa.int64(), "FLOAT64": pa.float64(), "TIMESTAMP": UTC_US}
# The local rows: the record's fields (`model_version` is the record's) after the message's identity.
ROW_SCHEMAS: dict[str, pa.Schema] = {
    table: pa.schema([("message_id", pa.string()), ("delivery", pa.string()), ("publish_time", UTC_US),
                      ("dataset", pa.string())] + [(name, _ARROW[kind]) for name, kind in fields])
    for table, fields in RECORD_FIELDS.items()
}


class MalformedMessage(ValueError):
    """A prediction-log message that cannot become rows (acknowledged and counted, never retried)."""


def text(value: Any) -> str | None:
    """A prediction's or label's value as the text the tables keep: floats round-trip exactly (``repr``),
    other values as ``str``; missing values are None. numpy scalars count as their Python values."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def json_text(value: Any) -> str | None:
    """Features or probabilities as JSON text (a v1 message carried them as objects)."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def kind_of(payload: dict[str, Any]) -> str:
    return LABELS if str(payload.get("schema", "")).startswith("tollgate.labels/") else PREDICTIONS


def _time(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc)
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.replace(tzinfo=dt.timezone.utc) if parsed.tzinfo is None else parsed.astimezone(dt.timezone.utc)


def message_rows(payload: Any, message_id: str, publish_time: dt.datetime) -> tuple[str, str, dict[str, list[Any]]]:
    """(table, dataset, columns) of one message's records as local rows, all but ``delivery`` (the file
    they are written to names it); ``MalformedMessage`` when it is not a prediction-log message (v1 and
    v2 are both read)."""
    try:
        # the dataset names a folder of the bucket: only a valid dataset name, never a path
        kind, dataset, records = kind_of(payload), check_dataset_name(payload["dataset"]), payload["records"]
        if not isinstance(records, list):
            raise TypeError("records is not a list")
        columns: dict[str, list[Any]] = {name: [] for name in ROW_SCHEMAS[kind].names if name != "delivery"}
        for seq, r in enumerate(records):
            columns["message_id"].append(message_id)
            columns["publish_time"].append(publish_time)
            columns["dataset"].append(dataset)
            columns["request_id"].append(None if r.get("request_id") is None else str(r["request_id"]))
            columns["row"].append(int(r.get("row") or 0))
            columns["time"].append(_time(r["time"]))
            if kind == LABELS:
                columns["keys"].append(json_text(r.get("keys")))
                columns["label"].append(r["label"] if isinstance(r.get("label"), str) or r.get("label") is None
                                        else text(r["label"]))
                columns["seq"].append(int(r.get("seq", seq)))
            else:
                columns["model_version"].append(int(r["model_version"]))
                columns["status"].append(int(r["status"]))
                columns["latency_ms"].append(float(r["latency_ms"]))
                prediction = r.get("prediction")
                columns["prediction"].append(prediction if isinstance(prediction, str) or prediction is None
                                             else text(prediction))
                columns["probabilities"].append(json_text(r.get("probabilities")))
                columns["features"].append(json_text(r.get("features")))
        return kind, dataset, columns
    except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONEncodeError, SpecError) as exc:
        raise MalformedMessage(f"{type(exc).__name__}: {exc}"[:300]) from exc


def partition(table: str, dataset: str, publish_time: dt.datetime) -> str:
    """The folder of a local partition under ``ROOT``: ``<table>/<dataset>/date=…/hour=…/``."""
    at = publish_time.astimezone(dt.timezone.utc)
    return f"{table}/{dataset}/date={at:%Y-%m-%d}/hour={at:%H}/"


def check_name(table: str, dataset: str) -> None:
    """A table of the log and a dataset name (both become paths and SQL identifiers), or ValueError."""
    if table not in TABLES:
        raise ValueError(f"unknown warehouse table {table!r}: {', '.join(TABLES)}")
    check_dataset_name(dataset)


_PARTITION = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")


def partition_hour(path: str) -> dt.datetime | None:
    """The hour a local partition's file holds (its ``date=…/hour=…/`` folders), or None."""
    found = _PARTITION.search(path)
    if found is None:
        return None
    return dt.datetime.strptime(f"{found.group(1)} {found.group(2)}", "%Y-%m-%d %H").replace(tzinfo=dt.timezone.utc)


def partitions(table: str, dataset: str, since: dt.datetime, until: dt.datetime) -> list[str]:
    """The local partitions that can hold rows published in ``[since, until)``, oldest first."""
    hour = since.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    out = []
    while hour < until:
        out.append(partition(table, dataset, hour))
        hour += dt.timedelta(hours=1)
    return out


class Pull:
    """The rows of one pull from the prediction log, grouped into the files they are written to: one per
    table, dataset and partition, named by its messages (``delivery``), so that the same messages pulled
    again in the same grouping make the same file (stored once), and in another grouping another
    delivery, which the relations skip. Each message is held as Arrow columns from the moment it is read."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str, str], dict[str, Any]] = {}

    def add(self, payload: Any, message_id: str, publish_time: dt.datetime) -> tuple[str, int]:
        """Add one message; (table, records). ``MalformedMessage`` leaves the pull unchanged."""
        table, dataset, columns = message_rows(payload, message_id, publish_time)
        schema = ROW_SCHEMAS[table]
        try:
            batch = pa.RecordBatch.from_pydict(columns, schema=pa.schema([f for f in schema if f.name != "delivery"]))
        except (pa.ArrowException, OverflowError) as exc:
            raise MalformedMessage(f"{type(exc).__name__}: {exc}"[:300]) from exc
        group = self._groups.setdefault((table, dataset, partition(table, dataset, publish_time)),
                                        {"ids": [], "batches": []})
        group["ids"].append(message_id)
        group["batches"].append(batch)
        return table, batch.num_rows

    def files(self) -> list[tuple[str, str, bytes, int]]:
        """(object name under ``ROOT``, table, Parquet bytes, rows) of each file of the pull."""
        import hashlib
        import io

        import pyarrow.parquet as pq

        out = []
        for (table, _, folder), group in sorted(self._groups.items()):
            delivery = hashlib.sha256("\n".join(sorted(group["ids"])).encode()).hexdigest()[:24]
            rows = pa.Table.from_batches(group["batches"])
            rows = rows.append_column("delivery", pa.array([delivery] * rows.num_rows, pa.string()))
            buffer = io.BytesIO()
            pq.write_table(rows.select(ROW_SCHEMAS[table].names), buffer, compression="zstd")
            out.append((f"{folder}{delivery}.parquet", table, buffer.getvalue(), rows.num_rows))
        return out
