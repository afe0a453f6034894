"""The one topology file: consistent, and every declared function and job has its code."""

import pytest

from tollgate import topology
from tollgate.topology import ROOT


def test_shipped_topology_is_consistent():
    topo = topology.load()
    assert {"data-arrived", "data-validated", "model-trained", "model-evaluated", "model-decided"} <= set(topo.topics)
    assert {"validator", "trainer", "evaluator"} <= set(topo.jobs)
    assert "predictor" in topo.services
    assert topo.functions["ingest"].trigger_topic == "data-arrived"
    assert topo.functions["decider"].trigger_topic == "model-evaluated"
    for job in topo.jobs.values():
        assert (ROOT / job.source / "main.py").is_file()


def test_unknown_trigger_topic_is_refused(tmp_path):
    (tmp_path / "t.yaml").write_text(
        "topics: {a: {}}\nfunctions:\n  f: {source: functions/ingest, entry_point: x, trigger_topic: b}\n")
    with pytest.raises(topology.TopologyError, match="unknown topic 'b'"):
        topology.load(tmp_path / "t.yaml")


def test_http_functions_and_schedules(tmp_path):
    topo = topology.load()
    assert topo.functions["review"].http and not topo.functions["decider"].http
    assert topo.schedules["review-expiry"].topic == "review-tick"
    (tmp_path / "t.yaml").write_text(
        "topics: {a: {}}\nfunctions:\n  f: {source: functions/ingest, entry_point: x, trigger: http, "
        "trigger_topic: a}\n")
    with pytest.raises(topology.TopologyError, match="either"):
        topology.load(tmp_path / "t.yaml")
    (tmp_path / "t.yaml").write_text("topics: {a: {}}\nschedules:\n  s: {schedule: '*/5 * * *', topic: a}\n")
    with pytest.raises(topology.TopologyError, match="5-field cron"):
        topology.load(tmp_path / "t.yaml")


# Where each job's code writes to the bucket (the literal start of each object name), found by reading the code:
# terraform grants create only under the topology's `writes` (and replace under `updates`), and the local cloud
# has no IAM to catch a write outside them, so this test does.
JOBS = ("validator", "trainer", "evaluator", "monitor")   # tollgate/jobs/<job>.py; common.py: their helpers
# storage calls that create or replace an object → the position of the object name among their arguments
WRITES = {"write_once": 0, "write_json_once": 0, "write_file_once": 0, "copy_blob": 2, "upload_from_string": None}


def _prefixes(node, names: dict[str, set[str]]) -> set[str]:
    """The literal starts an object name can have: {"reports/"} for f"reports/{run_id}/validation.json";
    ``names``: local variables and helper functions that hold or make one."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        return {first.value} if isinstance(first, ast.Constant) else _prefixes(first.value, names)
    if isinstance(node, ast.BinOp):
        return _prefixes(node.left, names)
    if isinstance(node, ast.IfExp):
        return _prefixes(node.body, names) | _prefixes(node.orelse, names)
    if isinstance(node, ast.Name):
        return names.get(node.id, set())
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "tables":
        from tollgate.warehouse import tables  # a constant of the warehouse's layout: tables.ROOT

        return {getattr(tables, node.attr)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):   # a helper such as artifact_object()
        return names.get(node.func.id + "()", set())
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "artifacts":
        return names.get(node.func.attr + "()", set())   # artifacts.window_object()
    return set()


def _leading_name(node) -> str | None:
    """The variable an object name starts with: ``prefix`` of f"{prefix}{name}.parquet"."""
    import ast

    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.FormattedValue):
        return _leading_name(node.values[0].value)
    if isinstance(node, ast.BinOp):
        return _leading_name(node.left)
    return node.id if isinstance(node, ast.Name) else None


def code_writes() -> dict[str, set[str]]:
    import ast

    trees = {name: ast.parse((ROOT / "shared" / "tollgate" / "jobs" / f"{name}.py").read_text())
             for name in (*JOBS, "common")}
    functions = {name: [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)] for name, tree in trees.items()}
    everything = [f for fs in functions.values() for f in fs]
    # helpers that name objects: the jobs' own, and artifacts.artifact_object (where every loader reads a model)
    named = ast.parse((ROOT / "shared" / "tollgate" / "artifacts.py").read_text())
    helpers = {f"{f.name}()": _prefixes(f.body[-1].value, {})
               for f in everything + [n for n in ast.walk(named) if isinstance(n, ast.FunctionDef)]
               if isinstance(f.body[-1], ast.Return) and f.body[-1].value is not None}
    writes = dict(WRITES)
    writers = {}   # functions that write to an object named by their caller: checked at each call
    for function in everything:
        params = [a.arg for a in function.args.args]
        for node in ast.walk(function):
            name = getattr(getattr(node, "func", None), "attr", None)
            if isinstance(node, ast.Call) and name in writes and writes[name] is not None \
                    and _leading_name(node.args[writes[name]]) in params:
                writers[function.name] = params.index(_leading_name(node.args[writes[name]]))
    writes.update(writers)
    found: dict[str, set[str]] = {}
    for module, fs in functions.items():
        for function in fs:
            names = {k: v for k, v in helpers.items() if v}
            for node in ast.walk(function):
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    names.setdefault(node.targets[0].id, set()).update(_prefixes(node.value, names))
            for node in ast.walk(function):
                call = getattr(getattr(node, "func", None), "attr", None) or getattr(getattr(node, "func", None),
                                                                                      "id", None)
                if not isinstance(node, ast.Call) or call not in writes or function.name in writers:
                    continue   # a writer helper writes where its caller says
                target = node.func.value.args[0] if call == "upload_from_string" else node.args[writes[call]]
                prefixes = _prefixes(target, names)
                assert prefixes, f"jobs/{module}.{function.name}: cannot tell where line {node.lineno} writes"
                assert module in JOBS, f"jobs/{module}.{function.name} writes: only a job's own module may"
                found.setdefault(module, set()).update(prefixes)
    return found


def test_each_job_writes_only_under_the_prefixes_terraform_grants_it():
    topo = topology.load()
    writes = code_writes()
    assert set(writes) == {"validator", "trainer", "evaluator", "monitor"}
    for job, prefixes in writes.items():
        allowed = topo.jobs[job].writes + topo.jobs[job].updates
        for prefix in prefixes:
            assert prefix.startswith(allowed), f"{job} writes {prefix!r}, outside {allowed}"
    # the monitor replaces its report (an upload without a create-only precondition) only where it may update
    assert writes["monitor"] >= {"reports/monitoring/"} and topo.jobs["monitor"].updates == ("reports/monitoring/",)


def test_no_job_may_write_specs_or_incoming(tmp_path):
    (tmp_path / "t.yaml").write_text("topics: {a: {}}\njobs:\n  j: {source: services/validator, command: [x], "
                                     "writes: [specs/]}\n")
    with pytest.raises(topology.TopologyError, match="specs/ and incoming/ belong to people"):
        topology.load(tmp_path / "t.yaml")
