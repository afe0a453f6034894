"""The local cloud itself: prerequisites, idempotent `up`, the topology's functions and scheduler running."""

import pytest
import requests

from localcloud import cloud as lc
from tests.conftest import review_auth


def test_missing_tools_are_named_with_their_packages(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))          # neither gcloud nor java on PATH
    with pytest.raises(lc.LocalCloudError) as info:
        lc.check_prerequisites()
    message = str(info.value)
    assert "google-cloud-cli" in message and "openjdk-17-jre-headless" in message


def test_an_unsupported_platform_is_told_where_the_local_cloud_runs(monkeypatch):
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    with pytest.raises(lc.LocalCloudError, match=r"runs on Linux x86_64 \(here: linux arm64\).*make deploy"):
        lc.check_prerequisites()


def test_code_version_is_the_commit_and_says_when_the_tree_is_dirty(tmp_path):
    import subprocess

    assert lc.code_version(tmp_path) == "dev"          # not a git checkout
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "a.txt").write_text("one")
    subprocess.run([*git, "add", "a.txt"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=tmp_path, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert lc.code_version(tmp_path) == commit
    (tmp_path / "a.txt").write_text("two")
    assert lc.code_version(tmp_path) == f"{commit}-dirty"


@pytest.mark.emulator
def test_up_is_idempotent_and_runs_every_function(local_cloud):
    before = (local_cloud.env(), {n: p.pid for n, p in local_cloud.parts.items()})
    again = lc.LocalCloud(local_cloud.home, echo=lambda m: None).up()
    assert (again.env(), {n: p.pid for n, p in again.parts.items()}) == before
    for fn in local_cloud.topology.functions:
        assert f"function-{fn}" in again.parts and again.parts[f"function-{fn}"].alive()
    health = requests.get(f"{local_cloud.env()['CLOUD_RUN_API_ENDPOINT']}/healthz", timeout=5)
    assert health.status_code == 200
    assert again.parts["scheduler"].alive()                   # Cloud Scheduler's stand-in for `schedules:`
    assert again.parts["console"].alive()
    assert requests.get(f"{again.env()['TOLLGATE_CONSOLE_URL']}/health", timeout=10).status_code == 200
    env = again.env()                                       # the review function: its URL, tokens signed for it
    assert env["TOLLGATE_REVIEW_URL"] == f"http://127.0.0.1:{again.ports['function:review']}"
    listed = requests.get(f"{env['TOLLGATE_REVIEW_URL']}/reviews", timeout=10, headers=review_auth(again))
    assert listed.status_code == 200 and isinstance(listed.json()["reviews"], list)


def test_every_part_gets_its_own_port_even_from_a_state_that_repeats_one(tmp_path):
    """Two functions once shared a port: the second's push deliveries reached the first."""
    local = lc.LocalCloud(tmp_path, echo=lambda m: None)
    functions = [f"function:{fn}" for fn in local.topology.functions]
    repeated = lc.free_port()
    stale = {"pubsub": lc.free_port(), **{key: repeated for key in functions[-2:]}}
    ports = local._allocate_ports(stale)
    assert len(set(ports.values())) == len(ports) == 5 + len(functions)   # emulators, storage, Cloud Run, console
    assert ports["pubsub"] == stale["pubsub"]                       # kept while free: URLs survive a restart
    assert sorted(ports[k] == repeated for k in functions[-2:]) == [False, True]
    assert len({lc.free_port() for _ in range(500)}) == 500         # never the same port twice in a process


def test_up_refuses_a_spec_it_would_refuse_later_before_starting_anything(tmp_path):
    import yaml

    from localcloud.cloud import ROOT

    specs_dir = tmp_path / "datasets"
    specs_dir.mkdir()
    raw = yaml.safe_load((ROOT / "datasets" / "chicago_taxi.yaml").read_text())
    raw["rules"][0]["expr"] = "fare.apply(print) == 1"
    (specs_dir / "chicago_taxi.yaml").write_text(yaml.safe_dump(raw))
    local = lc.LocalCloud(tmp_path / "home", specs_dir=specs_dir, echo=lambda m: None)
    with pytest.raises(lc.LocalCloudError, match=r"chicago_taxi.yaml: spec chicago_taxi: rules\[0\]"):
        local.up()
    assert local.parts == {}
    (specs_dir / "chicago_taxi.yaml").write_text(yaml.safe_dump({**raw, "rules": [], "name": "taxi"}))
    with pytest.raises(lc.LocalCloudError, match="the spec is named 'taxi'; name the file taxi.yaml"):
        local.specs()


def test_a_scheduler_left_by_another_local_cloud_stops_instead_of_exporting_into_its_home(tmp_path):
    """A killed local cloud's scheduler outlived it and exported its own Firestore into the home a new local
    cloud then started from: it checks that the home is still its cloud's before each export."""
    import json
    import os

    from localcloud import scheduler

    state = tmp_path / "state.json"
    state.write_text(json.dumps({"project": "p1", "parts": {"scheduler": {"pid": os.getpid()}}}))
    assert scheduler._still_mine(tmp_path, "p1")
    state.write_text(json.dumps({"project": "p2", "parts": {"scheduler": {"pid": 1}}}))   # another cloud now
    assert not scheduler._still_mine(tmp_path, "p1")
    state.unlink()
    assert not scheduler._still_mine(tmp_path, "p1")
