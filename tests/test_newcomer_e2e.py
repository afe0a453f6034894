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
    assert "valid" in checked.stdout and "700 of 700 rows" in checked.stdout   # the verdict with its table

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


def test_the_quickstart_on_a_bundled_scikit_learn_data_set_serves_or_says_which_review_to_decide(local_cloud,
                                                                                                   tmp_path):
    """Diabetes, as a new user wrote it: its threshold went unmet (review), `drop --wait` exited 0 anyway and
    `predict` said only "no predictor yet"; now the inferred threshold is one a first model meets, and a review
    exits 2 naming it. The same file dropped again is a duplicate: its rows are not trained on twice."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    path = tmp_path / "diabetes.csv"
    frame.to_csv(path, index=False)
    spec_path = tmp_path / "diabetes.yaml"
    assert tollgate(local_cloud, "spec", "infer", str(path), "--target", "target", "-o", str(spec_path)
                    ).returncode == 0
    assert "target: {type: float" in spec_path.read_text()   # written as 151.0 in the file: a float
    dry = tollgate(local_cloud, "spec", "check", str(spec_path), "--data", str(path), "--train")
    assert dry.returncode in (0, 2) and "decision:" in dry.stdout, dry.stdout + dry.stderr
    assert tollgate(local_cloud, "spec", "push", str(spec_path)).returncode == 0
    dropped = tollgate(local_cloud, "drop", str(path), "--dataset", "diabetes", "--wait", "--json")
    run = json.loads(dropped.stdout)
    if run["decision"] == "review":
        assert dropped.returncode == 2 and f"tollgate review approve {run['run_id']}" in dropped.stderr
        refused = tollgate(local_cloud, "predict", "diabetes", str(path))
        assert refused.returncode != 0 and f"run {run['run_id']} waits for a review" in refused.stderr
    else:
        assert dropped.returncode == 0 and run["decision"] == "promote", (run, dropped.stderr)
    again = tollgate(local_cloud, "drop", str(path), "--dataset", "diabetes", "--name", "diabetes-again.csv",
                     "--wait", "--json")
    duplicate = json.loads(again.stdout)
    assert again.returncode == 0 and duplicate["status"] == "duplicate", (duplicate, again.stderr)
    assert duplicate["duplicate_of"] == run["run_id"] and "nothing new to train on" in duplicate["message"]
