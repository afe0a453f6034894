"""The monitor's questions to the warehouse, each one query, and ``observe``, which asks them for one
window. Every query reads only the partitions of its publish-time interval and returns what is
bounded: aggregates per version, a seeded sample of at most ``monitoring.MAX_SAMPLE`` rows per
version (all versions in one scan), and the labelled pairs of the label window (no more than the labels that arrived).

Bounds of each interval: records whose ``time`` is in ``[start, end)``, from messages published in
``[start - SLACK, end + SLACK)`` (a record is published within seconds of its time; the slack covers
clock skew and retries); labels published in the label window ``[label_start, end + SLACK)``.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tollgate import monitoring
from tollgate.spec import ID_COLUMN, DatasetSpec
from tollgate.warehouse.engines import Warehouse
from tollgate.warehouse.sql import Query

SLACK = dt.timedelta(minutes=5)

TRAFFIC = Query("traffic", """
SELECT model_version,
  COUNTIF(`row` = 0) AS requests,
  COUNTIF(status < 400) AS ok_rows,
  COUNTIF(`row` = 0 AND status >= 500) AS errors,
  COUNTIF(`row` = 0 AND status >= 400 AND status < 500) AS client_errors,
  APPROX_QUANTILES(IF(`row` = 0, latency_ms, NULL), 100) AS latency_quantiles
FROM prediction_rows
WHERE time >= @start AND time < @end
GROUP BY model_version
ORDER BY model_version
""")

# A seeded sample of each version: the rows whose hash falls in the lowest per-million share of its range set
# for that version (a Bernoulli sample the engine filters while it scans, so only those rows' features are
# kept), then each version's @limit lowest.
_HASH = "FARM_FINGERPRINT(CONCAT(request_id, '#', CAST(`row` AS STRING), '#', CAST(@seed AS STRING)))"


def sample(per_million: dict[int, int]) -> Query:
    """The samples of every version in ``per_million`` (version → share kept per million) in one scan of the
    window. The shares are written into the text as integer literals (ours, from the traffic query)."""
    shares = " ".join(f"WHEN {int(version)} THEN {int(share)}" for version, share in sorted(per_million.items()))
    return Query("sample", f"""
SELECT model_version, features, prediction
FROM prediction_rows
WHERE time >= @start AND time < @end AND status < 400
  AND ABS(MOD({_HASH}, 1000000)) < CASE model_version {shares} ELSE 0 END
QUALIFY ROW_NUMBER() OVER (PARTITION BY model_version ORDER BY {_HASH}) <= @limit
ORDER BY model_version, {_HASH}
""")

# The latest label of each (request id, row) that arrived in the label window: a later file or feedback
# wins, and within one source the later row.
_LATEST_LABELS = """
labels AS (
  SELECT request_id, keys, `row`, label
  FROM label_rows
  WHERE label IS NOT NULL AND {present} IS NOT NULL AND publish_time >= @label_start
  QUALIFY ROW_NUMBER() OVER (PARTITION BY {present}, `row` ORDER BY time DESC, seq DESC, message_id DESC) = 1
)"""

LABELLED = Query("labelled", "WITH " + _LATEST_LABELS.format(present="request_id") + """
SELECT CONCAT(l.request_id, '#', CAST(l.`row` AS STRING)) AS label_key, p.model_version, p.time, p.status,
  p.prediction, l.label
FROM labels AS l
JOIN prediction_rows AS p ON p.request_id = l.request_id AND p.`row` = l.`row`
WHERE p.time >= @label_start AND p.time < @end
""")

LABEL_COUNT = Query("label_count", """
SELECT COUNT(DISTINCT CONCAT(COALESCE(request_id, keys), '#', CAST(`row` AS STRING))) AS labels
FROM label_rows
WHERE label IS NOT NULL AND (request_id IS NOT NULL OR keys IS NOT NULL) AND publish_time >= @label_start
""")



def labelled_by_keys(columns: tuple[str, ...]) -> Query:
    """Labels keyed by the spec's ``monitoring.id_columns`` (JSON ``keys``) joined to the predictions whose
    features have those values. Column names are checked (spec.py allows only identifiers there)."""
    for name in columns:
        if not ID_COLUMN.fullmatch(name):
            raise ValueError(f"id column {name!r} is not an identifier")
    on = " AND ".join(f"JSON_VALUE(p.features, '$.{name}') = JSON_VALUE(l.keys, '$.{name}')" for name in columns)
    return Query("labelled_by_keys", "WITH " + _LATEST_LABELS.format(present="keys") + f"""
SELECT CONCAT(l.keys, '#', CAST(l.`row` AS STRING)) AS label_key, p.model_version, p.time, p.status,
  p.prediction, l.label
FROM labels AS l
JOIN prediction_rows AS p ON {on}
WHERE p.time >= @label_start AND p.time < @end
""")


def sample_rate(rows: int, limit: int = monitoring.MAX_SAMPLE) -> int:
    """Per million, the share of ``rows`` that keeps about 1.25 × ``limit`` of them (all when there are few):
    enough that fewer than ``limit`` survive only with negligible probability."""
    return 1_000_000 if rows <= limit else min(1_000_000, math.ceil(1.25 * limit * 1_000_000 / rows))


def values(array: pa.ChunkedArray | pa.Array, spec: DatasetSpec) -> np.ndarray:
    """Predictions or labels (text in the tables) as the task's values: floats or class names."""
    if spec.task == "regression":
        return pc.cast(array, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    return np.asarray(array.to_pylist(), dtype=object).astype(str)


def _sample_frame(table: pa.Table, spec: DatasetSpec) -> pd.DataFrame:
    """The sampled rows as the spec's feature columns and the prediction under the target's name."""
    rows = [orjson.loads(f) if f else {} for f in table.column("features").to_pylist()]
    frame = pd.DataFrame.from_records(rows, columns=list(spec.features))
    for name in spec.feature_lists.numeric:
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
    frame[spec.target] = values(table.column("prediction"), spec)
    return frame


def observe(warehouse: Warehouse, spec: DatasetSpec, start: dt.datetime, end: dt.datetime,
            label_start: dt.datetime, seed: int = 0) -> monitoring.Observed:
    """What the warehouse knows of ``spec``'s dataset: traffic in ``[start, end)`` and labelled
    predictions in ``[label_start, end)``."""
    common: dict[str, Any] = {"dataset": spec.name, "end": end, "until": end + SLACK}
    traffic = {}
    for row in warehouse.query(TRAFFIC, since=start - SLACK, start=start, **common).to_pylist():
        quantiles = row.pop("latency_quantiles") or []
        latency = {f"p{q}": (float(quantiles[q]) if len(quantiles) > q and quantiles[q] is not None else None)
                   for q in (50, 95, 99)}
        traffic[int(row.pop("model_version"))] = {**{k: int(v) for k, v in row.items()}, "latency_ms": latency}
    shares = {version: sample_rate(t["ok_rows"]) for version, t in traffic.items() if t["ok_rows"]}
    sampled = warehouse.query(sample(shares), since=start - SLACK, start=start, seed=seed,
                              limit=monitoring.MAX_SAMPLE, **common) if shares else None
    samples = {version: _sample_frame(sampled.filter(pc.equal(sampled.column("model_version"), version)), spec)
               for version in shares}
    labels_window = {"since": label_start - SLACK, "label_start": label_start, **common}
    pairs = [warehouse.query(LABELLED, **labels_window)]
    if spec.monitoring.id_columns:
        pairs.append(warehouse.query(labelled_by_keys(spec.monitoring.id_columns), **labels_window))
    joined = pa.concat_tables(pairs)
    labels = int(warehouse.query(LABEL_COUNT, **labels_window).column("labels")[0].as_py() or 0)
    matched = len(pc.unique(joined.column("label_key")))
    ok = joined.filter(pc.less(joined.column("status"), 400))
    labelled = pd.DataFrame({"model_version": ok.column("model_version").to_numpy(zero_copy_only=False),
                             "time": ok.column("time").to_pandas(),
                             "prediction": values(ok.column("prediction"), spec),
                             "label": values(ok.column("label"), spec)})
    return monitoring.Observed(traffic=traffic, samples=samples, labelled=labelled, unmatched_labels=labels - matched)
