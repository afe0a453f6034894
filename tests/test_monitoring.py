"""Monitoring without a cloud: the prediction log and labels written as the drain writes them, read
back in SQL by DuckDB (tollgate.warehouse), windows per version, alerts by the spec's thresholds,
canary verdicts, and the spec's `monitoring` section."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest

from tollgate import drift, inputs, monitoring
from tollgate import spec as specs
from tollgate.jobs.monitor import label_records
from tollgate.warehouse import engines, queries, tables

START, END = pd.Timestamp("2026-11-22T10:00:00Z"), pd.Timestamp("2026-11-22T11:00:00Z")
_messages = itertools.count()


def logged(rows: pd.DataFrame, spec, predictions, version, prefix, status=200, latency=2.0) -> pd.DataFrame:
    """The log's records of ``rows`` answered by ``version`` (ten rows a request), spread over the window."""
    frame = pd.DataFrame({
        "request_id": [f"{prefix}-{i // 10}" for i in range(len(rows))], "row": [i % 10 for i in range(len(rows))],
        "time": pd.date_range(START, END, periods=len(rows) + 2)[1:-1], "model_version": version,
        "status": status, "latency_ms": latency, "prediction": np.asarray(predictions, dtype="float64"),
    })
    frame["features"] = rows[list(spec.features)].to_dict("records") if len(rows) else []
    return frame


def failures(status: int, n: int, prefix: str, version: int = 1) -> pd.DataFrame:
    return pd.DataFrame({"request_id": [f"{prefix}-{i}" for i in range(n)], "row": 0,
                         "time": START + pd.Timedelta(1, "s"), "model_version": version, "status": status,
                         "latency_ms": 1.0})


def _pull_of(spec, frame: pd.DataFrame, prefix: str) -> tables.Pull:
    pull = tables.Pull()
    records = [{k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))}
               for r in frame.assign(time=frame["time"].map(pd.Timestamp.isoformat)).to_dict("records")]
    for i in range(0, len(records), 500):
        part = records[i:i + 500]
        pull.add({"schema": tables.PREDICTIONS_SCHEMA, "dataset": spec.name, "records": part}, f"{prefix}{i}",
                 pd.Timestamp(part[0]["time"]).to_pydatetime() + pd.Timedelta(1, "s"))
    return pull


class Log:
    """A warehouse in a folder, written through the drain's own code (``tables.Pull``)."""

    def __init__(self, root, spec) -> None:
        self.root, self.spec = root, spec
        self.warehouse = engines.DuckDB(pafs.LocalFileSystem(), str(root), memory_limit="256MB")

    def _write(self, pull: tables.Pull) -> None:
        for name, _, data, _ in pull.files():
            path = self.root / tables.ROOT / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def predictions(self, frame: pd.DataFrame, redeliver: bool = False) -> "Log":
        """Publish the records 500 a message, each message a second after its last record; with
        ``redeliver``, the message ids are the frame's own (a second call delivers them again)."""
        self._write(_pull_of(self.spec, frame, "p" if redeliver else f"p{next(_messages)}-"))
        return self

    def labels(self, frame: pd.DataFrame, at=END) -> "Log":
        """A labels file as the monitor publishes it."""
        pull = tables.Pull()
        records = label_records(frame, self.spec, pd.Timestamp(at).isoformat(), 0)
        for i in range(0, len(records), 500):
            pull.add({"schema": tables.LABELS_SCHEMA, "dataset": self.spec.name, "records": records[i:i + 500]},
                     f"l{next(_messages)}", pd.Timestamp(at).to_pydatetime())
        self._write(pull)
        return self

    def observe(self, start=START, label_start=START) -> monitoring.Observed:
        return queries.observe(self.warehouse, self.spec, start.to_pydatetime(), END.to_pydatetime(),
                               label_start.to_pydatetime())

    def window(self, references, start=START, label_start=START) -> tuple[monitoring.Observed, dict]:
        observed = self.observe(start, label_start)
        return observed, monitoring.window(observed, self.spec, references, start, END)


@pytest.fixture(scope="module")
def traffic(taxi_clean, taxi_model, taxi_spec):
    """The fitted model's predictions on 1,000 trips, with their true fares as labels."""
    rows = taxi_clean.sample(1000, random_state=3).reset_index(drop=True)
    predictions = taxi_model.predict(rows[list(taxi_spec.features)])
    return rows, predictions


@pytest.fixture(scope="module")
def reference(taxi_clean, taxi_spec):
    return drift.profile(taxi_clean, taxi_spec)


def labels_of(frame: pd.DataFrame, fares) -> pd.DataFrame:
    return pd.DataFrame({"request_id": frame["request_id"], "row": frame["row"], "fare": np.asarray(fares)})


def test_labels_join_by_request_and_row_and_unknown_ids_are_counted(traffic, taxi_spec, tmp_path):
    rows, predictions = traffic
    frame = logged(rows, taxi_spec, predictions, 1, "a")
    labels = labels_of(frame, rows["fare"]).iloc[:600]
    stranger = pd.DataFrame({"request_id": ["nobody-1", "nobody-2"], "row": [0, 0], "fare": [3.0, 4.0]})
    log = Log(tmp_path, taxi_spec).predictions(frame).labels(pd.concat([labels, stranger]),
                                                             at=END - pd.Timedelta(10, "min"))
    observed = log.observe()
    assert observed.unmatched_labels == 2 and len(observed.labelled) == 600
    joined = observed.labelled.sort_values("time")
    assert np.array_equal(joined["label"].to_numpy(), rows["fare"].iloc[:600].to_numpy(dtype="float64"))
    assert np.array_equal(joined["prediction"].to_numpy(), predictions[:600])   # floats round-trip exactly
    # a later label for the same prediction wins (a later file, or a later row of one file)
    log.labels(labels.iloc[:1].assign(fare=99.0), at=END - pd.Timedelta(2, "min"))
    log.labels(pd.concat([labels.iloc[:1].assign(fare=41.0), labels.iloc[:1].assign(fare=42.0)]),
               at=END - pd.Timedelta(1, "min"))
    first = log.observe().labelled.sort_values("time")
    assert first["label"].iloc[0] == 42.0 and len(first) == 600
    # no label file means no labels
    none = Log(tmp_path / "none", taxi_spec).predictions(frame).observe()
    assert none.unmatched_labels == 0 and none.labelled.empty


def test_a_redelivered_message_is_counted_once(traffic, taxi_spec, tmp_path):
    """The drain never reads stored files: a message pulled again is written again (the same file when
    pulled with the same others, another delivery otherwise), and every query counts it once."""
    rows, predictions = traffic
    frame = logged(rows, taxi_spec, predictions, 1, "a")
    log = Log(tmp_path, taxi_spec).predictions(frame, redeliver=True).labels(labels_of(frame, rows["fare"]))
    # the same messages again, this time pulled with another one: a second delivery of each
    again = _pull_of(taxi_spec, frame, "p")
    late = failures(400, 1, "late").assign(time=START.isoformat()).to_dict("records")
    again.add({"schema": tables.PREDICTIONS_SCHEMA, "dataset": taxi_spec.name, "records": late}, "extra",
              (START + pd.Timedelta(2, "s")).to_pydatetime())
    log._write(again)
    files = log.warehouse.files(tables.PREDICTIONS, taxi_spec.name, START.to_pydatetime(),
                                (END + pd.Timedelta(1, "h")).to_pydatetime())
    _, result = log.window({})
    v1 = result["versions"]["1"]
    assert len(files) == 2   # the first delivery and the second
    assert v1["requests"] == 101 and v1["rows"] == 1000 and v1["labels"] == 1000 and v1["client_errors"] == 1


def test_labels_join_on_declared_id_columns(traffic, taxi_spec, tmp_path):
    rows, predictions = traffic
    spec = taxi_spec.model_copy(update={"monitoring": specs.Monitoring(id_columns=("trip_seconds", "trip_miles"))})
    unique = rows.drop_duplicates(subset=["trip_seconds", "trip_miles"]).reset_index(drop=True)
    frame = logged(unique, spec, predictions[unique.index], 1, "a")
    labels = unique[["trip_seconds", "trip_miles"]].astype({"trip_seconds": "int64"}).assign(
        fare=np.arange(len(unique), dtype=float))   # integers in the file, floats in the log: the same trip
    observed = Log(tmp_path, spec).predictions(frame).labels(labels).observe()
    assert observed.unmatched_labels == 0
    assert sorted(observed.labelled["label"]) == list(np.arange(len(unique), dtype=float))


def test_an_empty_window_has_no_versions_and_raises_nothing(taxi_spec, tmp_path):
    _, result = Log(tmp_path, taxi_spec).window({})
    assert result["versions"] == {} and result["requests"] == 0
    assert monitoring.judge(result, taxi_spec, {"version": 1, "canary": None}) == []


def test_realised_metric_and_decay_alert(traffic, taxi_spec, reference, tmp_path):
    rows, predictions = traffic
    frame = logged(rows, taxi_spec, predictions, 1, "a")
    _, result = Log(tmp_path / "good", taxi_spec).predictions(frame).labels(labels_of(frame, rows["fare"])).window(
        {1: reference})
    v1 = result["versions"]["1"]
    assert v1["requests"] == 100 and v1["rows"] == 1000 and v1["labels"] == 1000 and v1["error_rate"] == 0
    r = v1["realised"]
    assert r["metric"] == "r2" and r["low"] <= r["value"] <= r["high"] and r["value"] > 0.8
    assert v1["drift"]["verdict"] == "none", v1["drift"]["message"]   # the same distribution it trained on
    assert monitoring.judge(result, taxi_spec, {"version": 1, "canary": None}) == []

    # fares rise 60% (a tariff change the model never saw): the realised R² falls below the threshold
    _, result = Log(tmp_path / "decayed", taxi_spec).predictions(frame).labels(
        labels_of(frame, rows["fare"] * 1.6)).window({1: reference})
    [alert] = monitoring.judge(result, taxi_spec, {"version": 1, "canary": None})
    assert alert["kind"] == "decay" and alert["retrain"] and alert["threshold"] == taxi_spec.policy.threshold
    assert "below 0.7" in alert["message"] and result["versions"]["1"]["realised"]["high"] < 0.7
    # a version that no longer serves raises nothing
    assert monitoring.judge(result, taxi_spec, {"version": 2, "canary": None}) == []


def test_late_labels_count_over_the_label_window_and_traffic_over_the_window(traffic, taxi_spec, reference,
                                                                             tmp_path):
    """Labels that arrive after their predictions left the traffic window still measure the version;
    a version with labels but no traffic in the window is judged on them."""
    rows, predictions = traffic
    frame = logged(rows, taxi_spec, predictions, 1, "a")
    log = Log(tmp_path, taxi_spec).predictions(frame).labels(labels_of(frame, rows["fare"]))
    later = START + pd.Timedelta(30, "min")
    _, result = log.window({1: reference}, start=later)
    v1 = result["versions"]["1"]
    recent = frame[frame["time"] >= later]
    assert v1["requests"] == recent.loc[recent["row"] == 0, "request_id"].nunique() < 100 and v1["labels"] == 1000
    assert v1["realised"]["rows"] == 1000
    _, quiet = log.window({1: reference}, start=END - pd.Timedelta(1, "s"))
    assert quiet["versions"]["1"]["requests"] == 0 and quiet["versions"]["1"]["realised"]["rows"] == 1000


def test_too_few_labels_give_no_verdict(traffic, taxi_spec, reference, tmp_path):
    rows, predictions = traffic
    frame = logged(rows, taxi_spec, predictions, 1, "a")
    _, result = Log(tmp_path, taxi_spec).predictions(frame).labels(
        labels_of(frame, rows["fare"] * 3).iloc[:10]).window({1: reference})
    assert result["versions"]["1"]["labels"] == 10 and result["versions"]["1"]["realised"] is None
    assert monitoring.judge(result, taxi_spec, {"version": 1, "canary": None}) == []


def test_error_rate_and_latency_slos(traffic, taxi_spec, reference, tmp_path):
    rows, predictions = traffic
    ok = logged(rows, taxi_spec, predictions, 1, "a", latency=1500.0)
    frame = pd.concat([ok, failures(500, 10, "crash"), failures(400, 30, "bad")], ignore_index=True)
    _, result = Log(tmp_path, taxi_spec).predictions(frame).window({1: reference})
    v1 = result["versions"]["1"]
    assert v1["requests"] == 140 and v1["errors"] == 10 and v1["client_errors"] == 30 and v1["rows"] == 1000
    assert v1["error_rate"] == 10 / 140
    alerts = monitoring.judge(result, taxi_spec, {"version": 1, "canary": None})
    assert {a["kind"] for a in alerts} == {"slo_error_rate", "slo_latency"}
    assert "failed with a server error" in next(a for a in alerts if a["kind"] == "slo_error_rate")["message"]


def canary_window(traffic, spec, reference, canary_predictions, root, n_canary=300, extra=None, latency=None):
    """Stable v1 and canary v2 on the same traffic, every prediction labelled; (observed, result)."""
    rows, predictions = traffic
    champion = logged(rows.iloc[n_canary:], spec, predictions[n_canary:], 1, "s")
    canary = logged(rows.iloc[:n_canary], spec, canary_predictions[:n_canary], 2, "c")
    if latency:
        champion, canary = champion.assign(latency_ms=latency[1]), canary.assign(latency_ms=latency[0])
    log = Log(root, spec).predictions(pd.concat([champion, canary] + ([extra] if extra is not None else []),
                                                ignore_index=True))
    log.labels(pd.concat([labels_of(champion, rows["fare"].iloc[n_canary:]),
                          labels_of(canary, rows["fare"].iloc[:n_canary])]))
    return log.window({1: reference, 2: reference})


def test_a_callers_bad_requests_never_breach_the_slo_or_roll_back_a_canary(traffic, taxi_spec, reference, tmp_path):
    """Anyone who may call the predictor can send 4xx-provoking requests; they are reported, not counted."""
    rows, predictions = traffic
    ok = logged(rows, taxi_spec, predictions, 1, "a")
    _, result = Log(tmp_path / "junk", taxi_spec).predictions(
        pd.concat([ok, failures(400, 500, "junk")], ignore_index=True)).window({1: reference})
    assert result["versions"]["1"]["client_errors"] == 500 and result["versions"]["1"]["error_rate"] == 0
    assert monitoring.judge(result, taxi_spec, {"version": 1, "canary": None}) == []

    spec = taxi_spec.model_copy(update={"monitoring": specs.Monitoring(canary_min_requests=20)})
    observed, result = canary_window(traffic, spec, reference, predictions, tmp_path / "flood",
                                     extra=failures(422, 400, "flood", version=2))
    verdict = monitoring.canary_verdict(observed.labelled, spec, result, champion=1, canary=2)
    assert verdict["verdict"] == "promote" and result["versions"]["2"]["client_errors"] == 400, verdict


def test_severe_input_drift_asks_for_retraining(traffic, taxi_spec, reference, tmp_path):
    rows, predictions = traffic
    shifted = rows.assign(trip_seconds=rows["trip_seconds"] / 60)   # an upstream export switched to minutes
    _, result = Log(tmp_path, taxi_spec).predictions(logged(shifted, taxi_spec, predictions, 1, "a")).window(
        {1: reference})
    assert result["versions"]["1"]["drift"]["verdict"] == "severe"
    [alert] = monitoring.judge(result, taxi_spec, {"version": 1, "canary": None})
    assert alert["kind"] == "drift" and alert["retrain"] and "trip_seconds" in alert["message"]


def test_a_worse_canary_is_rolled_back_and_a_good_one_promoted(traffic, taxi_spec, reference, tmp_path):
    thresholds = specs.Monitoring(canary_min_requests=20, canary_max_metric_drop=0.02)
    spec = taxi_spec.model_copy(update={"monitoring": thresholds})
    rows, predictions = traffic
    degraded = np.full(len(predictions), float(np.mean(predictions)))   # predicts the mean fare for every trip
    observed, result = canary_window(traffic, spec, reference, degraded, tmp_path / "worse")
    verdict = monitoring.canary_verdict(observed.labelled, spec, result, champion=1, canary=2)
    assert verdict["verdict"] == "rollback" and "realised r2 worse" in verdict["reason"], verdict
    assert verdict["evidence"]["metric"]["high"] < -0.02

    observed, result = canary_window(traffic, spec, reference, predictions, tmp_path / "good")
    verdict = monitoring.canary_verdict(observed.labelled, spec, result, champion=1, canary=2)
    assert verdict["verdict"] == "promote", verdict
    assert verdict["evidence"]["metric"]["low"] >= -0.02 and "realised metric" in verdict["reason"]


def test_a_slow_canary_is_rolled_back_but_sub_millisecond_noise_is_not(traffic, taxi_spec, reference, tmp_path):
    spec = taxi_spec.model_copy(update={"monitoring": specs.Monitoring(canary_min_requests=20)})
    rows, predictions = traffic
    for canary_ms, champion_ms, slow in ((4.0, 1.0, False), (120.0, 2.0, True)):
        observed, result = canary_window(traffic, spec, reference, predictions, tmp_path / str(canary_ms),
                                         latency=(canary_ms, champion_ms))
        verdict = monitoring.canary_verdict(observed.labelled, spec, result, champion=1, canary=2)
        assert verdict["evidence"]["p99_ms"] == {"canary": canary_ms, "champion": champion_ms}
        assert (verdict["verdict"] == "rollback" and "p99 latency 120 ms" in verdict["reason"]) == slow, verdict


def test_a_canary_waits_for_enough_traffic(traffic, taxi_spec, reference, tmp_path):
    rows, predictions = traffic
    observed, result = canary_window(traffic, taxi_spec, reference, predictions, tmp_path, n_canary=100)
    verdict = monitoring.canary_verdict(observed.labelled, taxi_spec, result, champion=1, canary=2)
    assert verdict["verdict"] == "wait" and "needs 200 requests" in verdict["reason"]


def test_the_monitoring_section_of_a_spec_is_checked(taxi_spec):
    raw = {**taxi_spec.raw, "monitoring": {"window_minutes": 15, "canary_min_requests": 50, "decay_below": 0.6}}
    spec = specs.from_dict(raw)
    assert spec.monitoring.window_minutes == 15 and spec.monitoring.canary_min_requests == 50
    assert spec.monitoring.decay_below == 0.6 and spec.monitoring.retrain_cooldown_hours == 24
    with pytest.raises(specs.SpecError, match="unknown key 'window_minute'; did you mean 'window_minutes'"):
        specs.from_dict({**taxi_spec.raw, "monitoring": {"window_minute": 5}})
    with pytest.raises(specs.SpecError, match="window_minutes: Input should be greater than 0"):
        specs.from_dict({**taxi_spec.raw, "monitoring": {"window_minutes": 0}})
    with pytest.raises(specs.SpecError,
                       match=r"monitoring.id_columns\[0\]: 'trip_id' is neither a feature nor a column of role id"):
        specs.from_dict({**taxi_spec.raw, "monitoring": {"id_columns": ["trip_id"]}})
    odd = {**taxi_spec.raw, "columns": {**taxi_spec.raw["columns"], "a') OR ('1": {"type": "float"}},
           "features": {**taxi_spec.raw["features"],
                         "numeric": [*taxi_spec.raw["features"]["numeric"], "a') OR ('1"]}}
    with pytest.raises(specs.SpecError, match="id columns must be named with letters"):
        specs.from_dict({**odd, "monitoring": {"id_columns": ["a') OR ('1"]}})


def test_feedback_bodies_are_checked(taxi_spec):
    ids = inputs.RequestIds(b"k" * 32)
    r1, r2 = ids.issue(), ids.issue()
    assert inputs.feedback_labels({"request_id": r1, "label": 12.5}, taxi_spec, None, ids) == [(r1, 0, 12.5)]
    assert inputs.feedback_labels({"labels": [{"request_id": r1, "row": 2, "label": 3}]}, taxi_spec, None, ids) == [
        (r1, 2, 3.0)]
    with pytest.raises(inputs.BadRequest) as bad:
        inputs.feedback_labels({"labels": [{"row": -1, "label": "x"}, {"request_id": r2, "label": None}]},
                                taxi_spec, None, ids)
    assert bad.value.problems == [
        "labels[0].request_id: a non-empty string (the X-Request-Id of the prediction) is required",
        "labels[0].row: -1 is not a row index of a request (an integer from 0 to 999)",
        "labels[0].label: 'x' is not a finite number", "labels[1].label: None is not a finite number"]
    with pytest.raises(inputs.BadRequest, match="at most 2"):
        inputs.feedback_labels({"labels": [{"request_id": r1, "label": 1}] * 3}, taxi_spec, None, ids, max_labels=2)


def test_feedback_only_for_request_ids_the_predictor_issued_with_bounded_rows_and_labels(taxi_spec):
    ids, other = inputs.RequestIds(b"k" * 32), inputs.RequestIds(b"another deployment key")
    mine = ids.issue()
    nonce = mine.split(".")[0]
    forged = [other.issue(), nonce + "." + "0" * 32, "req-1", mine + "x", "a" * 200, mine.replace(".", "")]
    with pytest.raises(inputs.BadRequest) as bad:
        inputs.feedback_labels({"labels": [{"request_id": r, "label": 10.0} for r in forged]}, taxi_spec, None, ids)
    assert len(bad.value.problems) == len(forged)
    assert all("is not a request id this predictor issued" in p for p in bad.value.problems)
    with pytest.raises(inputs.BadRequest) as bad:
        inputs.feedback_labels({"labels": [{"request_id": mine, "row": 1000, "label": 10.0},
                                            {"request_id": mine, "row": 0, "label": 1e300},
                                            {"request_id": mine, "row": 0, "label": -5.0}]}, taxi_spec, None, ids)
    assert bad.value.problems == [
        "labels[0].row: 1000 is not a row index of a request (an integer from 0 to 999)",
        "labels[1].label: 1e+300 is outside the range [0, 1000] the spec declares for fare",
        "labels[2].label: -5.0 is outside the range [0, 1000] the spec declares for fare"]
    with pytest.raises(inputs.BadRequest, match=r"\{'a': 1\} is not one of the classes"):
        inputs.feedback_labels({"request_id": mine, "label": {"a": 1}},
                                taxi_spec.model_copy(update={"task": "classification"}), ["x"], ids)


@pytest.fixture(scope="module")
def attributed(taxi_clean, taxi_model, taxi_spec, reference):
    """The training profile with the model's attributions on its training rows, as the trainer stores it."""
    from tollgate import explain

    return {**reference, "attributions": explain.summarise(taxi_model, taxi_spec, taxi_clean,
                                                           taxi_spec.monitoring.attribution_rows, seed=42)}


def _explained(rows, model, spec):
    from tollgate import explain

    return explain.summarise(model, spec, rows, spec.monitoring.attribution_rows)


def test_distances_and_durations_joined_to_other_trips_move_the_attributions_not_the_inputs(
        traffic, taxi_model, taxi_spec, attributed, tmp_path):
    """The same trips after a join on the wrong key upstream: each one's distance and duration come from two other
    trips. Every input's own distribution is unchanged, so the drift tests see nothing; what the model relies on
    moves, and the attributions say so."""
    rows, predictions = traffic
    rng = np.random.default_rng(7)
    apart = rows.assign(trip_miles=rows["trip_miles"].to_numpy()[rng.permutation(len(rows))],
                        trip_seconds=rows["trip_seconds"].to_numpy()[rng.permutation(len(rows))])
    spec = specs.from_dict({**taxi_spec.raw, "monitoring": {**taxi_spec.raw.get("monitoring", {}),
                                                            "attribution_drift": 0.03}})
    results = {}
    for name, live in (("as trained", rows), ("apart", apart)):
        log = Log(tmp_path / name, spec).predictions(logged(live, spec, taxi_model.predict(live), 1, name))
        observed = log.observe()
        observed.attributions[1] = _explained(observed.samples[1], taxi_model, spec)
        results[name] = monitoring.window(observed, spec, {1: attributed}, START, END)["versions"]["1"]
    kept, moved = results["as trained"]["attribution_drift"], results["apart"]["attribution_drift"]
    assert results["apart"]["drift"]["verdict"] == results["as trained"]["drift"]["verdict"] == "none"
    assert kept["verdict"] == "none" and kept["max_shift"] < 0.015
    assert moved["verdict"] == "drift" and moved["max_shift"] > 2 * kept["max_shift"]
    assert [f["feature"] for f in moved["features"] if f["status"] == "drift"] == ["trip_seconds"]
    assert abs(sum(f["live_share"] for f in moved["features"]) - 1) < 1e-9
    [alert] = monitoring.judge({"versions": {"1": results["apart"]}}, spec, {"version": 1, "canary": None})
    assert alert["kind"] == "attribution_drift" and not alert["retrain"] and "trip_seconds" in alert["message"]
    assert alert["threshold"] == 0.03 and alert["value"] == moved["max_shift"]


def test_attribution_drift_needs_a_reference_enough_rows_and_a_threshold(taxi_spec, taxi_clean, taxi_model,
                                                                         attributed):
    live = _explained(taxi_clean.sample(300, random_state=1), taxi_model, taxi_spec)
    assert monitoring.attribution_drift(attributed["attributions"], live, taxi_spec)["reason"] is None
    few = _explained(taxi_clean.sample(50, random_state=1), taxi_model, taxi_spec)
    assert monitoring.attribution_drift(attributed["attributions"], few, taxi_spec)["reason"] == "not_enough_data"
    assert monitoring.attribution_drift(None, live, taxi_spec)["reason"] == "no_reference"   # an older version
    unexplained = {"method": None, "rows": 0, "reason": "ridge has no exact attribution method here"}
    said = monitoring.attribution_drift(attributed["attributions"], unexplained, taxi_spec)
    assert said["reason"] == "not_explained" and "ridge" in said["message"]
    off = specs.from_dict({**taxi_spec.raw, "monitoring": {"attribution_drift": None}})
    assert monitoring.attribution_drift(attributed["attributions"], live, off)["reason"] == "disabled"
    with pytest.raises(specs.SpecError, match="attribution_drift"):
        specs.from_dict({**taxi_spec.raw, "monitoring": {"attribution_drift": 1.5}})


def test_ndcg_is_one_for_the_same_order_and_lower_when_the_top_features_swap():
    ref = np.array([0.6, 0.3, 0.1])
    assert monitoring.ndcg(ref, ref * 2) == pytest.approx(1.0)
    assert monitoring.ndcg(ref, np.array([0.1, 0.3, 0.6])) < monitoring.ndcg(ref, np.array([0.3, 0.6, 0.1])) < 1
