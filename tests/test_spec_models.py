"""The spec as typed models: each refusal names its YAML path and line and says what is expected."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest

from tollgate import contract, validation
from tollgate import spec as specs

SPEC = textwrap.dedent("""\
    name: species
    task: classification
    target: species
    columns:
      species: {type: int, nullable: false, allowed: [0, 1, 2], on_fail: reject}
      length: {type: float, min: 0, max: 100}
      colour: {type: string, allowed: [red, green]}
    features:
      numeric: [length]
      categorical: [colour]
    evaluation:
      primary_metric: roc_auc
    policy:
      threshold: 0.5
    """)


def refusal(text: str) -> str:
    with pytest.raises(specs.SpecError) as refused:
        specs.loads(text)
    return str(refused.value)


def test_integer_labels_declared_with_allowed_pass_validation():
    """`allowed: [0, 1, 2]` on an int column once rejected every row (the values were compared as text)."""
    spec = specs.loads(SPEC)
    assert spec.columns["species"].allowed == (0, 1, 2)
    frame = pd.DataFrame({"species": [0, 1, 2, 1], "length": [1.0, 2.0, 3.0, 4.0],
                          "colour": ["red", "green", "red", "green"]})
    assert contract.contract_schema(spec).validate(frame, lazy=True) is not None
    bad = frame.assign(species=[0, 1, 2, 3])
    with pytest.raises(Exception, match=r"are not among the allowed values \(0, 1, 2\)"):
        contract.contract_schema(spec).validate(bad, lazy=True)


def test_a_mistyped_key_is_refused_with_a_suggestion_and_its_line():
    text = SPEC.replace("evaluation:", "evalution:")
    assert "evalution (line 11): unknown key 'evalution'; did you mean 'evaluation'?" in refusal(text)
    text = SPEC.replace("primary_metric:", "primary_metrc:")
    assert ("evaluation.primary_metrc (line 12): unknown key 'primary_metrc'; did you mean 'primary_metric'?"
            in refusal(text))


def test_every_problem_is_listed_at_once():
    text = SPEC.replace("evaluation:", "evalution:").replace("min: 0, max: 100", "min: 100, max: 0")
    message = refusal(text)
    assert message.startswith("spec species: 2 problems:")
    assert "columns.length (line 6): min (100) is greater than max (0)" in message


@pytest.mark.parametrize(("change", "expected"), [
    (("primary_metric: roc_auc", "primary_metric: r2"),
     "evaluation.primary_metric (line 12): r2 is not a classification metric; use one of accuracy, f1, roc_auc, "
     "log_loss"),
    (("allowed: [0, 1, 2]", "allowed: [0, one, 2]"),
     "columns.species.allowed (line 5): allowed value 'one' is not of the column's type int"),
    (("allowed: [0, 1, 2]", "allowed: [1]"), "columns.species.allowed (line 5): a classification target needs at "
                                             "least two classes"),
    (("{type: string, allowed: [red, green]}", "{type: string, min: 1}"),
     "columns.colour (line 7): min and max apply to numeric and datetime columns; this one is of type string"),
    (("numeric: [length]", "numeric: [lenght]"),
     "features.numeric[0] (line 9): the feature 'lenght' is not declared under columns; did you mean 'length'?"),
    (("numeric: [length]", "numeric: [species]"),
     "features.numeric[0] (line 9): the target 'species' cannot also be a feature"),
    (("categorical: [colour]", "categorical: [colour, length]"),
     "features (line 8): length listed in more than one feature group"),
    (("threshold: 0.5", "threshold: high"),
     "policy.threshold (line 14): Input should be a valid number, unable to parse string as a number (got 'high')"),
    (("task: classification", "task: clasification"),
     "task (line 2): Input should be 'regression' or 'classification' (got 'clasification')"),
    (("policy:\n  threshold: 0.5\n", "model: {estimator: svm, params: {C: 1}}\n"), "policy (line 1): 'policy' is "
                                                                                   "required"),
    (("numeric: [length]", "numeric: [colour]\n  categorical: []"),
     "features.numeric[0] (line 9): 'colour' is a string column; list it under features.categorical"),
])
def test_each_refusal_names_the_yaml_path_and_line(change, expected):
    assert expected in refusal(SPEC.replace(*change))


def test_regression_refusals():
    regression = SPEC.replace("task: classification", "task: regression").replace("roc_auc", "rmse")
    assert "target (line 3): a regression target must be a float or int column" in refusal(
        regression.replace("{type: int, nullable: false, allowed: [0, 1, 2], on_fail: reject}", "{type: string}"))
    assert "model.estimator (line 15): naive_bayes is for classification only, not regression" in refusal(
        regression + "model: {estimator: naive_bayes}\n")
    assert "model.estimator (line 15): Input should be" in refusal(regression + "model: {estimator: xgboost}\n")


def test_a_rule_is_checked_against_the_columns_with_its_line():
    text = SPEC + "rules:\n  - {name: positive, expr: 'lenght > 0'}\n"
    assert "rules[0].expr (line 16): rule 'positive': `lenght` is not a declared column" in refusal(text)
    spec = specs.loads(SPEC + "rules:\n  - {name: positive, expr: 'length  >  0'}\n")
    assert spec.rules[0].expr == "length  >  0"   # the spec as written: loading parses its rules, never rewrites them
    assert [e.columns for e in spec.parsed_rules] == [("length",)]
    assert spec.parsed_rules[0].holds(pd.DataFrame({"length": [1.0, -1.0]})).tolist() == [True, False]


def test_each_concept_has_one_name_and_derived_values_follow_the_sections():
    """The sections are read where they are (spec.model.estimator, spec.training.max_rows); only values derived
    from several fields are properties."""
    for alias in ("numeric_features", "estimator", "model_params", "training_max_rows", "holdout_fraction",
                  "bootstrap_resamples", "slices", "search"):
        assert not hasattr(specs.DatasetSpec, alias), alias
    spec = specs.loads(SPEC + "training: {max_rows: 500, seed: 3}\nmodel: {estimator: knn, params: "
                              "{n_neighbors: 7}}\n")
    assert spec.features == ("length", "colour") and spec.primary_metric == "roc_auc"
    assert spec.training.max_rows == 500 and spec.training.seed == 3 and spec.model.estimator == "knn"
    assert dict(spec.model.params) == {"n_neighbors": 7} and spec.extra_columns == "reject"
    assert specs.replace(spec, training__max_rows=9).training.max_rows == 9
    defaults = specs.loads(SPEC.replace("evaluation:\n  primary_metric: roc_auc\n", ""))
    assert defaults.primary_metric == "accuracy" and defaults.drift.psi.warn == 0.1


def test_a_spec_that_is_not_a_mapping_says_what_one_looks_like():
    with pytest.raises(specs.SpecError, match="a dataset spec is a YAML mapping"):
        specs.loads("- just\n- a list\n")
    with pytest.raises(specs.SpecError, match="not valid YAML"):
        specs.loads("name: [unclosed\n")


def test_the_shipped_specs_load():
    from tollgate.topology import ROOT

    for path in sorted((ROOT / "datasets").glob("*.yaml")):
        assert specs.load(path).name == path.stem
    assert np.isclose(specs.load(ROOT / "datasets" / "chicago_taxi.yaml").columns["fare"].outliers.k, 5)


def test_extra_columns_are_rejected_by_default_and_left_out_when_ignored(tmp_path):
    import io

    csv = b"species,length,colour,notes\n0,1.5,red,first\n1,2.5,green,second\n2,3.5,red,\n"
    rejected = validation.validate_file(io.BytesIO(csv), specs.loads(SPEC), tmp_path / "a.parquet", size=len(csv))
    assert rejected.status == "rejected" and rejected.reason == "unexpected_columns"
    assert "unexpected column(s): notes" in rejected.message and "extra_columns: ignore" in rejected.message
    spec = specs.loads(SPEC + "extra_columns: ignore\n")
    kept = validation.validate_file(io.BytesIO(csv), spec, tmp_path / "b.parquet", size=len(csv))
    assert kept.status == "valid" and kept.rows_out == 3, kept.message
    assert pd.read_parquet(tmp_path / "b.parquet").columns.tolist() == ["colour", "length", "species"]   # by name
    assert [c.message for c in kept.checks if c.name == "ignored_columns"] == [
        "not declared in the spec, left out (extra_columns: ignore): notes"]
    assert "extra_columns (line 15): Input should be 'reject' or 'ignore'" in refusal(SPEC + "extra_columns: keep\n")


def test_spec_check_needs_no_cloud_and_exits_1_on_a_problem_or_a_rejected_file(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tollgate.cli import main

    monkeypatch.setenv("TOLLGATE_HOME", str(tmp_path / "no-cloud"))
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    good, bad, data = tmp_path / "good.yaml", tmp_path / "bad.yaml", tmp_path / "batch.csv"
    good.write_text(SPEC)
    bad.write_text(SPEC.replace("primary_metric:", "primary_metrc:"))
    data.write_text("species,length,colour\n" + "0,1.5,red\n1,2.5,green\n" * 3 + "2,3.5,blue\n")
    runner = CliRunner()
    ok = runner.invoke(main, ["spec", "check", str(good)])
    assert ok.exit_code == 0 and "spec species is valid" in ok.output
    refused = runner.invoke(main, ["spec", "check", str(bad)])
    assert refused.exit_code == 1 and "line 12" in refused.output and "did you mean 'primary_metric'" in refused.output
    checked = runner.invoke(main, ["spec", "check", str(good), "--data", str(data), "--json"])
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)["validation"]
    assert report["rows_in"] == 7 and report["rows_out"] == 6
    assert [c["name"] for c in report["checks"]] == ["colour:allowed"]
    rejecting = tmp_path / "strict.yaml"
    rejecting.write_text(SPEC.replace("colour: {type: string, allowed: [red, green]}",
                                      "colour: {type: string, allowed: [red, green], on_fail: reject}"))
    assert runner.invoke(main, ["spec", "check", str(rejecting), "--data", str(data)]).exit_code == 1
