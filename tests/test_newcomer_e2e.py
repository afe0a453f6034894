"""A new dataset from CSV to a served model using only what the docs say: `spec infer` → `spec check --data` →
`spec push` → `drop --wait` → `tollgate url` and `tollgate predict`, on a classification with integer labels the
project does not ship."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import requests

from tests.conftest import wine_frame
from tests.test_chain_e2e import tollgate

pytestmark = pytest.mark.e2e


def test_from_my_own_csv_to_a_served_model(local_cloud, tmp_path):
    frame = wine_frame(900, seed=5)
    first, later = tmp_path / "cellar_2025.csv", tmp_path / "cellar_2026.csv"
    frame.iloc[:700].to_csv(first, index=False)
    frame.iloc[700:].to_csv(later, index=False)
    spec_path = tmp_path / "cellar.yaml"

    inferred = tollgate(local_cloud, "spec", "infer", str(first), "--target", "cultivar", "--name", "cellar",
                        "-o", str(spec_path))
    assert inferred.returncode == 0, inferred.stderr
    text = spec_path.read_text()
    assert "task: classification" in text and "allowed: [0, 1, 2]" in text and "threshold:" in text

    checked = tollgate(local_cloud, "spec", "check", str(spec_path), "--data", str(first))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "valid" in checked.stderr and "700 of 700 rows" in checked.stderr

    pushed = tollgate(local_cloud, "spec", "push", str(spec_path))
    assert pushed.returncode == 0, pushed.stderr
    dropped = tollgate(local_cloud, "drop", str(first), "--dataset", "cellar", "--wait", "--json")
    run = json.loads(dropped.stdout)
    assert dropped.returncode == 0 and run["decision"] == "promote", (run, dropped.stderr)

    record = json.loads(tollgate(local_cloud, "model", "show", "cellar", str(run["model_version"])).stdout)
    assert record["code_version"] == local_cloud.code_version != "dev"   # the commit, as the image tag on GCP
    url = tollgate(local_cloud, "url", "cellar")
    assert url.returncode == 0 and url.stdout.strip().startswith("http"), url.stderr
    status = json.loads(tollgate(local_cloud, "status", "--json").stdout)
    assert status["predictor_urls"]["cellar"] == url.stdout.strip()
    assert requests.get(f"{url.stdout.strip()}/openapi.json", timeout=10).status_code == 200

    out = tmp_path / "predictions.csv"
    predicted = tollgate(local_cloud, "predict", "cellar", str(later), "-o", str(out))
    assert predicted.returncode == 0, predicted.stderr
    answers = pd.read_csv(out)
    assert len(answers) == 200 and {"probability_0", "probability_1", "probability_2"} <= set(answers.columns)
    assert (answers["prediction"] == answers["cultivar"]).mean() > 0.85
    head = "".join(later.read_text().splitlines(keepends=True)[:11])   # the header and 10 rows, on stdin
    as_json = tollgate(local_cloud, "predict", "cellar", "-", "--json", input_text=head)
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["model_version"] == run["model_version"] and body["classes"] == ["0", "1", "2"]
    assert len(body["predictions"]) == 10
    missing = tollgate(local_cloud, "predict", "cellar", "-", input_text="alcohol\n13.2\n")
    assert missing.returncode != 0 and "missing feature column(s)" in missing.stderr
