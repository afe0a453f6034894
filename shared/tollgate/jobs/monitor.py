"""Job `monitor`: labels and the prediction log into the warehouse, windows of live evidence, alerts,
retraining requests and canary decisions. Runs on each `monitor-tick` (Cloud Scheduler on GCP, the
local cloud's scheduler locally) and on demand (`tollgate monitor run`).

One tick:

1. **Label files** dropped under ``labels/<dataset>/`` (CSV or Parquet, keyed by ``request_id`` and
   ``row``, or by the spec's ``monitoring.id_columns``; the label in the target's column or ``label``)
   are read in chunks and published once each (name and generation are recorded in Firestore) as label
   records on the `predictions` topic, where ``POST /feedback`` sends its labels too.
2. **Drain** (the local cloud; on Google Cloud, BigQuery subscriptions write the tables): the
   `predictions-monitor` pull subscription into the warehouse's Parquet partitions, one file per
   table, dataset and partition of each pull, acknowledged once written. Memory is bounded by one pull;
   stored files are never read back: a redelivered message is written again and counted once by the
   queries (tollgate.warehouse).
3. Per dataset that serves: the **window** (``monitoring.window_minutes``) of logged predictions and
   the labelled predictions of the last ``label_window_hours``, observed in SQL
   (tollgate.warehouse.queries) and judged per version (monitoring.py; a sample of each version's rows is
   explained by the version's model for attribution drift), stored in Firestore
   (``monitoring/<dataset>/windows``) and drawn in ``reports/monitoring/<dataset>/latest.html``.
4. **Alerts** (SLO breach, severe drift, attribution drift, decay) go to Firestore, the `alerts` topic and the review
   webhook, at most once per version and kind per ``alert_cooldown_minutes``; decay and severe drift
   of the champion also request a **retraining** run over the latest curated batch, at most
   once per ``retrain_cooldown_hours``.
5. A running **canary** is promoted or rolled back on the window's evidence, through the same code
   path as `tollgate canary promote|abort` (a ledger entry whose actor is ``monitor``).
6. **Retention**: a dataset with ``monitoring.retention_days`` has its predictions and labels older than
   that deleted (BigQuery: a DML delete filtered on the partitioning column; locally: the hours' files).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Iterator

import orjson
import pandas as pd

from tollgate import artifacts, events, explain, lifecycle, log, monitoring, outbox, promotion, serving
from tollgate import spec as specs
from tollgate.cloud import Cloud
from tollgate.cloud import state as st
from tollgate.errors import NotFound
from tollgate.events import envelope
from tollgate.jobs.common import load_model
from tollgate.jsonable import plain
from tollgate.warehouse import queries, tables

SUBSCRIPTION = "predictions-monitor"
ACTOR = "monitor"
MAX_PULL = 1_000              # messages per pull: what one drain step holds in memory
LABEL_CHUNK = 50_000          # rows of a labels file read at once
LABELS_PER_MESSAGE = 500      # label records per message (as the predictor sends them)
LABEL_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def drain(cloud: Cloud, max_messages: int = 1_000_000, max_pull: int = MAX_PULL) -> dict[str, int]:
    """Store what the prediction log published since the last tick; ack only what is stored."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(cloud.settings.project, SUBSCRIPTION)
    counts = {"messages": 0, "files": 0, tables.PREDICTIONS: 0, tables.LABELS: 0, "malformed": 0}
    try:
        while counts["messages"] < max_messages:
            received = subscriber.pull(subscription=path, max_messages=max_pull, timeout=30).received_messages
            if not received:
                break
            pull = tables.Pull()
            for m in received:
                counts["messages"] += 1
                try:
                    pull.add(orjson.loads(m.message.data), m.message.message_id, m.message.publish_time)
                except (orjson.JSONDecodeError, tables.MalformedMessage) as exc:
                    counts["malformed"] += 1   # acknowledged: redelivery would not make it readable
                    log.warning("malformed prediction-log message skipped", message_id=m.message.message_id,
                                error=f"{type(exc).__name__}: {exc}"[:300])
            for name, table, data, rows in pull.files():
                try:
                    cloud.write_once(f"{tables.ROOT}{name}", data)
                except FileExistsError:   # named by its messages: those messages are stored already (written
                    pass                  # by another library version, byte for byte different)
                counts["files"] += 1
                counts[table] += rows
            subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in received])
    finally:
        subscriber.close()
    return counts


def _chunks(cloud: Cloud, blob: Any) -> Iterator[pd.DataFrame]:
    """A labels file, ``LABEL_CHUNK`` rows at a time, streamed from the bucket."""
    reader, _ = cloud.open_read(blob.name, blob.generation)
    with reader:
        if blob.name.endswith(".parquet"):
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(reader).iter_batches(batch_size=LABEL_CHUNK):
                yield batch.to_pandas()
        else:
            yield from pd.read_csv(reader, chunksize=LABEL_CHUNK, dtype={"request_id": str},
                                   compression="gzip" if blob.name.endswith(".gz") else None)


def label_records(chunk: pd.DataFrame, spec: specs.DatasetSpec, at: str, first: int) -> list[dict[str, Any]]:
    """A chunk of a labels file as label records: keyed by request id and row, or by the id columns;
    rows without a label are left out. Values are written as the predictor logs them (numbers as
    floats, categories as text), so that the id columns match its features exactly."""
    label = chunk["label"] if "label" in chunk else chunk.get(spec.target)
    if label is None:
        raise ValueError(f"no label column: name it {spec.target!r} (the target) or 'label'")
    if "label" in chunk and spec.target in chunk:
        label = chunk["label"].combine_first(chunk[spec.target])
    ids = spec.monitoring.id_columns
    by_request = "request_id" in chunk
    if not by_request and not (ids and all(c in chunk for c in ids)):
        raise ValueError("neither a request_id column nor the spec's monitoring.id_columns "
                         f"({', '.join(ids) or 'none declared'})")
    rows = (pd.to_numeric(chunk["row"], errors="coerce").fillna(0).astype("int64").tolist() if "row" in chunk
            else [0] * len(chunk))
    numeric = set(spec.feature_lists.numeric)
    if by_request:
        keys = [{"request_id": str(r)} for r in chunk["request_id"].tolist()]
    else:
        values = {c: [None if pd.isna(v) else float(v) if c in numeric else str(v) for v in chunk[c].tolist()]
                  for c in ids}
        keys = [{"keys": orjson.dumps({c: values[c][i] for c in ids}).decode()} for i in range(len(chunk))]
    out = []
    for i, value in enumerate(label.tolist()):
        value = tables.text(float(value) if spec.task == "regression" and value is not None else value)
        if value is not None:
            out.append({"row": rows[i], "label": value, "time": at, "seq": first + i, **keys[i]})
    return out


def ingest_label_files(cloud: Cloud, state: st.State, spec: specs.DatasetSpec, since: dt.datetime) -> dict[str, int]:
    """Publish the label records of each labels file of ``spec``'s dataset not published yet (written
    since ``since``); a broken file is recorded with its reason and skipped, never fatal for the tick. When
    publishing fails, the tick fails and the next one publishes the file again (a later copy of a label
    changes nothing: the latest per prediction counts)."""
    from google.api_core import exceptions  # a file deleted while it streams

    counts = {"files": 0, "labels": 0, "skipped": 0}
    for blob in cloud.storage.list_blobs(cloud.settings.bucket, prefix=f"labels/{spec.name}/"):
        if not blob.name.endswith(LABEL_SUFFIXES) or (blob.updated is not None and blob.updated < since):
            continue
        key = hashlib.sha256(f"{blob.name}#{blob.generation}".encode()).hexdigest()[:32]
        if state.label_file_seen(spec.name, key):
            continue
        at = (blob.updated or st.now()).isoformat()
        published, futures, error = 0, [], None
        try:
            for chunk in _chunks(cloud, blob):
                records = label_records(chunk, spec, at, published)
                for i in range(0, len(records), LABELS_PER_MESSAGE):
                    part = records[i:i + LABELS_PER_MESSAGE]
                    data = orjson.dumps({"schema": tables.LABELS_SCHEMA, "dataset": spec.name, "records": part})
                    futures.append(cloud.publisher.publish(cloud.topic_path(tables.PREDICTIONS), data,
                                                           dataset=spec.name, kind=tables.LABELS))
                published += len(chunk)
            for future in futures:
                future.result(timeout=60)
        except (ValueError, KeyError, OSError, NotFound, exceptions.NotFound) as exc:   # broken or vanished: skipped
            error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("labels file skipped", object=blob.name, error=error)
            counts["skipped"] += 1
        else:
            counts["files"] += 1
            counts["labels"] += published
        state.record_label_file(spec.name, key, {"object": blob.name, "generation": int(blob.generation),
                                                 "rows": published, "error": error})
    return counts


def _reference(cloud: Cloud, dataset: str, version: int, cache: dict[tuple[str, int], Any]) -> Any:
    key = (dataset, version)
    if key not in cache:
        cache[key] = cloud.read_json(f"models/{dataset}/{version}/profile.json")
    return cache[key]


def _attributions(cloud: Cloud, state: st.State, spec: specs.DatasetSpec, version: int, sample: pd.DataFrame,
                  cache: dict[Any, Any]) -> dict[str, Any] | None:
    """The mean |attribution| per feature of a version on its live ``sample`` (explain.summarise), with the model
    loaded as every job loads one (hash, allow-list and structure checked); None when there is too little to
    judge. A model that cannot be loaded or explained gives the reason, never a failed tick."""
    m = spec.monitoring
    if m.attribution_drift is None or len(sample) < spec.drift.min_rows:
        return None
    try:
        key = ("model", spec.name, version)
        if key not in cache:
            model, record = load_model(cloud, state, spec.name, version)
            cache[key] = (model, artifacts.record_spec(record))
        model, trained_with = cache[key]
        return explain.summarise(model, trained_with, sample, m.attribution_rows)
    except Exception as exc:   # the window is judged without attributions; the reason is recorded
        reason = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("attributions not computed", dataset=spec.name, version=version, error=reason)
        return {"method": None, "rows": 0, "reason": reason}


def _alert(cloud: Cloud, state: st.State, alert: dict[str, Any], spec: specs.DatasetSpec, at: dt.datetime) -> bool:
    key = f"alert:{alert['version']}:{alert['kind']}"
    if not state.claim_cooldown(spec.name, key, dt.timedelta(minutes=spec.monitoring.alert_cooldown_minutes), at):
        return False
    alert_id = hashlib.sha256(f"{spec.name}:{key}:{at.isoformat()}".encode()).hexdigest()[:20]
    alert = plain(alert)
    state.add_alert(alert_id, {**alert, "at": at})
    cloud.publish("alerts", envelope("alert", alert_id=alert_id, at=at.isoformat(), alert=alert),
                  dataset=spec.name, kind=alert["kind"])
    promotion.post_webhook(f"Tollgate alert ({alert['severity']}) for {spec.name}: {alert['message']}",
                           {**alert, "alert_id": alert_id})
    log.warning("alert", dataset=spec.name, kind=alert["kind"], version=alert["version"],
                detail=alert["message"])
    return True


def request_retraining(cloud: Cloud, state: st.State, spec: specs.DatasetSpec, reason: str,
                       at: dt.datetime) -> str | None:
    """A run over the latest curated batch (the training window ends there), through the whole
    chain from `data-validated`; None while the cool-down holds or when there is no batch."""
    batches = [b for b in state.list_batches(spec.name) if not b.get("excluded")]
    if not batches:
        return None
    if not state.claim_cooldown(spec.name, "retrain", dt.timedelta(hours=spec.monitoring.retrain_cooldown_hours),
                                at):
        return None
    latest = batches[-1]
    run_id = "retrain-" + hashlib.sha256(f"{spec.name}:{at.isoformat()}".encode()).hexdigest()[:20]
    curated = {k: latest[k] for k in ("object", "generation", "sha256", "object_sha256", "rows", "time_min",
                                      "time_max") if k in latest}
    state.create_run(run_id, {"dataset": spec.name, "spec": spec.raw, "spec_sha256": spec.sha256,
                              "source": {"kind": "retrain", "requested_by": ACTOR, "reason": reason}})
    event = events.step_event({"run_id": run_id, "dataset": spec.name, "curated": curated,
                               "drift": {"verdict": "none"}}, lifecycle.VALIDATED)
    if state.transition(run_id, (lifecycle.RECEIVED,), lifecycle.VALIDATED, events=(event,), curated=curated,
                        message=f"retraining requested by the monitor: {reason}",
                        drift={"verdict": "none", "message": "retraining over curated data"}):
        outbox.publish(cloud, state, [event])
    log.info("retraining requested", dataset=spec.name, run_id=run_id, reason=reason)
    return run_id


def monitor_dataset(cloud: Cloud, state: st.State, spec: specs.DatasetSpec, at: dt.datetime,
                    cache: dict[tuple[str, int], Any] | None = None) -> dict[str, Any]:
    cache = {} if cache is None else cache
    ds = state.get_dataset(spec.name) or {}
    pointers = serving.serving_summary(ds)
    m = spec.monitoring
    start = at - dt.timedelta(minutes=m.window_minutes)
    label_start = at - dt.timedelta(hours=m.label_window_hours)
    observed = queries.observe(cloud.warehouse, spec, start, at, label_start)
    labelled = observed.labelled
    versions = sorted(set(observed.traffic) | {int(v) for v in labelled["model_version"]})
    references = {v: _reference(cloud, spec.name, v, cache) for v in versions}
    for version, sample in observed.samples.items():
        explained = _attributions(cloud, state, spec, version, sample, cache)
        if explained is not None:
            observed.attributions[version] = explained
    result = monitoring.window(observed, spec, references, pd.Timestamp(start), pd.Timestamp(at))
    result["serving"] = pointers
    actions: dict[str, Any] = {"alerts": [], "retraining": None, "canary": None}
    for alert in monitoring.judge(result, spec, pointers):
        if _alert(cloud, state, alert, spec, at):
            actions["alerts"].append(alert)
        champion = (pointers or {}).get("version")
        if alert["retrain"] and alert["version"] == champion and actions["retraining"] is None:
            actions["retraining"] = request_retraining(cloud, state, spec, alert["message"], at)
    canary = (pointers or {}).get("canary")
    if canary:
        trial = (ds.get("canary") or {}).get("since")   # labels from before the canary compare other times
        evidence = labelled[labelled["time"] >= pd.Timestamp(trial)] if trial is not None else labelled
        verdict = monitoring.canary_verdict(evidence, spec, result, pointers["version"], canary["version"])
        actions["canary"] = {"verdict": verdict["verdict"], "reason": verdict["reason"],
                             "evidence": plain(verdict["evidence"])}
        if verdict["verdict"] in ("promote", "rollback"):
            action = serving.CANARY_PROMOTE if verdict["verdict"] == "promote" else serving.CANARY_ABORT
            moved = promotion.move(cloud, state, spec.name, action, ACTOR, verdict["reason"])
            actions["canary"]["outcome"] = moved["outcome"]
    result["actions"] = actions
    state.record_window(spec.name, plain(result))
    try:
        from tollgate import reports

        html = reports.monitoring_html(spec, state.windows(spec.name), result)
        cloud.bucket.blob(f"reports/monitoring/{spec.name}/latest.html").upload_from_string(
            html.encode(), content_type="text/html; charset=utf-8")
    except Exception as exc:   # the window is recorded; a report that failed to draw is only logged
        log.warning("monitoring report not written", dataset=spec.name, error=f"{type(exc).__name__}: {exc}"[:300])
    return result


def run(cloud: Cloud, state: st.State, datasets: list[str] | None = None,
        at: dt.datetime | None = None) -> dict[str, Any]:
    """One tick: publish new label files, drain the log (locally), then judge every dataset that has a
    serving version."""
    at = at or st.now()
    serving_specs = {}
    for ds in state.list_datasets():
        name = ds["name"]
        if (datasets and name not in datasets) or ds.get("champion_version") is None:
            continue
        serving_specs[name] = specs.loads(cloud.read_bytes(specs.object_name(name)).decode())
    labels = {name: ingest_label_files(cloud, state, spec, at - dt.timedelta(hours=spec.monitoring.label_window_hours))
              for name, spec in serving_specs.items()}
    drained = drain(cloud) if cloud.warehouse.engine == "duckdb" else None
    results: dict[str, Any] = {}
    cache: dict[tuple[str, int], Any] = {}
    expired: dict[str, dict[str, int]] = {}
    for name, spec in serving_specs.items():
        results[name] = monitor_dataset(cloud, state, spec, at, cache)
        if spec.monitoring.retention_days is not None:
            before = at - dt.timedelta(days=spec.monitoring.retention_days)
            try:
                expired[name] = {table: cloud.warehouse.expire(table, name, before) for table in tables.TABLES}
            except Exception as exc:   # the window is judged and recorded; the next tick deletes what is left
                log.error("retention: old log rows not deleted", dataset=name,
                          error=f"{type(exc).__name__}: {exc}"[:300])
    log.info("monitor tick", drained=drained, label_files=labels, datasets=sorted(results), expired=expired)
    return {"at": at.isoformat(), "drained": drained, "label_files": labels, "datasets": results,
            "expired": expired}
