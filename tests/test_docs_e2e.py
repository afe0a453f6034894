"""The docs' code blocks titled "local cloud" run, as written, against the test session's local cloud: the
quickstart takes a CSV to a served model, so that page cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.test_chain_e2e import tollgate
from tests.test_docs import local_cloud_blocks
from tollgate.topology import ROOT

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("page", ["quickstart.md"])
def test_the_pages_local_cloud_blocks_run_as_written(page, local_cloud, tmp_path):
    blocks = local_cloud_blocks(ROOT / "docs" / page)
    assert len(blocks) >= 4
    (tmp_path / "examples").symlink_to(ROOT / "examples")   # the reader is in the repository
    env = {**os.environ, **local_cloud.env(), "TOLLGATE_HOME": str(local_cloud.home),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    for language, code in blocks:
        command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{language} block failed:\n{code}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    answers = pd.read_csv(tmp_path / "predictions.csv")
    assert len(answers) == 20 and "prediction" in answers and "probability_2" in answers
    status = json.loads(tollgate(local_cloud, "status", "--json").stdout)
    [wine] = [d for d in status["datasets"] if d["dataset"] == "wine"]
    assert wine["champion"]["version"] == 1 and status["predictor_urls"]["wine"]
    from tollgate import spec as specs  # the table with a timestamp and an identifier, end to end

    weather = specs.load(tmp_path / "weather.yaml")
    assert weather.columns["time_hour"].type == "datetime" and weather.columns["reading_id"].role == "id"
    assert "time_hour" in weather.feature_lists.datetime and "reading_id" not in weather.features
    served = pd.read_csv(tmp_path / "weather-predictions.csv")
    assert len(served) == 50 and served["prediction"].between(-20, 120).all()
    assert (served["prediction"] - served["temp"]).abs().mean() < 5   # degrees Fahrenheit
