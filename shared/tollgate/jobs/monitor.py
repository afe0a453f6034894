"""Job `monitor`: the prediction log into storage, windows of live evidence, alerts, retraining
requests and canary decisions. Runs on each `monitor-tick` (Cloud Scheduler on GCP, the local
cloud's scheduler locally) and on demand (`tollgate monitor run`).

One tick:

1. **Drain** the `predictions-monitor` pull subscription: predictions go to
   ``predictions/<dataset>/<date>/<id>.parquet``, labels sent to ``POST /feedback`` to
   ``labels/<dataset>/feedback/<date>/<id>.parquet``. Each record keeps its Pub/Sub message id and
   records whose message is already stored are skipped, so a redelivered batch is stored once;
   messages are acknowledged only after their file is written.
2. Per dataset that serves: the **window** (``monitoring.window_minutes``) of logged predictions,
   and the realised metrics of those of the last ``label_window_hours`` that have labels (the
   label files under ``labels/<dataset>/`` written in that time, CSV or Parquet, keyed by request
   id and row, or by ``monitoring.id_columns``), judged per version (monitoring.py), stored in
   Firestore (``monitoring/<dataset>/windows``) and drawn in ``reports/monitoring/<dataset>/latest.html``.
3. **Alerts** (SLO breach, severe drift, decay) go to Firestore, the `alerts` topic and the review
   webhook, at most once per version and kind per ``alert_cooldown_minutes``; decay and severe drift
   of the stable version also request a **retraining** run over the latest curated batch, at most
   once per ``retrain_cooldown_hours``.
4. A running **canary** is promoted or rolled back on the window's evidence, through the same code
   path as `tollgate canary promote|abort` (a ledger entry whose actor is ``monitor``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from typing import Any

import orjson
import pandas as pd

from tollgate import lifecycle, log, monitoring, outbox, promotion, serving
from tollgate import spec as specs
from tollgate.cloud import Cloud
from tollgate.cloud import state as st
from tollgate.events import envelope
from tollgate.jsonable import plain

SUBSCRIPTION = "predictions-monitor"
ACTOR = "monitor"
MAX_PULL = 1_000


def _date(value: str) -> str:
    return value[:10]


def _frame(records: list[dict[str, Any]], message_id: str) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {k: r.get(k) for k in ("request_id", "row", "time", "model_version", "status", "latency_ms",
                                     "prediction", "label")}
        for name, value in (r.get("features") or {}).items():
            row[monitoring.FEATURE + name] = value
        row["message_id"] = message_id
        rows.append(row)
    return pd.DataFrame(rows)


def _stored_message_ids(cloud: Cloud, prefix: str) -> set[str]:
    ids: set[str] = set()
    for name in cloud.list_names(prefix):
        if name.endswith(".parquet"):
            ids.update(pd.read_parquet(io.BytesIO(cloud.read_bytes(name)), columns=["message_id"])["message_id"])
    return ids


def _store(cloud: Cloud, prefix: str, frames: list[pd.DataFrame], seen: dict[str, set[str]] | None = None) -> int:
    """Write the records not stored yet under ``prefix`` as one Parquet file; returns rows written.
    ``seen`` keeps each prefix's stored message ids across the pulls of one drain (read once)."""
    seen = {} if seen is None else seen
    if prefix not in seen:
        seen[prefix] = _stored_message_ids(cloud, prefix)
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[~frame["message_id"].isin(seen[prefix])].dropna(axis=1, how="all")
    if frame.empty:
        return 0
    for column in ("row", "model_version", "status"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").fillna(0).astype("int64")
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    name = hashlib.sha256("\n".join(sorted(set(frame["message_id"]))).encode()).hexdigest()[:20]
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    cloud.write_once(f"{prefix}{name}.parquet", buffer.getvalue())
    seen[prefix].update(frame["message_id"])
    return int(len(frame))


def drain(cloud: Cloud, max_messages: int = 50_000) -> dict[str, int]:
    """Store what the prediction log published since the last tick; ack only what is stored."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(cloud.settings.project, SUBSCRIPTION)
    counts = {"messages": 0, "predictions": 0, "labels": 0, "malformed": 0}
    seen: dict[str, set[str]] = {}
    try:
        while counts["messages"] < max_messages:
            response = subscriber.pull(subscription=path, max_messages=MAX_PULL, timeout=10)
            received = response.received_messages
            if not received:
                break
            groups: dict[str, list[pd.DataFrame]] = {}
            for m in received:
                counts["messages"] += 1
                try:
                    payload = orjson.loads(m.message.data)
                    kind = "labels" if payload.get("schema", "").startswith("tollgate.labels/") else "predictions"
                    dataset, records = str(payload["dataset"]), payload["records"]
                    for date in sorted({_date(r["time"]) for r in records}):
                        part = [r for r in records if _date(r["time"]) == date]
                        prefix = (f"labels/{dataset}/feedback/{date}/" if kind == "labels"
                                  else f"predictions/{dataset}/{date}/")
                        groups.setdefault(prefix, []).append(_frame(part, m.message.message_id))
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    counts["malformed"] += 1   # acknowledged: redelivery would not make it readable
                    log.warning("malformed prediction-log message skipped", message_id=m.message.message_id,
                                error=f"{type(exc).__name__}: {exc}"[:300])
            for prefix, frames in groups.items():
                written = _store(cloud, prefix, frames, seen)
                counts["labels" if prefix.startswith("labels/") else "predictions"] += written
            subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in received])
    finally:
        subscriber.close()
    return counts


def _read_table(cloud: Cloud, name: str) -> pd.DataFrame | None:
    data = cloud.read_bytes(name)
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(io.BytesIO(data))
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(io.BytesIO(data), compression="infer" if name.endswith(".gz") else None)
    except Exception as exc:   # a broken labels file is skipped and said, never fatal for the tick
        log.warning("labels file skipped", object=name, error=f"{type(exc).__name__}: {exc}"[:300])
    return None


def load_predictions(cloud: Cloud, dataset: str, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """Logged predictions of ``dataset`` with ``start <= time < end``, one row per (request, row)."""
    frames = []
    day = start.date()
    while day <= end.date():
        for name in cloud.list_names(f"predictions/{dataset}/{day.isoformat()}/"):
            if name.endswith(".parquet"):
                frames.append(pd.read_parquet(io.BytesIO(cloud.read_bytes(name))))
        day += dt.timedelta(days=1)
    if not frames:
        return pd.DataFrame(columns=list(monitoring.META))
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[(frame["time"] >= pd.Timestamp(start)) & (frame["time"] < pd.Timestamp(end))]
    return frame.drop_duplicates(subset=["request_id", "row", "status"]).reset_index(drop=True)


def load_labels(cloud: Cloud, dataset: str, since: dt.datetime | None = None) -> pd.DataFrame:
    """Every label file under ``labels/<dataset>/`` written since ``since`` (older ones are for
    predictions that left the label window), oldest first, so that a later label for a key wins."""
    blobs = [b for b in cloud.storage.list_blobs(cloud.settings.bucket, prefix=f"labels/{dataset}/")
             if since is None or b.updated is None or b.updated >= since]
    blobs.sort(key=lambda b: (b.updated or dt.datetime.min.replace(tzinfo=dt.timezone.utc), b.name))
    frames = [f for b in blobs if (f := _read_table(cloud, b.name)) is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _reference(cloud: Cloud, dataset: str, version: int, cache: dict[tuple[str, int], Any]) -> Any:
    key = (dataset, version)
    if key not in cache:
        cache[key] = cloud.read_json(f"models/{dataset}/{version}/profile.json")
    return cache[key]


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
    curated = {k: latest[k] for k in ("object", "generation", "sha256", "rows", "time_min", "time_max")
               if k in latest}
    state.create_run(run_id, {"dataset": spec.name, "spec": spec.raw, "spec_sha256": spec.sha256,
                              "source": {"kind": "retrain", "requested_by": ACTOR, "reason": reason}})
    event = outbox.Event("data-validated", envelope("data-validated", run_id=run_id, dataset=spec.name,
                                                    curated=curated, drift="none"))
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
    since = min(start, at - dt.timedelta(hours=m.label_window_hours))
    everything, unmatched = monitoring.join_labels(load_predictions(cloud, spec.name, since, at),
                                                   load_labels(cloud, spec.name, since), spec)
    frame = everything[everything["time"] >= pd.Timestamp(start)]
    labelled = monitoring.labelled_rows(everything)
    versions = sorted({int(v) for v in frame["model_version"]} | {int(v) for v in labelled["model_version"]})
    references = {v: _reference(cloud, spec.name, v, cache) for v in versions}
    result = monitoring.window(frame, spec, references, pd.Timestamp(start), pd.Timestamp(at), unmatched, labelled)
    result["serving"] = pointers
    actions: dict[str, Any] = {"alerts": [], "retraining": None, "canary": None}
    for alert in monitoring.judge(result, spec, pointers):
        if _alert(cloud, state, alert, spec, at):
            actions["alerts"].append(alert)
        stable = (pointers or {}).get("version")
        if alert["retrain"] and alert["version"] == stable and actions["retraining"] is None:
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
    """One tick: drain the log, then judge every dataset that has a serving version."""
    at = at or st.now()
    drained = drain(cloud)
    results: dict[str, Any] = {}
    cache: dict[tuple[str, int], Any] = {}
    for ds in state.list_datasets():
        name = ds["name"]
        if (datasets and name not in datasets) or ds.get("champion_version") is None:
            continue
        spec = specs.loads(cloud.read_bytes(specs.object_name(name)).decode())
        results[name] = monitor_dataset(cloud, state, spec, at, cache)
    log.info("monitor tick", drained=drained, datasets=sorted(results))
    return {"at": at.isoformat(), "drained": drained, "datasets": results}
