"""Monitoring: what live traffic says about each serving version. Pure: frames in, dicts out.

A *window* is the prediction log of one dataset over the last ``monitoring.window_minutes``
(``predictions/<dataset>/<date>/*.parquet``, written by the monitor job from the `predictions`
topic) joined with whatever late labels arrived for it. Per model version it gives:

- traffic: requests, rows, error rate and latency percentiles. Only server errors (5xx) count toward the
  error rate (the SLO and canary verdicts): a client's bad requests (4xx) are the caller's doing — anyone
  who can call the predictor could send them to make a canary look broken — so they are reported apart,
  as ``client_errors``;
- drift: the window's inputs and predictions profiled on the bins of the version's training
  profile and compared exactly as the validator compares a batch (``drift.compare``); the
  prediction column is compared with the training target;
- realised metrics where labels exist: the dataset's metrics with a bootstrap confidence interval
  of the primary one.

``judge`` turns a window into alerts (SLO breach, severe drift, decay) by the spec's thresholds,
and ``canary_verdict`` compares a canary with the stable version on the same window.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tollgate import drift, evaluation
from tollgate.spec import METRICS, DatasetSpec

FEATURE = "feature."          # prediction-log columns that hold the request's features
META = ("request_id", "row", "time", "model_version", "status", "latency_ms", "prediction")
MAX_SAMPLE = 20_000           # rows profiled per version and window (seeded sample beyond)


def features_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The feature columns of a prediction-log frame, under their own names."""
    cols = [c for c in frame.columns if c.startswith(FEATURE)]
    return frame[cols].rename(columns=lambda c: c[len(FEATURE):])


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, int]:
    """Predictions with a ``label`` column where ground truth is known, and how many labels matched
    no logged prediction (unknown request ids: kept, counted, never an error).

    Labels carry ``request_id`` (and ``row``, default 0) or the spec's ``monitoring.id_columns``;
    the label itself is in the target column (or ``label``). A later label for the same key wins."""
    out = predictions.copy()
    out["label"] = np.nan if spec.task == "regression" else None
    if labels is None or labels.empty:
        return out, 0
    labels = labels.copy()
    if spec.target in labels:   # files name it after the target; feedback calls it `label`
        labels["label"] = (labels["label"].combine_first(labels[spec.target]) if "label" in labels
                           else labels[spec.target])
    if "label" not in labels:
        return out, 0
    labels = labels[labels["label"].notna()]
    if "request_id" in labels:
        keys = ["request_id", "row"]
        labels = labels.assign(row=labels["row"] if "row" in labels else 0)
        labels["row"] = pd.to_numeric(labels["row"], errors="coerce").fillna(0).astype("int64")
        labels["request_id"] = labels["request_id"].astype(str)
        left = out[keys]
    elif spec.monitoring.id_columns and all(c in labels for c in spec.monitoring.id_columns):
        keys = list(spec.monitoring.id_columns)
        left = features_of(out)[keys]
    else:
        return out, len(labels)
    labels = labels.drop_duplicates(subset=keys, keep="last")[keys + ["label"]]
    merged = left.reset_index(drop=True).merge(labels, on=keys, how="left", validate="many_to_one")
    out["label"] = merged["label"].to_numpy()
    matched = labels.merge(left.drop_duplicates(), on=keys, how="inner")
    return out, int(len(labels) - len(matched))


def _latency(frame: pd.DataFrame) -> dict[str, float | None]:
    per_request = frame.drop_duplicates("request_id")["latency_ms"].to_numpy(dtype="float64")
    if not per_request.size:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.quantile(per_request, [0.5, 0.95, 0.99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


def live_metric(spec: DatasetSpec) -> str:
    """The metric judged on live labels: the primary one, or accuracy when the primary needs the
    probabilities (ROC AUC, log loss): the log carries them, the monitor does not store them yet."""
    return "accuracy" if spec.primary_metric in ("roc_auc", "log_loss") else spec.primary_metric


def realised(y: np.ndarray, predictions: np.ndarray, spec: DatasetSpec, seed: int = 0) -> dict[str, Any]:
    """The metrics on labelled rows, with a bootstrap interval of the live metric."""
    metric = live_metric(spec)
    if spec.task == "regression":
        values = evaluation.regression_metrics(y.astype("float64"), predictions.astype("float64"))
    else:
        y, predictions = y.astype(str), predictions.astype(str)
        values = evaluation.classification_metrics(y, predictions, None, sorted(set(y) | set(predictions)))
    low, high = evaluation.bootstrap_interval(y, predictions, metric, spec.bootstrap_resamples,
                                              spec.policy.confidence, seed)
    return {"rows": int(len(y)), "metric": metric, "value": values.get(metric), "low": low, "high": high,
            "confidence": spec.policy.confidence, "metrics": values}


def labelled_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The answered predictions that have a label."""
    return frame[frame["label"].notna() & (frame["status"] < 400)] if "label" in frame else frame.iloc[:0]


def version_window(frame: pd.DataFrame, spec: DatasetSpec, reference: dict[str, Any] | None,
                   labelled: pd.DataFrame | None = None, seed: int = 0) -> dict[str, Any]:
    """Traffic and drift of one version's rows in a window; realised metrics on ``labelled`` (its
    labelled predictions over the label window; by default those of ``frame``)."""
    ok = frame[frame["status"] < 400]
    requests = int(frame["request_id"].nunique())
    errors = int(frame.loc[frame["status"] >= 500, "request_id"].nunique())
    client_errors = int(frame.loc[(frame["status"] >= 400) & (frame["status"] < 500), "request_id"].nunique())
    labelled = labelled_rows(frame) if labelled is None else labelled
    out: dict[str, Any] = {"requests": requests, "rows": int(len(ok)), "errors": errors,
                           "client_errors": client_errors,
                           "error_rate": errors / requests if requests else None, "latency_ms": _latency(frame),
                           "labels": int(len(labelled))}
    out["realised"] = (realised(labelled["label"].to_numpy(), labelled["prediction"].to_numpy(), spec, seed)
                       if len(labelled) >= spec.monitoring.min_labels else None)
    if ok.empty:
        out.update(drift={"verdict": "none", "reason": "no_traffic", "features": []}, prediction_drift=None)
        return out
    sample = ok.sample(MAX_SAMPLE, random_state=seed) if len(ok) > MAX_SAMPLE else ok
    table = features_of(sample)
    table[spec.target] = (pd.to_numeric(sample["prediction"], errors="coerce") if spec.task == "regression"
                          else sample["prediction"].astype(str)).to_numpy()
    if reference and reference.get("format") == drift.FORMAT:
        builder = drift.ProfileBuilder(drift.profiled_columns(spec), reference, sample_size=min(len(table), 2_000),
                                       seed=seed)
        builder.add(table)
        compared = drift.summary(drift.compare(reference, builder.result(), spec.drift))
    else:
        compared = drift.compare(reference, {"columns": {}}, spec.drift)
    inputs = [f for f in compared["features"] if f["feature"] != spec.target]
    prediction = next((f for f in compared["features"] if f["feature"] == spec.target), None)
    verdict = max((f["status"] for f in inputs), key=drift.VERDICTS.index, default="none")
    out["drift"] = {**compared, "features": inputs, "verdict": verdict if compared.get("reason") is None
                    else compared["verdict"]}
    out["prediction_drift"] = prediction
    return out


def window(frame: pd.DataFrame, spec: DatasetSpec, references: dict[int, dict[str, Any] | None],
           start: pd.Timestamp, end: pd.Timestamp, unmatched_labels: int = 0,
           labelled: pd.DataFrame | None = None) -> dict[str, Any]:
    """The whole window: one entry per version that answered in it or has labelled predictions in
    ``labelled`` (the label window; by default the labelled rows of ``frame``). Empty: none."""
    labelled = labelled_rows(frame) if labelled is None else labelled
    versions = {}
    for version in sorted({int(v) for v in frame["model_version"]} | {int(v) for v in labelled["model_version"]}):
        versions[str(version)] = version_window(frame[frame["model_version"] == version], spec,
                                                references.get(version),
                                                labelled[labelled["model_version"] == version])
    return {"dataset": spec.name, "start": start.isoformat(), "end": end.isoformat(),
            "requests": int(frame["request_id"].nunique()) if len(frame) else 0,
            "unmatched_labels": unmatched_labels, "versions": versions}


def judge(result: dict[str, Any], spec: DatasetSpec, serving: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Alerts for a window: SLO breach (error rate, p99), severe input drift, accuracy decay.
    Each says what was seen, the threshold, and whether it asks for retraining."""
    m = spec.monitoring
    floor = m.decay_below if m.decay_below is not None else spec.policy.threshold
    higher = METRICS[live_metric(spec)]
    alerts = []
    for key, v in result["versions"].items():
        version = int(key)
        base = {"dataset": spec.name, "version": version}
        if v["error_rate"] is not None and v["requests"] >= 20 and v["error_rate"] > m.max_error_rate:
            alerts.append({**base, "kind": "slo_error_rate", "severity": "warning", "retrain": False,
                           "value": v["error_rate"], "threshold": m.max_error_rate,
                           "message": f"v{version}: {v['error_rate']:.1%} of {v['requests']} requests failed with "
                                      f"a server error (SLO {m.max_error_rate:.1%})"})
        p99 = v["latency_ms"]["p99"]
        if p99 is not None and v["requests"] >= 20 and p99 > m.max_p99_ms:
            alerts.append({**base, "kind": "slo_latency", "severity": "warning", "retrain": False,
                           "value": p99, "threshold": m.max_p99_ms,
                           "message": f"v{version}: p99 latency {p99:.0f} ms over the SLO of {m.max_p99_ms:.0f} ms"})
        if v["drift"]["verdict"] == "severe":
            alerts.append({**base, "kind": "drift", "severity": "critical", "retrain": True, "value": None,
                           "threshold": None, "message": f"v{version}: severe input drift: {v['drift']['message']}"})
        r = v.get("realised")
        if r and r["value"] is not None:
            decayed = (r["high"] < floor) if higher else (r["low"] > floor)
            if decayed:
                alerts.append({**base, "kind": "decay", "severity": "critical", "retrain": True, "value": r["value"],
                               "threshold": floor,
                               "message": f"v{version}: realised {r['metric']} {r['value']:.3f} "
                                          f"({r['confidence']:.0%} interval {r['low']:.3f} to {r['high']:.3f}) on "
                                          f"{r['rows']} labelled rows is {'below' if higher else 'above'} {floor}"})
    serving_versions = {(serving or {}).get("version")} | {((serving or {}).get("canary") or {}).get("version")}
    return [a for a in alerts if a["version"] in serving_versions]


def _interval_of_difference(a: np.ndarray, ya: np.ndarray, b: np.ndarray, yb: np.ndarray, spec: DatasetSpec,
                            seed: int = 0) -> tuple[float, float, float]:
    """(point, low, high) of (canary − stable) on the primary metric, oriented so > 0 is better;
    an unpaired bootstrap: the two versions answered different requests."""
    metric = live_metric(spec)
    rng = np.random.default_rng(seed)
    point_a = evaluation.metric_values(ya, a, metric)
    point_b = evaluation.metric_values(yb, b, metric)
    resamples = spec.bootstrap_resamples
    diffs = (evaluation.bootstrap_values(ya, [a], metric, resamples, rng)[0]
             - evaluation.bootstrap_values(yb, [b], metric, resamples, rng)[0])
    sign = 1.0 if METRICS[metric] else -1.0
    alpha = (1 - spec.policy.confidence) / 2
    low, high = np.quantile(sign * diffs, [alpha, 1 - alpha])
    return float(sign * (point_a - point_b)), float(low), float(high)


def canary_verdict(frame: pd.DataFrame, spec: DatasetSpec, result: dict[str, Any], stable: int,
                   canary: int) -> dict[str, Any]:
    """``promote``, ``rollback`` or ``wait``, with the evidence, for a canary against the stable
    version: traffic from ``result`` (the same window), realised metrics from the labelled rows of
    ``frame`` (the monitor passes those logged since the canary started)."""
    m = spec.monitoring
    c, s = result["versions"].get(str(canary)), result["versions"].get(str(stable))
    evidence: dict[str, Any] = {"stable": stable, "canary": canary, "window": [result["start"], result["end"]],
                                "canary_requests": (c or {}).get("requests", 0),
                                "stable_requests": (s or {}).get("requests", 0)}
    if not c or not s or c["requests"] < m.canary_min_requests or s["requests"] < m.canary_min_requests:
        return {"verdict": "wait", "reason": f"needs {m.canary_min_requests} requests on each version "
                f"(canary {evidence['canary_requests']}, stable {evidence['stable_requests']})", "evidence": evidence}
    worse = []
    evidence["error_rate"] = {"canary": c["error_rate"], "stable": s["error_rate"]}
    if c["error_rate"] > s["error_rate"] + m.canary_max_error_increase:
        worse.append(f"error rate {c['error_rate']:.1%} against {s['error_rate']:.1%}")
    cp, sp = c["latency_ms"]["p99"], s["latency_ms"]["p99"]
    evidence["p99_ms"] = {"canary": cp, "stable": sp}
    if cp is not None and sp is not None and cp > max(m.canary_max_latency_ratio * sp, m.canary_latency_floor_ms):
        worse.append(f"p99 latency {cp:.0f} ms against {sp:.0f} ms")
    evidence["prediction_drift"] = c.get("prediction_drift")
    labelled = labelled_rows(frame)
    on_c = labelled[labelled["model_version"] == canary]
    on_s = labelled[labelled["model_version"] == stable]
    decided_by_labels = len(on_c) >= m.min_labels and len(on_s) >= m.min_labels
    if decided_by_labels:
        cast = (lambda x: x.to_numpy(dtype="float64")) if spec.task == "regression" else (
            lambda x: x.astype(str).to_numpy())
        point, low, high = _interval_of_difference(cast(on_c["prediction"]), cast(on_c["label"]),
                                                   cast(on_s["prediction"]), cast(on_s["label"]), spec)
        evidence["metric"] = {"metric": live_metric(spec), "canary": c["realised"] and c["realised"]["value"],
                              "stable": s["realised"] and s["realised"]["value"], "improvement": point,
                              "low": low, "high": high, "confidence": spec.policy.confidence,
                              "labels": [int(len(on_c)), int(len(on_s))]}
        if high < -m.canary_max_metric_drop:
            worse.append(f"realised {live_metric(spec)} worse by {-point:.3f} "
                         f"({spec.policy.confidence:.0%} interval of the improvement {low:.3f} to {high:.3f})")
    elif (c.get("prediction_drift") or {}).get("status") == "severe" and \
            (s.get("prediction_drift") or {}).get("status") != "severe":
        worse.append("its predictions drifted severely from the training target, the stable version's did not")
    if worse:
        return {"verdict": "rollback", "reason": "canary worse than stable: " + "; ".join(worse), "evidence": evidence}
    if decided_by_labels and evidence["metric"]["low"] < -m.canary_max_metric_drop:
        e = evidence["metric"]
        return {"verdict": "wait", "reason": f"the realised {e['metric']} cannot yet tell the canary from the stable "
                f"version (improvement {e['low']:.3f} to {e['high']:.3f}, allowed drop {m.canary_max_metric_drop}); "
                "waiting for more labels", "evidence": evidence}
    basis = "realised metric, error rate and latency" if decided_by_labels else "error rate, latency and drift"
    return {"verdict": "promote", "reason": f"canary not worse than stable on {basis} over "
            f"{evidence['canary_requests']} requests", "evidence": evidence}
