"""Monitoring: what live traffic says about each serving version. Pure: observations in, dicts out.

A *window* is what the warehouse observed of one dataset (tollgate.warehouse.queries.observe): over
the last ``monitoring.window_minutes`` of the prediction log, per model version, its traffic and a
seeded sample of its answered rows; over the last ``label_window_hours``, the predictions that have a
label (late labels: files under ``labels/<dataset>/`` or ``POST /feedback``). Per model version it gives:

- traffic: requests, rows, error rate and latency percentiles. Only server errors (5xx) count toward the
  error rate (the SLO and canary verdicts): a client's bad requests (4xx) are the caller's doing — anyone
  who can call the predictor could send them to make a canary look broken — so they are reported apart,
  as ``client_errors``;
- drift: the sample's inputs and predictions profiled on the bins of the version's training
  profile and compared exactly as the validator compares a batch (``drift.compare``); the
  prediction column is compared with the training target;
- realised metrics where labels exist: the dataset's metrics with a bootstrap confidence interval
  of the primary one.

- attribution drift: what the model relies on. The monitor explains a sample of each version's answered rows
  (``explain.summarise``); each feature's share of the mean absolute attribution is compared with its share on
  the training rows (the version's profile). Univariate drift tests see each input alone; a change in how the
  inputs go together (distances and durations joined to the wrong trips) moves the attributions while every
  input's own distribution stays the same.

``judge`` turns a window into alerts (SLO breach, severe drift, attribution drift, decay) by the spec's thresholds,
and ``canary_verdict`` compares a canary with the champion on the same window.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from tollgate import drift, evaluation
from tollgate.spec import METRICS, DatasetSpec

MAX_SAMPLE = 20_000           # rows profiled per version and window (a seeded sample of its answered rows)


@dataclasses.dataclass
class Observed:
    """What the warehouse returned for one window (bounded: aggregates, samples, labelled pairs)."""
    traffic: dict[int, dict[str, Any]]        # version → requests, ok_rows, errors, client_errors, latency_ms
    samples: dict[int, pd.DataFrame]         # version → feature columns and the prediction (target's name)
    labelled: pd.DataFrame                   # model_version, time, prediction, label: answered and labelled
    unmatched_labels: int = 0                # labels that name no logged prediction (kept, counted)
    attributions: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)   # version → the sample's
                                             # mean |attribution| per feature (explain.summarise)


def attribution_drift(reference: dict[str, Any] | None, live: dict[str, Any] | None,
                      spec: DatasetSpec) -> dict[str, Any]:
    """Each feature's share of the mean absolute attribution, on the training rows (``reference``: the version's
    profile's ``attributions``) and on live rows (``live``), and how far it moved; ``drift`` when some feature's
    share moved by ``monitoring.attribution_drift`` or more. Shares, not raw values: the output's scale (a fare,
    log-odds) drops out, and they sum to 1 on both sides. ``ndcg`` tells how well the live ranking of the features
    keeps the training one (1: the same order of importance)."""
    threshold, least = spec.monitoring.attribution_drift, spec.drift.min_rows

    def none(reason: str, message: str) -> dict[str, Any]:
        return {"verdict": "none", "reason": reason, "message": message, "threshold": threshold, "features": []}

    if threshold is None:
        return none("disabled", "not judged (monitoring.attribution_drift: null)")
    if not reference or not reference.get("mean_abs"):
        return none("no_reference", (reference or {}).get("reason") or "the version's profile has no attributions "
                    "of its training rows (trained before attribution drift was monitored)")
    if not live or not live.get("mean_abs"):
        return none("not_explained", (live or {}).get("reason") or "no live rows explained")
    if live["rows"] < least:
        return none("not_enough_data", f"not enough data: {live['rows']} row(s) explained, fewer than the {least} "
                                       "drift needs for a verdict (drift.min_rows)")
    names = [n for n in reference["mean_abs"] if n in live["mean_abs"]]
    ref = np.array([reference["mean_abs"][n] for n in names])
    cur = np.array([live["mean_abs"][n] for n in names])
    if not ref.sum() or not cur.sum():
        return none("constant", "the model's output does not depend on its inputs on these rows")
    ref_share, cur_share = ref / ref.sum(), cur / cur.sum()
    shift = np.abs(cur_share - ref_share)
    features = sorted(({"feature": n, "reference_share": float(a), "live_share": float(b), "shift": float(d),
                        "status": "drift" if d >= threshold else "none"}
                       for n, a, b, d in zip(names, ref_share, cur_share, shift)),
                      key=lambda f: -f["reference_share"])
    drifted = [f for f in features if f["status"] == "drift"]
    top = max(features, key=lambda f: f["shift"])
    message = (", ".join(f"{f['feature']} {f['reference_share']:.0%} → {f['live_share']:.0%} of the attribution"
                         for f in drifted) if drifted
               else f"no feature's share moved by {threshold:.0%} (largest: {top['feature']}, {top['shift']:.1%})")
    return {"verdict": "drift" if drifted else "none", "reason": None, "message": message, "threshold": threshold,
            "max_shift": float(shift.max()), "ndcg": ndcg(ref_share, cur_share), "method": live.get("method"),
            "reference_rows": reference.get("rows"), "live_rows": live["rows"], "features": features}


def ndcg(reference: np.ndarray, live: np.ndarray) -> float:
    """Normalised discounted cumulative gain of the live ranking of the features, scored by their training
    shares (SageMaker Clarify's measure of attribution drift): 1 when the order is kept."""
    discount = 1.0 / np.log2(np.arange(2, reference.size + 2))
    ideal = float(np.sum(np.sort(reference)[::-1] * discount))
    return float(np.sum(reference[np.argsort(-live, kind="stable")] * discount) / ideal) if ideal else 1.0


def live_metric(spec: DatasetSpec) -> str:
    """The metric judged on live labels: the primary one, or accuracy when the primary needs the
    probabilities (ROC AUC, log loss): the log carries them, the monitor does not judge them yet."""
    return "accuracy" if spec.primary_metric in ("roc_auc", "log_loss") else spec.primary_metric


def realised(y: np.ndarray, predictions: np.ndarray, spec: DatasetSpec, seed: int = 0) -> dict[str, Any]:
    """The metrics on labelled rows, with a bootstrap interval of the live metric."""
    metric = live_metric(spec)
    if spec.task == "regression":
        values = evaluation.regression_metrics(y.astype("float64"), predictions.astype("float64"))
    else:
        y, predictions = y.astype(str), predictions.astype(str)
        values = evaluation.classification_metrics(y, predictions, None, sorted(set(y) | set(predictions)))
    low, high = evaluation.bootstrap_interval(y, predictions, metric, spec.evaluation.bootstrap_resamples,
                                              spec.policy.confidence, seed)
    return {"rows": int(len(y)), "metric": metric, "value": values.get(metric), "low": low, "high": high,
            "confidence": spec.policy.confidence, "metrics": values}


_NO_TRAFFIC = {"requests": 0, "ok_rows": 0, "errors": 0, "client_errors": 0,
               "latency_ms": {"p50": None, "p95": None, "p99": None}}


def version_window(traffic: dict[str, Any] | None, sample: pd.DataFrame | None, labelled: pd.DataFrame,
                   spec: DatasetSpec, reference: dict[str, Any] | None, seed: int = 0,
                   attributions: dict[str, Any] | None = None) -> dict[str, Any]:
    """One version: its traffic, the drift of its ``sample`` in the window and of the ``attributions`` of that
    sample; realised metrics on its ``labelled`` predictions over the label window."""
    t = traffic or _NO_TRAFFIC
    requests = t["requests"]
    out: dict[str, Any] = {"requests": requests, "rows": t["ok_rows"], "errors": t["errors"],
                           "client_errors": t["client_errors"],
                           "error_rate": t["errors"] / requests if requests else None,
                           "latency_ms": dict(t["latency_ms"]), "labels": int(len(labelled))}
    out["realised"] = (realised(labelled["label"].to_numpy(), labelled["prediction"].to_numpy(), spec, seed)
                       if len(labelled) >= spec.monitoring.min_labels else None)
    if sample is None or sample.empty:
        out.update(drift={"verdict": "none", "reason": "no_traffic", "features": []}, prediction_drift=None,
                   attribution_drift={"verdict": "none", "reason": "no_traffic", "features": []})
        return out
    out["attribution_drift"] = attribution_drift((reference or {}).get("attributions"), attributions, spec)
    if reference and reference.get("format") == drift.FORMAT:
        builder = drift.ProfileBuilder(drift.profiled_columns(spec), reference, sample_size=min(len(sample), 2_000),
                                       seed=seed)
        builder.add(sample)
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


def window(observed: Observed, spec: DatasetSpec, references: dict[int, dict[str, Any] | None],
           start: pd.Timestamp, end: pd.Timestamp) -> dict[str, Any]:
    """The whole window: one entry per version that answered in it or has labelled predictions in the
    label window. Empty: none."""
    labelled = observed.labelled
    versions = {}
    for version in sorted(set(observed.traffic) | {int(v) for v in labelled["model_version"]}):
        versions[str(version)] = version_window(observed.traffic.get(version), observed.samples.get(version),
                                                labelled[labelled["model_version"] == version], spec,
                                                references.get(version),
                                                attributions=observed.attributions.get(version))
    return {"dataset": spec.name, "start": start.isoformat(), "end": end.isoformat(),
            "requests": sum(t["requests"] for t in observed.traffic.values()),
            "unmatched_labels": int(observed.unmatched_labels), "versions": versions}


def judge(result: dict[str, Any], spec: DatasetSpec, serving: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Alerts for a window: SLO breach (error rate, p99), severe input drift, attribution drift, accuracy decay.
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
        a = v.get("attribution_drift") or {}
        if a.get("verdict") == "drift":
            alerts.append({**base, "kind": "attribution_drift", "severity": "warning", "retrain": False,
                           "value": a["max_shift"], "threshold": a["threshold"],
                           "message": f"v{version}: what the model relies on moved on {a['live_rows']} live rows: "
                                      f"{a['message']}"})
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
    """(point, low, high) of (canary − champion) on the primary metric, oriented so > 0 is better;
    an unpaired bootstrap: the two versions answered different requests."""
    metric = live_metric(spec)
    rng = np.random.default_rng(seed)
    point_a = evaluation.metric_values(ya, a, metric)
    point_b = evaluation.metric_values(yb, b, metric)
    resamples = spec.evaluation.bootstrap_resamples
    diffs = (evaluation.bootstrap_values(ya, [a], metric, resamples, rng)[0]
             - evaluation.bootstrap_values(yb, [b], metric, resamples, rng)[0])
    sign = 1.0 if METRICS[metric] else -1.0
    alpha = (1 - spec.policy.confidence) / 2
    low, high = np.quantile(sign * diffs, [alpha, 1 - alpha])
    return float(sign * (point_a - point_b)), float(low), float(high)


def canary_verdict(labelled: pd.DataFrame, spec: DatasetSpec, result: dict[str, Any], champion: int,
                   canary: int) -> dict[str, Any]:
    """``promote``, ``rollback`` or ``wait``, with the evidence, for a canary against the
    champion: traffic from ``result`` (the same window), realised metrics from the ``labelled``
    predictions (``Observed.labelled``; the monitor passes those logged since the canary started)."""
    m = spec.monitoring
    c, s = result["versions"].get(str(canary)), result["versions"].get(str(champion))
    evidence: dict[str, Any] = {"champion": champion, "canary": canary, "window": [result["start"], result["end"]],
                                "canary_requests": (c or {}).get("requests", 0),
                                "champion_requests": (s or {}).get("requests", 0)}
    if not c or not s or c["requests"] < m.canary_min_requests or s["requests"] < m.canary_min_requests:
        return {"verdict": "wait", "reason": f"needs {m.canary_min_requests} requests on each version "
                f"(canary {evidence['canary_requests']}, champion {evidence['champion_requests']})",
                "evidence": evidence}
    worse = []
    evidence["error_rate"] = {"canary": c["error_rate"], "champion": s["error_rate"]}
    if c["error_rate"] > s["error_rate"] + m.canary_max_error_increase:
        worse.append(f"error rate {c['error_rate']:.1%} against {s['error_rate']:.1%}")
    cp, sp = c["latency_ms"]["p99"], s["latency_ms"]["p99"]
    evidence["p99_ms"] = {"canary": cp, "champion": sp}
    if cp is not None and sp is not None and cp > max(m.canary_max_latency_ratio * sp, m.canary_latency_floor_ms):
        worse.append(f"p99 latency {cp:.0f} ms against {sp:.0f} ms")
    evidence["prediction_drift"] = c.get("prediction_drift")
    on_c = labelled[labelled["model_version"] == canary]
    on_s = labelled[labelled["model_version"] == champion]
    decided_by_labels = len(on_c) >= m.min_labels and len(on_s) >= m.min_labels
    if decided_by_labels:
        cast = (lambda x: x.to_numpy(dtype="float64")) if spec.task == "regression" else (
            lambda x: x.astype(str).to_numpy())
        point, low, high = _interval_of_difference(cast(on_c["prediction"]), cast(on_c["label"]),
                                                   cast(on_s["prediction"]), cast(on_s["label"]), spec)
        evidence["metric"] = {"metric": live_metric(spec), "canary": c["realised"] and c["realised"]["value"],
                              "champion": s["realised"] and s["realised"]["value"], "improvement": point,
                              "low": low, "high": high, "confidence": spec.policy.confidence,
                              "labels": [int(len(on_c)), int(len(on_s))]}
        if high < -m.canary_max_metric_drop:
            worse.append(f"realised {live_metric(spec)} worse by {-point:.3f} "
                         f"({spec.policy.confidence:.0%} interval of the improvement {low:.3f} to {high:.3f})")
    elif (c.get("prediction_drift") or {}).get("status") == "severe" and \
            (s.get("prediction_drift") or {}).get("status") != "severe":
        worse.append("its predictions drifted severely from the training target, the champion's did not")
    if worse:
        return {"verdict": "rollback", "reason": "canary worse than the champion: " + "; ".join(worse),
                "evidence": evidence}
    if decided_by_labels and evidence["metric"]["low"] < -m.canary_max_metric_drop:
        e = evidence["metric"]
        return {"verdict": "wait", "reason": f"the realised {e['metric']} cannot yet tell the canary from the "
                f"champion (improvement {e['low']:.3f} to {e['high']:.3f}, allowed drop {m.canary_max_metric_drop}); "
                "waiting for more labels", "evidence": evidence}
    basis = "realised metric, error rate and latency" if decided_by_labels else "error rate, latency and drift"
    return {"verdict": "promote", "reason": f"canary not worse than the champion on {basis} over "
            f"{evidence['canary_requests']} requests", "evidence": evidence}
