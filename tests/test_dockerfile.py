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
