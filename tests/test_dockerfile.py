"""Every deployable's image runs the very command the local cloud runs (topology.yaml); Cloud Build builds
and pushes each of them, and `make deploy` runs it as an account that may create what terraform declares."""

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


# Which deployer role administers each family of resources terraform/ declares.
DEPLOYER_ROLE_FOR = {
    "google_pubsub_": "roles/pubsub.admin", "google_cloud_run_v2_": "roles/run.admin",
    "google_cloudfunctions2_": "roles/cloudfunctions.admin", "google_storage_": "roles/storage.admin",
    "google_service_account": "roles/iam.serviceAccountAdmin",
    "google_project_iam_": "roles/resourcemanager.projectIamAdmin",
    "google_secret_manager_": "roles/secretmanager.admin", "google_cloud_scheduler_": "roles/cloudscheduler.admin",
    "google_artifact_registry_": "roles/artifactregistry.admin", "google_firestore_": "roles/datastore.owner",
    "google_project_service": "roles/serviceusage.serviceUsageAdmin", "google_bigquery_": "roles/bigquery.admin",
    "google_compute_": "roles/compute.loadBalancerAdmin",   # the console's load balancer, address and certificate
    "google_iap_": "roles/iap.admin",                       # who may pass the console's IAP
}


def test_make_deploy_runs_cloud_build_as_a_deployer_that_may_create_everything_terraform_declares():
    """Cloud Build applies terraform; the project's default build account has no roles in new projects."""
    import subprocess

    import yaml

    from tests.test_terraform import blocks

    dry = subprocess.run(["make", "-n", "deploy", "PROJECT=acme-ml"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    deployer = "tollgate-deployer@acme-ml.iam.gserviceaccount.com"
    assert f"--service-account projects/acme-ml/serviceAccounts/{deployer}" in dry
    assert dry.index("gcloud iam service-accounts create tollgate-deployer") < dry.index("gcloud builds submit")
    roles = set(re.search(r"for role in ([^;]+); do", dry).group(1).split())
    # a build under a user-managed account must log to Cloud Logging only
    assert yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    types = {rtype for _, rtype, _, _ in blocks("resource")}
    for rtype in sorted(t for t in types if t.startswith("google_")):
        prefix = next((p for p in DEPLOYER_ROLE_FOR if rtype.startswith(p)), None)
        assert prefix is not None, f"{rtype}: which deployer role creates it? add it here and to the Makefile"
        assert DEPLOYER_ROLE_FOR[prefix] in roles, rtype
    assert "roles/iam.serviceAccountUser" in roles   # deploys workloads that run as their own accounts
    assert "roles/owner" not in roles and "roles/editor" not in roles
