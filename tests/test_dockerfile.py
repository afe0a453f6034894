"""Every deployable's image runs the very command the local cloud runs (topology.yaml)."""

import json
import re

from tollgate import topology
from tollgate.topology import ROOT


def test_each_job_and_service_has_a_target_with_the_topology_command():
    text = (ROOT / "services" / "Dockerfile").read_text()
    targets = dict(re.findall(r"^FROM base AS (\S+)\nCMD (\[.*\])$", text, flags=re.M))
    topo = topology.load()
    deployables = {**topo.jobs, **topo.services}
    assert set(targets) == set(deployables)
    for name, definition in deployables.items():
        assert json.loads(targets[name]) == definition.command, name
    assert "USER tollgate" in text and "PYTHONUNBUFFERED=1" in text


def test_cloud_build_builds_and_pushes_every_image_terraform_deploys_before_applying():
    """terraform points each topology job and the predictor at <registry>/<name>:<tag>: a missing image
    fails `apply` on a real project (the monitor's once did)."""
    import yaml

    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    steps = {s["id"]: s for s in build["steps"]}
    topo = topology.load()
    deployables = set(topo.jobs) | set(topo.services)
    built = {s["args"][s["args"].index("--target") + 1]: s for s in build["steps"] if "--target" in s["args"]}
    assert set(built) == deployables
    for name, step in built.items():
        assert step["args"][step["args"].index("-t") + 1].endswith(f"/tollgate/{name}:${{_IMAGE_TAG}}"), name
    pushed = re.search(r"for t in ([\w ]+); do docker push", steps["push"]["args"][-1]).group(1).split()
    assert set(pushed) == deployables and set(steps["push"]["waitFor"]) == {s["id"] for s in built.values()}
    # no waitFor: Cloud Build starts it after every earlier step, the push included
    assert steps["apply"]["args"][0] == "apply" and list(steps)[-1] == "apply" and "waitFor" not in steps["apply"]
