"""What `tollgate` commands print as JSON (tollgate.views), from plain records: no cloud, no CLI process."""

from __future__ import annotations

import datetime as dt

from tollgate import views

AT = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)
EVALUATED = {
    "run_id": "run-7", "dataset": "taxi", "status": "decided", "decision": "promote", "reason": "better",
    "model_version": 4, "challenger_version": 4, "evaluated_against": 3,
    "evaluation": {"metric": "r2", "challenger": {"metrics": {"r2": 0.93}}, "champion": {"metrics": {"r2": 0.91}},
                   "difference": {"improvement": 0.02, "low": 0.01, "high": 0.03, "confidence": 0.95}},
    "validation": {"rows_in": 1000, "rows_out": 990}, "drift": {"verdict": "warn"},
    "created_at": AT, "updated_at": AT, "history": [{"status": "received", "at": AT}],
    "executions": {"trainer": "projects/p/locations/r/jobs/trainer/executions/trainer-1"},
}


def test_run_summary_picks_the_scores_on_the_held_out_rows():
    s = views.run_summary(EVALUATED)
    assert (s["metric"], s["challenger_metric"], s["champion_metric"]) == ("r2", 0.93, 0.91)
    assert (s["rows_in"], s["rows_out"], s["drift"], s["champion_version"]) == (1000, 990, "warn", 3)
    assert s["error"] is None and s["recoveries"] == []
    detail = views.run_detail(EVALUATED)
    assert detail["executions"] == EVALUATED["executions"] and detail["history"] == EVALUATED["history"]


def test_a_failed_runs_error_names_its_step_whatever_it_was_stored_as():
    old = {"run_id": "run-8", "status": "failed", "error": {"stage": "evaluate", "message": "altered"}}
    new = {"run_id": "run-9", "status": "failed", "error": {"step": "trainer", "message": "OOM", "execution": "e"}}
    assert views.run_summary(old)["error"] == {"step": "evaluator", "message": "altered"}
    assert views.run_summary(new)["error"] == {"step": "trainer", "message": "OOM", "execution": "e"}


def test_a_queued_run_says_behind_whom_and_a_superseded_run_by_whom():
    queued = {"run_id": "run-2", "status": "queued", "queued_behind": "run-1"}
    assert views.run_summary(queued)["queued_behind"] == "run-1"
    # once it trains or ends, the run it waited for is history, not its state
    assert views.run_summary({**queued, "status": "superseded", "superseded_by": "run-3"})["queued_behind"] is None
    assert views.run_summary({**queued, "status": "superseded", "superseded_by": "run-3"})["superseded_by"] == "run-3"
    # `--wait` followed it to the run that trained on its batch
    assert views.run_summary({**EVALUATED, "followed_from": "run-2"})["followed_from"] == "run-2"


def test_model_rows_give_each_version_its_role():
    ds = {"champion_version": 3, "previous_version": 2, "canary": {"version": 4, "percent": 10}}
    versions = [{"version": v, "run_id": f"run-{v}", "metrics": {"cv": {"score": 0.9}}, "training_window": [1, 2]}
                for v in (1, 2, 3, 4, 5)]
    runs = {"run-4": EVALUATED, "run-5": {"status": "evaluating"}}
    rows = views.model_rows(ds, versions, runs)
    assert [r["role"] for r in rows] == ["archived", "previous", "champion", "canary", "challenger"]
    assert rows[3]["value"] == 0.93 and rows[0]["batches"] == 2 and rows[0]["cv"] == {"score": 0.9}
    assert views.model_record({"version": 3, "spec": {"big": "yaml"}, "sha256": "x"}, "champion") == {
        "version": 3, "sha256": "x", "role": "champion"}


def test_serving_text_and_history_rows():
    assert views.serving_text(None) == "nothing"
    assert views.serving_text({"version": 3, "canary": None}) == "v3"
    assert views.serving_text({"version": 3, "canary": {"version": 4, "percent": 10}}) == "v3 90% + canary v4 10%"
    [row] = views.history_rows([{"at": AT, "ledger_id": "L1", "verdict": "keep", "actor": "auto", "reason": "r",
                                 "serving_after": {"version": 3, "canary": None}}])
    assert (row["kind"], row["event"], row["serving_after"]) == ("decision", "keep", {"version": 3, "canary": None})


def test_status_lists_each_dataset_with_its_own_predictor_url():
    first = views.dataset_status({"name": "breast_cancer", "champion_version": 1}, EVALUATED, "http://bc", 0)
    second = views.dataset_status({"name": "taxi", "champion_version": 4, "canary": None}, EVALUATED, "http://t", 2)
    payload = views.status("p", "b", [first, second], [EVALUATED])
    assert payload["bucket"] == "gs://b" and [d["predictor_url"] for d in payload["datasets"]] == ["http://bc",
                                                                                                   "http://t"]
    assert payload["predictor_urls"] == {"breast_cancer": "http://bc", "taxi": "http://t"}
    assert "predictor_url" not in payload   # was the first dataset's: taxi rows went to the wrong model
    assert second["champion"] == {"version": 4, "metric": "r2", "value": 0.93} and second["pending_reviews"] == 2
    assert payload["recent_runs"][0]["run_id"] == "run-7"


def test_window_actions_in_full_and_brief():
    window = {"actions": {"alerts": [{"kind": "decay", "message": "R² fell"}], "retraining": "retrain-1",
                          "canary": {"verdict": "rollback", "reason": "worse"}}}
    assert views.window_actions(window) == ["alert decay: R² fell", "retraining requested: run retrain-1",
                                            "canary rollback: worse"]
    assert views.window_actions(window, brief=True) == ["decay", "retrain retrain-1", "canary rollback"]
    assert views.window_actions({}) == []


def test_a_recovery_in_words():
    said = views.recovery({"at": AT, "by": "reconciler", "action": "relaunched", "job": "trainer",
                           "why": "its execution trainer-1 failed"})
    assert said == ("2026-11-30 12:00:00 UTC by the reconciler: relaunched the trainer step, because its execution "
                    "trainer-1 failed")
    assert "the run waiting in validated" in views.recovery({"waiting": "validated", "action": "republished"})


def test_python_m_tollgate_offers_every_command_and_the_version():
    import os
    import subprocess
    import sys

    from tollgate.cli import main

    listed = subprocess.run([sys.executable, "-m", "tollgate", "--help"], capture_output=True, text=True,
                            check=True, env={**os.environ, "COLUMNS": "200"}).stdout
    commands = listed.split("Commands:", 1)[1]
    assert all(f"  {name} " in commands for name in main.commands), sorted(main.commands)
    assert {"monitor", "alerts", "url", "predict", "spec"} <= set(main.commands)
    version = subprocess.run([sys.executable, "-m", "tollgate", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("tollgate 0.")
    spec_help = subprocess.run([sys.executable, "-m", "tollgate", "spec", "--help"], capture_output=True, text=True)
    assert all(f"  {c} " in spec_help.stdout for c in ("check", "infer", "push"))


def test_without_a_cloud_the_client_and_the_cli_say_what_to_start(tmp_path, monkeypatch):
    import subprocess
    import sys

    import pytest

    from tollgate import Client, ClientError

    monkeypatch.setenv("TOLLGATE_HOME", str(tmp_path / "none"))
    for name in ("GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "TOLLGATE_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ClientError, match="no local cloud is running"):
        Client().runs()
    done = subprocess.run([sys.executable, "-m", "tollgate", "models", "wine"], capture_output=True, text=True)
    assert done.returncode == 1 and "no local cloud is running" in done.stderr and "Traceback" not in done.stderr


def test_two_runs_side_by_side_name_every_field_once_and_what_differs():
    a = {"run_id": "r1", "dataset": "d", "status": "decided", "decision": "promote", "challenger_version": 1,
         "curated": {"sha256": "aa"}, "evaluation": {"holdout_rows": 30, "challenger": {"metrics": {"r2": 0.8}}}}
    b = {**a, "run_id": "r2", "decision": "keep", "challenger_version": 2, "curated": {"sha256": "bb"},
         "review": {"status": "approved"}, "evaluation": {"holdout_rows": 30, "challenger": {"metrics": {"r2": 0.7}}}}
    compared = views.compare_runs(a, b, {"estimator": "linear", "params": {"alpha": 1}},
                                  {"estimator": "linear", "params": {"alpha": 2}})
    fields = [r["field"] for r in compared["rows"]]
    assert len(fields) == len(set(fields)) and {"held-out r2", "params", "data sha256"} <= set(fields)
    assert set(compared["differences"]) >= {"decision", "held-out r2", "params", "data sha256",
                                            "challenger version"}
    assert "estimator" not in compared["differences"] and "holdout rows" not in compared["differences"]
    assert {r["field"]: r["b"] for r in compared["rows"]}["decision"] == "review → approved → keep"


def test_times_from_an_api_answer_read_to_the_second():
    assert views.when("2026-12-02T02:41:55.123456+00:00") == "2026-12-02 02:41:55"
    assert views.when("2026-12-02T02:41:55Z") == "2026-12-02 02:41:55" and views.when("soon") == "soon"
