"""Trust, round two (unit tier): the holes found when Tollgate was attacked again, each shape reproduced and refused
— model files whose trees crash or hang scikit-learn, Parquet that decodes far past its size or holds types the
reader did not know, labels parsed as TeX, YAML that expands exponentially, integer rules that wrap around, and
requests whose keys cost before they are refused. The fuzz tests (test_fuzz.py) throw thousands more at the
same code; the end-to-end ones (test_trust_e2e.py) go through the chain."""

from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import mutations
from tests.test_artifacts import CASES, frame, tiny
from tollgate import artifacts, inputs, reports, rules, training, validation
from tollgate import spec as specs


def _with_nodes(blob: bytes, change) -> bytes:
    """The skops file with ``change(nodes)`` applied to the first tree's node array (of either tree kind)."""
    import json
    import zipfile

    out = io.BytesIO()
    done = False
    with zipfile.ZipFile(io.BytesIO(blob)) as source, zipfile.ZipFile(out, "w") as target:
        names = json.dumps(json.loads(source.read("schema.json")))
        for item in source.infolist():
            data = source.read(item)
            if not done and item.filename.endswith(".npy") and item.filename in names:
                array = np.load(io.BytesIO(data), allow_pickle=False)
                if array.dtype.names and ("left" in array.dtype.names or "left_child" in array.dtype.names):
                    array = array.copy()
                    change(array)
                    buffer = io.BytesIO()
                    np.save(buffer, array, allow_pickle=False)
                    data, done = buffer.getvalue(), True
            target.writestr(item, data)
    assert done
    return out.getvalue()


def _past_the_end(nodes: np.ndarray) -> None:
    left = "left" if "left" in nodes.dtype.names else "left_child"
    split = np.flatnonzero(nodes["is_leaf"] == 0) if "is_leaf" in nodes.dtype.names else np.flatnonzero(
        nodes["left_child"] != -1)
    nodes[left][split[0]] = len(nodes) + 1000


def _its_own_child(nodes: np.ndarray) -> None:
    left = "left" if "left" in nodes.dtype.names else "left_child"
    split = np.flatnonzero(nodes["is_leaf"] == 0) if "is_leaf" in nodes.dtype.names else np.flatnonzero(
        nodes["left_child"] != -1)
    nodes[left][split[-1]] = split[-1]


TREE_FAMILIES = ["hist_gradient_boosting", "random_forest", "decision_tree", "gradient_boosting"]


@pytest.mark.parametrize("estimator", TREE_FAMILIES)
@pytest.mark.parametrize("change", [_past_the_end, _its_own_child], ids=["index past the nodes", "own child"])
def test_a_tree_that_would_crash_or_hang_scikit_learn_is_refused_with_its_correct_hash(estimator, change):
    spec = tiny("regression", estimator, **({"n_estimators": 5} if estimator != "decision_tree" and
                                             estimator != "hist_gradient_boosting" else {}))
    blob = _with_nodes(artifacts.dumps(training.fit(frame(), spec)), change)
    with pytest.raises(artifacts.ArtifactError, match="not later nodes of the tree"):
        artifacts.loads(blob, artifacts.sha256(blob), spec)


def test_a_tree_declaring_more_nodes_than_it_holds_is_refused_before_scikit_learn_builds_it():
    """Tree.__setstate__ copies node_count from the file and never compares it with the array: the first predict
    reads past the array's end."""
    import json
    import zipfile

    spec = tiny("regression", "decision_tree")
    blob = artifacts.dumps(training.fit(frame(), spec))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "schema.json":
                schema = json.loads(data)
                tree = schema["content"]["content"]["steps"]["content"][1]["content"][1]["content"]["content"]["tree_"]
                count = tree["content"]["content"]["node_count"]
                count["content"] = json.dumps(json.loads(count["content"]) * 50)
                data = json.dumps(schema).encode()
            target.writestr(item, data)
    blob = out.getvalue()
    with pytest.raises(artifacts.ArtifactError, match="declares .* nodes and holds"):
        artifacts.loads(blob, artifacts.sha256(blob), spec)


@pytest.mark.parametrize(("task", "estimator", "params"), CASES)
def test_every_family_the_trainer_produces_passes_the_structure_checks_and_the_probe(task, estimator, params):
    classes = {"regression": 0, "binary": 2, "multiclass": 3}[task]
    spec = tiny("regression" if not classes else "classification", estimator, **params)
    blob = artifacts.dumps(training.fit(frame(classes=classes), spec))
    assert artifacts.loads(blob, artifacts.sha256(blob), spec) is not None


def test_a_model_that_predicts_nan_is_refused_by_the_probe():
    spec = tiny("regression", "linear")
    model = training.fit(frame(), spec)
    model[-1].intercept_ = np.nan
    blob = artifacts.dumps(model)
    artifacts.loads(blob, artifacts.sha256(blob))   # its structure is fine ...
    with pytest.raises(artifacts.ArtifactError, match="predicts values that are not finite"):
        artifacts.loads(blob, artifacts.sha256(blob), spec)   # ... its answers are not


# ---------------------------------------------------------------- Parquet

def _parquet(table: pa.Table, path) -> int:
    pq.write_table(table, path)
    return path.stat().st_size


def test_parquet_that_decodes_far_past_its_size_is_refused_before_it_is_held(tmp_path, taxi, taxi_spec):
    """13 KB declaring 12 KB in its metadata (sizes are measured after dictionary encoding), decoding to ~100 MiB
    against a 10 MiB limit: refused while counting, with the decoded values never built."""
    spec = specs.replace(taxi_spec, max_file_bytes=10 * 2**20)
    rows = 2_000
    sample = taxi.head(rows).copy()
    table = pa.Table.from_pandas(sample, preserve_index=False)
    big = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array(["x" * 50_000]))
    table = table.set_column(table.column_names.index("company"), "company", big)
    path = tmp_path / "bomb.parquet"
    size = _parquet(table, path)
    assert size < 100_000 and pq.ParquetFile(path).metadata.row_group(0).total_byte_size < spec.max_file_bytes
    pool = pa.default_memory_pool()
    before = pool.max_memory() or 0
    with path.open("rb") as fh:
        result = validation.validate_file(fh, spec, tmp_path / "out.parquet", size=size)
    assert (result.status, result.reason) == ("rejected", "file_too_large") and "decodes to" in result.message
    assert (pool.max_memory() or 0) - before < 20 * 2**20   # never the ~100 MiB the values would decode to


@pytest.mark.parametrize(("kind", "values"), [
    ("list", pa.array([[1.0, 2.0]] * 50, pa.list_(pa.float64()))),
    ("map", pa.array([[("k", 1.0)]] * 50, pa.map_(pa.string(), pa.float64()))),
    ("struct", pa.array([{"a": 1.0}] * 50, pa.struct([("a", pa.float64())]))),
    ("binary", pa.array([b"\xff"] * 50, pa.binary())),
])
def test_parquet_columns_of_types_the_reader_cannot_validate_are_a_rejection_with_a_reason(tmp_path, taxi,
                                                                                         taxi_spec, kind, values):
    table = pa.Table.from_pandas(taxi.head(50), preserve_index=False)
    table = table.set_column(table.column_names.index("tips"), "tips", values)
    path = tmp_path / "typed.parquet"
    size = _parquet(table, path)
    with path.open("rb") as fh:
        result = validation.validate_file(fh, taxi_spec, tmp_path / "out.parquet", size=size)
    assert (result.status, result.reason) == ("rejected", "unsupported_column_type")
    assert "tips" in result.message and kind in result.message.lower() or "tips (" in result.message


def test_uint64_timestamps_and_decimals_are_read_and_checked_like_any_number(tmp_path, taxi, taxi_spec):
    rows = 400
    sample = taxi.head(rows).copy()
    table = pa.Table.from_pandas(sample, preserve_index=False)
    seconds = sample["trip_start_timestamp"].to_numpy()
    table = table.set_column(table.column_names.index("trip_start_timestamp"), "trip_start_timestamp",
                             pa.array(seconds.astype("datetime64[s]")))
    huge = np.full(rows, 7, dtype=np.uint64)
    huge[:3] = 2**64 - 1   # no int64 holds it: those rows fail the column, the rest are kept
    table = table.set_column(table.column_names.index("trip_start_hour"), "trip_start_hour", pa.array(huge))
    table = table.set_column(table.column_names.index("fare"), "fare",
                             pa.array(sample["fare"].round(2).astype(str).map(__import__("decimal").Decimal)))
    path = tmp_path / "typed.parquet"
    size = _parquet(table, path)
    with path.open("rb") as fh:
        result = validation.validate_file(fh, taxi_spec, tmp_path / "out.parquet", size=size)
    checks = {c.name: c.failed_rows for c in result.checks}
    assert checks.get("trip_start_hour:type") == 3, checks
    assert result.status == "valid", (result.reason, result.message)
    curated = pd.read_parquet(tmp_path / "out.parquet")
    assert set(curated["trip_start_timestamp"]) <= set(seconds) and len(curated) == result.rows_out
    fares, known = curated["fare"].dropna().to_numpy(), sample["fare"].round(2).dropna().to_numpy()
    assert np.isclose(fares[:, None], known[None, :], rtol=0, atol=1e-9).any(axis=1).all()   # decimals as numbers


def test_every_mutated_parquet_of_a_seed_ends_in_a_result_here_too(taxi, taxi_spec, tmp_path):
    """A few of the fuzz test's Parquet mutations, in-process: the fast tier notices a regression first."""
    rng = np.random.default_rng(5)
    sample = taxi.head(120)
    spec = specs.replace(taxi_spec, max_file_bytes=2**20)
    for i in range(30):
        label, data = mutations.mutate_parquet(sample, rng)
        result = validation.validate_file(io.BytesIO(data), spec, tmp_path / "out.parquet", size=len(data))
        assert result.status in ("valid", "rejected"), label


# ---------------------------------------------------------------- reports

ODD = "$\\x$"


def test_values_and_names_that_look_like_tex_are_drawn_as_text(taxi, taxi_spec):
    """matplotlib read `$...$` as mathtext: a category `$\\x$` made both reports raise and the run fail."""
    batch = taxi.head(300).copy()
    batch["company"] = np.where(np.arange(300) % 2, ODD, "$5-$10 band")
    result = validation.validate(batch, taxi_spec)
    report = {"run_id": "r1", "dataset": "chicago_taxi", **result.summary()}
    html = reports.validation_html(report, result.profile)   # the batch as its own reference: drift bars drawn
    assert html.count("<img") == len([c for c in result.profile["columns"].values() if c.get("count")])
    evaluated = {"task": "regression", "run_id": "r1", "dataset": "d", "metric": "r2", "holdout_rows": 3,
                 "challenger": {"version": 1, "metrics": {"r2": 0.5}}, "champion": None, "difference": None,
                 "slices": [{"column": ODD, "slice": ODD, "rows": 3, "challenger": 0.5, "champion": None}]}

    class Scored:
        predictions = np.asarray([1.0, 2.0, 3.0])

    assert f"<td>{ODD}</td>" in reports.evaluation_html(evaluated, np.asarray([1.0, 2.5, 2.0]), Scored())
    labels = {"task": "classification", **{k: v for k, v in evaluated.items() if k != "task"}}

    class Classes:
        classes = [ODD, "$5-$10"]
        predictions = np.asarray([ODD, "$5-$10", ODD])
        proba = np.asarray([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])

    html = reports.evaluation_html(labels, np.asarray([ODD, ODD, "$5-$10"]), Classes())
    assert html.count("<img") == 2   # the confusion matrix and the ROC curve, labelled with the classes as text


def test_a_report_that_cannot_be_drawn_is_a_plain_page_and_the_problem_is_returned():
    def broken() -> str:
        raise ValueError("no luck")
    html, problem = reports.drawn("validation", {"run_id": "r1", "rows_in": 3, "category": "<b>x</b>"}, broken)
    assert problem == "ValueError: no luck" and "could not be drawn" in html and "&lt;b&gt;x&lt;/b&gt;" in html


# ---------------------------------------------------------------- specs

def test_a_yaml_alias_bomb_is_refused_at_once():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(8):
        previous, name = chr(97 + i), chr(98 + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    text = "\n".join(lines)
    assert len(text) < 400
    started = time.process_time()
    with pytest.raises(specs.SpecError, match="expands to more than"):
        specs.loads(text)
    assert time.process_time() - started < 5   # linear in the document, not in its 387 million expansions


def test_a_recursive_alias_is_refused():
    with pytest.raises(specs.SpecError, match="nests more than"):
        specs.loads("name: &a [*a]")


def test_aliases_that_expand_modestly_still_load(taxi_spec):
    import yaml

    raw = dict(taxi_spec.raw)
    text = yaml.safe_dump(raw, sort_keys=False).replace("policy:", "policy: &p", 1)
    assert specs.loads(text + "\n").name == taxi_spec.name


def test_integer_rules_compute_in_float64_and_never_wrap_around():
    expression = rules.parse("qty * price <= 1e6", {"qty": "int", "price": "int"})
    frame_ = pd.DataFrame({"qty": np.asarray([2**32, 3], dtype=np.int64),
                           "price": np.asarray([2**32, 4], dtype=np.int64)})
    assert expression.holds(frame_).tolist() == [False, True]   # 2**64 wrapped to 0 in int64


@pytest.mark.parametrize("rule", ["None + None == 1", "fare > None", "abs(None) == 1", "not None", "-None == 1"])
def test_none_as_an_operand_is_refused_when_the_spec_loads(rule):
    with pytest.raises(rules.RuleError):
        rules.parse(rule, {"fare": "float"})


def test_none_still_compares_for_equality_and_in_lists():
    expression = rules.parse("fare != None and fare in [1, None]", {"fare": "float"})
    assert expression.columns == ("fare",)


# ---------------------------------------------------------------- predictor requests

def test_a_body_of_unknown_keys_is_refused_by_its_bytes_before_it_is_parsed(taxi_spec):
    checker = inputs.Checker(taxi_spec)
    body = b'{"instances": [{' + b",".join(b'"%x":1' % i for i in range(700_000)) + b"}]}"
    assert len(body) < 8 * 2**20
    started = time.process_time()
    with pytest.raises(inputs.BadRequest) as refused:
        checker.bounded(body)
    assert refused.value.status == 413 and "split it" in str(refused.value)
    assert time.process_time() - started < 0.5
    full = {"instances": [{f: 1.0 for f in taxi_spec.feature_lists.numeric} | {f: "x" for f in
                                                                          taxi_spec.feature_lists.categorical}] * 1000}
    import orjson

    assert checker.bounded(orjson.dumps(full))   # a full request of every feature passes


def test_an_instance_with_too_many_keys_is_one_problem_not_one_per_key(taxi_spec):
    checker = inputs.Checker(taxi_spec)
    instance = {f"k{i}": 1 for i in range(5_000)}
    with pytest.raises(inputs.BadRequest) as refused:
        checker.instances({"instances": [instance]})
    assert refused.value.problems[0].startswith("instances[0]: 5000 fields")


# ---------------------------------------------------------------- outbound calls

@pytest.mark.parametrize("uri", ["http://169.254.169.254/", "http://metadata.google.internal/computeMetadata/v1/",
                                 "http://[fe80::1]:5000/", "http://[::ffff:169.254.169.254]/", "ftp://mlflow.example"])
def test_a_spec_cannot_name_the_metadata_server_as_its_tracking_server(taxi_spec, uri):
    with pytest.raises(specs.SpecError, match="tracking.mlflow.uri"):
        specs.replace(taxi_spec, tracking={"mlflow": {"uri": uri}})


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "http://10.0.0.7", "http://[::1]:80", "http://192.168.1.1"])
def test_loopback_and_private_addresses_are_refused_unless_the_deployment_allows_them(uri):
    from tollgate import egress

    with pytest.raises(egress.EgressRefused, match="not a global address"):
        egress.check_url(uri, allow=())
    egress.check_url(uri, allow=egress.allowed_networks({egress.ALLOW_ENV: "127.0.0.0/8, 10.0.0.0/8, ::1/128, "
                                                                           "192.168.0.0/16"}))
    with pytest.raises(egress.EgressRefused, match="link-local"):   # never, whatever is allowed
        egress.check_url("http://169.254.169.254/", allow=egress.allowed_networks({egress.ALLOW_ENV: "0.0.0.0/0"}))


def test_a_name_is_checked_on_every_address_it_resolves_to(monkeypatch):
    from tollgate import egress

    monkeypatch.delenv(egress.ALLOW_ENV, raising=False)
    with pytest.raises(egress.EgressRefused, match="resolves to 127.0.0.1"):
        egress.admit("http://localhost:9/", "the MLflow tracking server")


def test_a_dns_answer_that_changes_after_the_check_is_refused_at_connect_time(monkeypatch):
    """Rebinding: the name resolves to a global address when checked, to loopback when connected to. The
    connection itself is checked, so the request never reaches the loopback server."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests

    from tollgate import egress

    reached = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            reached.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    real = socket.getaddrinfo
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", server.server_port))]])

    def rebinding(host, *args, **kwargs):
        if host == "mlflow.rebind.example":
            return next(answers, None) or real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.delenv(egress.ALLOW_ENV, raising=False)
    url = f"http://mlflow.rebind.example:{server.server_port}/api"
    assert egress.admit(url) == "mlflow.rebind.example"   # the check saw a global address
    with pytest.raises(requests.ConnectionError, match="not a global address"):
        requests.get(url, timeout=5)
    server.shutdown()
    assert reached == []


def test_the_webhook_is_held_to_the_same_rule(monkeypatch):
    from tollgate import promotion

    monkeypatch.setenv(promotion.WEBHOOK_ENV, "http://169.254.169.254/latest/meta-data/")
    status = promotion.post_webhook("hello", {"run_id": "r"})
    assert status["status"] == "failed" and status["error"] == "EgressRefused"
