"""Terraform, checked without the Google provider binary (it cannot be downloaded here): `terraform fmt`,
every resource against the provider's schema (tests/provider_schema.py), the structure parsed with
python-hcl2 against the topology, and the IAM allow-list."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import orjson
import pytest

from tests import provider_schema
from tests.provider_schema import strings, unq
from tollgate import topology
from tollgate.topology import ROOT

TF = ROOT / "terraform"
ENV = TF / "environments" / "production"

# Every role any Tollgate identity is granted anywhere. A new grant must be added here on purpose.
ALLOWED_ROLES = {
    "roles/datastore.user", "roles/datastore.viewer", "roles/logging.logWriter", "roles/storage.objectViewer",
    "roles/storage.objectCreator", "roles/storage.objectUser", "roles/run.viewer",
    "roles/pubsub.publisher", "roles/pubsub.subscriber", "roles/run.jobsExecutorWithOverrides",
    "roles/run.developer", "roles/run.invoker", "roles/iam.serviceAccountUser",
    "roles/iam.serviceAccountTokenCreator", "roles/secretmanager.secretAccessor",
    "roles/artifactregistry.writer",   # only the function build account, on the function images' repository
    "roles/bigquery.dataViewer",       # warehouse readers, on the warehouse dataset
    "roles/bigquery.dataEditor",       # on the two log tables: the Pub/Sub agent (its subscriptions write them),
                                       # the monitor (deletes rows past a dataset's retention)
    "roles/iap.httpsResourceAccessor",  # var.console_users, on the console's backend service only
    "roles/cloudtrace.agent",          # functions and jobs: each run's spans
}
# Project-level roles per kind of workload (Firestore has no finer IAM than the project).
PROJECT_ROLES = {
    "function": ["roles/datastore.user", "roles/logging.logWriter", "roles/cloudtrace.agent"],   # + each run's spans
    "job": ["roles/datastore.user", "roles/logging.logWriter", "roles/cloudtrace.agent"],
    "predictor": ["roles/datastore.viewer", "roles/logging.logWriter"],   # read-only: it faces the internet
    "console": ["roles/datastore.user", "roles/logging.logWriter"],
}


def mutated_copy(tmp_path: Path, path: str, old: str, new: str) -> Path:
    """A copy of terraform/ with ``old`` replaced once by ``new`` in ``path`` (which must contain it)."""
    copy = tmp_path / "terraform"
    shutil.copytree(TF, copy, ignore=shutil.ignore_patterns(".build", ".terraform"))
    text = (copy / path).read_text()
    assert old in text
    (copy / path).write_text(text.replace(old, new, 1))
    return copy


def blocks(kind: str, root: Path = TF) -> list[tuple[Path, str, str, dict[str, Any]]]:
    """(file, type, name, body) of every `resource`/`module`/`data` block under ``root``."""
    found = []
    for path in sorted(root.rglob("*.tf")):
        parsed = hcl2.load(path.open())
        for block in parsed.get(kind, []):
            for rtype, named in block.items():
                if kind == "module":
                    found.append((path, "module", unq(rtype), named))
                    continue
                for name, body in named.items():
                    found.append((path, unq(rtype), unq(name), body))
    return found


def locals_of(path: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in hcl2.load(path.open()).get("locals", []):
        merged.update(block)
    return merged


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_is_formatted():
    done = subprocess.run(["terraform", "fmt", "-check", "-recursive", "-diff", str(TF)], capture_output=True,
                          text=True)
    assert done.returncode == 0, f"run `terraform fmt -recursive terraform`:\n{done.stdout}"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    path = ROOT / ".tools" / "google-provider-schema.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: `make check-terraform` downloads the provider schema and builds it")
    return orjson.loads(path.read_bytes())


def test_terraform_matches_the_pinned_provider_schema(schema):
    """What `terraform validate` would say: arguments, blocks, required fields, enum values, references."""
    pinned = re.search(r'source\s*=\s*"hashicorp/google"\s*version\s*=\s*"([^"]+)"',
                       (ENV / "versions.tf").read_text())
    assert pinned and pinned.group(1) == schema["provider"], "check against the provider version that is pinned"
    assert provider_schema.check(schema, TF) == []


@pytest.mark.parametrize(("path", "old", "new", "expected"), [
    ("modules/function/main.tf", "ack_deadline_seconds       = 600", "ack_deadline = 600",
     "unknown argument or block `ack_deadline`"),
    ("modules/function/main.tf", '"ALLOW_INTERNAL_ONLY"', '"INTERNAL_ONLY"', "is not one of"),
    ("modules/function/main.tf", "service_config[0].uri", "service_config[0].url", "exports no attribute `url`"),
    ("environments/production/pubsub.tf", "  topic                      = module.topics[each.value.topic].id\n", "",
     "required `topic` is missing"),
    ("environments/production/jobs.tf", "  timeout_seconds    = each.value.timeout_seconds\n", "",
     "required variable `timeout_seconds` is not set"),
    ("environments/production/pubsub.tf", "dead_letter_topic_id", "dlq_id", "has no output `dlq_id`"),
    ("environments/production/main.tf", "var.kms_key_name", "var.kms_key", "`var.kms_key` is not a declared"),
])
def test_the_schema_check_catches_what_validate_would(tmp_path, schema, path, old, new, expected):
    problems = provider_schema.check(schema, mutated_copy(tmp_path, path, old, new))
    assert any(expected in p for p in problems), problems


def test_topology_drives_topics_functions_jobs_and_schedules():
    """for_each over the yamldecoded topology: a function added to topology.yaml needs no .tf change."""
    main = locals_of(ENV / "main.tf")
    assert "yamldecode(file(" in main["topology"] and "topology.yaml" in main["topology"]
    assert main["topics"] == "${local.topology.topics}" and main["functions"] == "${local.topology.functions}"
    assert main["jobs"] == "${local.topology.jobs}" and "local.topology.schedules" in main["schedules"]
    modules = {name: body for _, _, name, body in blocks("module", ENV)}
    assert modules["topics"]["for_each"] == "${local.topics}"
    assert modules["functions"]["for_each"] == "${local.functions}"
    assert modules["jobs"]["for_each"] == "${local.jobs}"
    resources = {(t, n): b for _, t, n, b in blocks("resource", ENV)}
    assert resources[("google_cloud_scheduler_job", "schedule")]["for_each"] == "${local.schedules}"
    assert resources[("google_pubsub_subscription", "pull")]["for_each"] == "${local.subscriptions}"
    assert resources[("google_pubsub_subscription_iam_member", "reader")]["for_each"] == "${local.subscriptions}"
    assert resources[("google_service_account", "workload")]["for_each"] == "${local.workloads}"
    # the topology has what these iterate over, and every function's source is packaged
    topo = topology.load()
    assert topo.topics and topo.functions and topo.jobs and topo.schedules and topo.subscriptions
    for fn in topo.functions.values():
        assert (ROOT / fn.source / "main.py").is_file()


def check_dead_letters(root: Path) -> None:
    subscriptions = [(p, n, b) for p, t, n, b in blocks("resource", root) if t == "google_pubsub_subscription"]
    assert subscriptions
    for path, name, body in subscriptions:
        if "dead_letter" in body["topic"]:          # a dead-letter topic's own subscription: the end of the line
            assert body.get("retain_acked_messages") is True, (path, name)
            continue
        [policy] = body.get("dead_letter_policy") or [None]
        assert policy and policy.get("dead_letter_topic") and policy.get("max_delivery_attempts"), (path, name)
        assert body.get("retry_policy"), (path, name)


def test_every_subscription_has_a_dead_letter_policy():
    check_dead_letters(TF)


def test_every_topic_has_a_dead_letter_topic_the_pubsub_agent_may_publish_to():
    topic_module = {(t, n): b for _, t, n, b in blocks("resource", TF / "modules" / "topic")}
    assert ("google_pubsub_topic", "dead_letter") in topic_module
    grant = topic_module[("google_pubsub_topic_iam_member", "dead_letter_publisher")]
    assert unq(grant["role"]) == "roles/pubsub.publisher" and "pubsub_service_agent" in grant["member"]


def check_iam(root: Path) -> None:
    roles = set()
    for path, rtype, name, body in blocks("resource", root):
        for text in strings(body):
            assert not re.search(r"\ballUsers\b|\ballAuthenticatedUsers\b", text) or "contains(" in text, \
                (path, rtype, name, text)
        if rtype.endswith("_iam_member") or rtype.endswith("_iam_binding"):
            role = unq(body["role"])
            if role.startswith("${"):
                assert role == "${each.value.role}", (path, name, role)   # the roles of the maps below
            else:
                roles.add(role)
    assert "roles/editor" not in roles and "roles/owner" not in roles
    iam_locals = locals_of(root / "environments" / "production" / "iam.tf")
    project_roles = {k: [unq(r) for r in v] for k, v in iam_locals["project_roles"].items()}
    assert project_roles == PROJECT_ROLES
    roles |= {r for rs in project_roles.values() for r in rs}
    roles |= set(re.findall(r'role = "(roles/[\w.]+)"', iam_locals["prefix_grants"]))   # the bucket prefixes
    assert roles == ALLOWED_ROLES, f"unexpected: {roles - ALLOWED_ROLES}, unused: {ALLOWED_ROLES - roles}"


def test_nothing_is_public_and_every_role_is_allow_listed():
    check_iam(TF)


@pytest.mark.parametrize(("path", "old", "new", "check"), [
    ("modules/function/main.tf", "  dead_letter_policy {", "  dynamic_dead_letter_removed {", check_dead_letters),
    ("environments/production/iam.tf", '"roles/cloudtrace.agent"]\n    job',
     '"roles/cloudtrace.agent", "roles/editor"]\n    job', check_iam),
    ("environments/production/iam.tf", 'role     = "roles/run.developer"', 'role     = "roles/run.admin"', check_iam),
    ("modules/job/main.tf", "member   = each.value", 'member   = "allUsers"', check_iam),
])
def test_the_checks_catch_a_weakened_deployment(tmp_path, path, old, new, check):
    """Removing a dead-letter policy, granting roles/editor or a broader role, or a public member fails."""
    copy = mutated_copy(tmp_path, path, old, new)
    with pytest.raises(AssertionError):
        check(copy)


def test_buckets_are_locked_down_and_jobs_only_create_objects():
    resources = {(t, n): b for _, t, n, b in blocks("resource", ENV)}
    hardened = resources[("google_storage_bucket", "hardened")]   # the data and sources buckets, one body
    buckets = locals_of(ENV / "storage.tf")["buckets"]
    assert hardened["for_each"] == "${local.buckets}" and set(buckets) == {"data", "sources"}
    assert hardened["uniform_bucket_level_access"] is True and unq(hardened["public_access_prevention"]) == "enforced"
    assert hardened["versioning"][0]["enabled"] is True and hardened["logging"]
    assert "soft_delete_policy" in str(hardened["dynamic"]) and buckets["data"]["soft_delete_days"]
    assert "reports/" in str(buckets["data"]["expire"]) and "lifecycle_rule" in str(hardened["dynamic"])
    notification = resources[("google_storage_notification", "incoming")]
    assert unq(notification["object_name_prefix"]) == "incoming/" and "data-arrived" in notification["topic"]
    assert 'hardened["data"]' in notification["bucket"]
    prefixes = resources[("google_storage_bucket_iam_member", "prefixes")]
    assert prefixes["role"] == "${each.value.role}" and prefixes["for_each"] == "${local.prefix_grants}"
    assert prefixes["condition"][0]["expression"]   # never unconditioned: see SERVICE_ACCOUNT_GRANTS


def test_every_secret_is_one_pair_of_resources_and_nothing_iterates_over_a_sensitive_value():
    """The secrets share one body (for_each over their ids); a for_each or count that depends on a sensitive
    variable fails `terraform plan` ("Sensitive values ... cannot be used as for_each arguments"), so a sensitive
    variable is read only inside nonsensitive() (whether it is set) or as a secret's data."""
    resources = {(t, n): b for _, t, n, b in blocks("resource", ENV)}
    secrets = [n for t, n in resources if t == "google_secret_manager_secret"]
    assert secrets == ["tollgate"] and resources[("google_secret_manager_secret", "tollgate")]["for_each"] == \
        "${local.secret_ids}"
    assert set(locals_of(ENV / "secrets.tf")["secret_data"]) == {"feedback_key", "console_key", "review_webhook",
                                                                   "mlflow_uri"}
    sensitive = [unq(n) for b in hcl2.load((ENV / "variables.tf").open())["variable"] for n, v in b.items()
                 if v.get("sensitive")]
    assert {"review_webhook_url", "mlflow_tracking_uri"} <= set(sensitive)
    for path in ENV.glob("*.tf"):
        for line in path.read_text().splitlines():
            for name in sensitive:
                if f"var.{name}" in line and not line.strip().startswith("#"):
                    assert "nonsensitive(" in line or re.match(rf"\s*\w+\s*=\s*var\.{name}\s*$", line), \
                        (path.name, line)


def test_functions_and_jobs_run_the_deployables_of_the_topology():
    function = {(t, n): b for _, t, n, b in blocks("resource", TF / "modules" / "function")}
    config = function[("google_cloudfunctions2_function", "function")]["service_config"][0]
    assert config["service_account_email"] == "${var.service_account_email}"
    job = {(t, n): b for _, t, n, b in blocks("resource", TF / "modules" / "job")}
    template = job[("google_cloud_run_v2_job", "job")]["template"][0]["template"][0]
    assert template["timeout"] and template["max_retries"] == "${var.max_retries}"
    jobs_module = {name: body for _, _, name, body in blocks("module", ENV)}["jobs"]
    # the image is the Dockerfile target named like the job
    assert unq(jobs_module["image"]) == "${local.registry}/${each.key}:${var.image_tag}"
    pins = (ROOT / "functions" / "requirements.txt").read_text().split()
    constraints = set((ROOT / "constraints.txt").read_text().lower().split())
    assert all(pin.lower() in constraints for pin in pins if "==" in pin)


def test_each_dataset_has_its_predictor_service_before_its_first_model():
    """The service the promotions then take over (tollgate.cloud.run.set_traffic): same name, health route
    and image; not public; terraform leaves its revisions and traffic to them."""
    from tollgate import spec as specs
    from tollgate.cloud import run as cloudrun

    predictors = {name: body for _, _, name, body in blocks("module", ENV)}["predictors"]
    assert predictors["for_each"] == "${local.datasets}"
    assert unq(predictors["name"]) == 'predictor-${replace(each.key, "_", "-")}'
    assert 'replace("_", "-")' in (ROOT / "shared" / "tollgate" / "cloud" / "run.py").read_text()  # the same rule
    validation = [v for b in hcl2.load((ENV / "variables.tf").open())["variable"] for n, v in b.items()
                  if unq(n) == "datasets"][0]["validation"][0]
    # the same names (RE2 has no lookahead: the length is checked apart)
    assert specs.DATASET_NAME.pattern == r"(?=.{1,30}\Z)[a-z](?:_?[a-z0-9])*"
    assert 'length(d) <= 30 && can(regex("^[a-z](_?[a-z0-9])*$", d))' in validation["condition"]
    assert predictors["image"] == "${local.predictor_env.TOLLGATE_PREDICTOR_IMAGE}"
    assert predictors["service_account_email"] == '${google_service_account.workload["predictor"].email}'
    spec_names = {specs.load(p).name for p in (ROOT / "datasets").glob("*.yaml")}
    assert "yamldecode" in locals_of(ENV / "predictor.tf")["datasets"] and spec_names == {"chicago_taxi",
                                                                                       "breast_cancer"}
    assert {cloudrun.service_id(n) for n in spec_names} == {"predictor-chicago-taxi", "predictor-breast-cancer"}

    service = {(t, n): b for _, t, n, b in blocks("resource", TF / "modules" / "predictor")}[
        ("google_cloud_run_v2_service", "predictor")]
    container = service["template"][0]["containers"][0]
    health = topology.load().services["predictor"].health_path
    assert unq(container["startup_probe"][0]["http_get"][0]["path"]) == health
    env = container["dynamic"][0]['"env"']["for_each"]
    assert "DATASET = var.dataset" in env and "MODEL_VERSION" not in env   # no model: the 503 revision
    ignored = service["lifecycle"][0]["ignore_changes"]
    assert {"template", "traffic"} <= set(ignored)
    assert "invoker_iam_disabled" not in service and "allUsers" not in str(service)


def test_only_the_functions_that_sync_mlflow_read_its_secret():
    """The MLflow URL may carry credentials: the tracking function and the reconciler (topology `mlflow`) read
    it, nobody else."""
    users = locals_of(ENV / "iam.tf")["mlflow_users"]
    assert "try(f.mlflow, false)" in users and "local.functions" in users
    assert {n for n, f in topology.load().functions.items() if f.mlflow} == {"tracking", "reconciler"}


def test_every_workload_that_raises_alerts_or_reviews_gets_the_webhook_secret():
    """The monitor job posts alerts, the decider review requests: both read TOLLGATE_REVIEW_WEBHOOK."""
    users = locals_of(ENV / "iam.tf")["webhook_users"]
    assert '"review-requested", "alerts"' in users and "local.workloads" in users
    modules = {name: body for _, _, name, body in blocks("module", ENV)}
    for name in ("functions", "jobs"):
        assert modules[name]["secret_environment"] == "${local.secret_env[each.key]}"
    secret_env = locals_of(ENV / "iam.tf")["secret_env"]
    assert "contains(local.webhook_users, name) ? local.webhook_env : {}" in secret_env
    assert "contains(local.mlflow_users, name) ? local.mlflow_env : {}" in secret_env
    publishers = {n for n, j in topology.load().jobs.items() if "alerts" in j.publishes}
    assert publishers == {"monitor"}
    job = {(t, n): b for _, t, n, b in blocks("resource", TF / "modules" / "job")}[("google_cloud_run_v2_job", "job")]
    secret = [d['"env"'] for d in job["template"][0]["template"][0]["containers"][0]["dynamic"]
              if d.get('"env"', {}).get("for_each") == "${var.secret_environment}"]
    assert secret and secret[0]["content"][0]["value_source"][0]["secret_key_ref"][0]["secret"] == "${env.value}"


# Firestore queries that filter on one field and order by another need a composite index on GCP (the emulator
# needs none, so no e2e test can notice). Each State method (cloud/state/) that does both is listed with its index, or
# with why it needs none.
COMPOSITE_QUERIES = {
    "list_runs": ("runs", [("dataset", "ASCENDING"), ("created_at", "DESCENDING")]),
    "alerts": None,   # filters by dataset or orders by time, never both (sorted in memory)
}


def test_every_filtered_and_ordered_firestore_query_has_its_index():
    source = "\n".join(p.read_text() for p in sorted((ROOT / "shared" / "tollgate" / "cloud" / "state").glob("*.py")))
    methods = re.split(r"\n    def ", source)
    both = {m.split("(")[0] for m in methods if ".where(" in m and ".order_by(" in m}
    assert both == set(COMPOSITE_QUERIES), "a new filtered and ordered query: add its index to main.tf and here"
    indexes = [body for _, t, _, body in blocks("resource", ENV) if t == "google_firestore_index"]
    declared = {(unq(i["collection"]), tuple((unq(f["field_path"]), unq(f["order"])) for f in i["fields"]))
                for i in indexes}
    for method, index in COMPOSITE_QUERIES.items():
        if index is not None:
            collection, fields = index
            assert (collection, tuple(fields)) in declared, method
            body = next(m for m in methods if m.startswith(method + "("))
            assert f'collection("{collection}")' in body and all(f'"{f}"' in body for f, _ in fields), method


# -- every service account's grants, against an allow-list kept here -------------------------------------------
# A grant is (role, scope): scope None is unconditioned; a tuple of bucket prefixes is an IAM condition on the
# object name (only those prefixes); "predictor-*" the condition on predictor services.
def grants(*roles: str, scope=None) -> set:
    return {(role, scope) for role in roles}


_BASE = grants("roles/datastore.user", "roles/logging.logWriter", "roles/storage.objectViewer")
_LAUNCHER = _BASE | grants("roles/run.jobsExecutorWithOverrides", "roles/run.invoker")   # invoker: its own push
_JOB = _BASE | grants("roles/pubsub.publisher")
_DEPLOYER = grants("roles/run.developer", scope="predictor-*") | grants("roles/iam.serviceAccountUser")
SERVICE_ACCOUNT_GRANTS = {
    "ingest": _LAUNCHER, "launch-trainer": _LAUNCHER, "launch-evaluator": _LAUNCHER, "launch-monitor": _LAUNCHER,
    "decider": _BASE | _DEPLOYER | grants("roles/pubsub.publisher", "roles/run.invoker",
                                          "roles/secretmanager.secretAccessor"),
    "review": _BASE | _DEPLOYER | grants("roles/pubsub.publisher"),   # HTTP: its callers are the reviewers
    "review-expiry": _BASE | grants("roles/pubsub.publisher", "roles/run.invoker"),
    # reads Firestore and the bucket (reports, models) and the MLflow URL; writes only to MLflow
    "tracking": _BASE | grants("roles/run.invoker", "roles/secretmanager.secretAccessor"),
    "reconciler": _BASE | _DEPLOYER | grants("roles/pubsub.publisher", "roles/run.invoker", "roles/run.viewer",
                                             "roles/secretmanager.secretAccessor"),
    # the validator loads each curated batch into BigQuery, the trainer queries its window there (the curated
    # dataset's data editor and viewer)
    "validator": _JOB | grants("roles/storage.objectCreator", scope=("curated/", "quarantine/", "reports/"))
    | grants("roles/bigquery.jobUser", "roles/bigquery.dataEditor"),
    "trainer": _JOB | grants("roles/storage.objectCreator", scope=("models/", "reports/"))
    | grants("roles/bigquery.jobUser", "roles/bigquery.readSessionUser", "roles/bigquery.dataViewer"),
    "evaluator": _JOB | grants("roles/storage.objectCreator", scope=("reports/",)),
    # the monitor queries the warehouse (BigQuery subscriptions write it: no pull subscription on GCP)
    # and deletes old rows of the two log tables (retention_days): their data editor
    "monitor": _JOB | _DEPLOYER | grants("roles/secretmanager.secretAccessor", "roles/bigquery.jobUser",
                                         "roles/bigquery.readSessionUser", "roles/bigquery.dataViewer",
                                         "roles/bigquery.dataEditor")
    | grants("roles/storage.objectCreator", scope=("warehouse/",))
    | grants("roles/storage.objectUser", scope=("reports/monitoring/",)),
    # the internet-facing predictor: reads its model and its registry record, publishes its log, nothing else
    "predictor": grants("roles/datastore.viewer", "roles/logging.logWriter", "roles/pubsub.publisher",
                        "roles/secretmanager.secretAccessor")
    | grants("roles/storage.objectViewer", scope=("models/",)),
    "function-build": grants("roles/logging.logWriter", "roles/storage.objectViewer", "roles/artifactregistry.writer"),
    # the console decides reviews and moves serving (as the review function and `tollgate rollback`) and reads
    # reports and models; its CSRF key is a secret
    "console": _BASE | _DEPLOYER | grants("roles/pubsub.publisher", "roles/secretmanager.secretAccessor"),
}
# functions and jobs write each run's spans to Cloud Trace (tollgate/tracing.py)
for _name in [*topology.load().functions, *topology.load().jobs]:
    SERVICE_ACCOUNT_GRANTS[_name] = SERVICE_ACCOUNT_GRANTS[_name] | grants("roles/cloudtrace.agent")
OBJECTS = "resource.name.startsWith(\\\"${local.objects}"


def _scope(body: dict, for_each_scope) -> object:
    """A grant's condition as a scope: the bucket prefixes it allows, or "predictor-*"."""
    [condition] = body.get("condition") or [None]
    if condition is None:
        return None
    expression = unq(condition["expression"])
    if "local.predictor_services" in expression:
        return "predictor-*"
    if expression == ('${join(" || ", [for prefix in each.value.prefixes : "resource.name.startsWith(\\"'
                      '${local.objects}${prefix}\\")"])}'):
        return for_each_scope
    found = re.findall(r'startsWith\(\\"\$\{local\.objects\}([^"\\]+)\\"\)', expression)
    assert found, expression
    return tuple(found)


def granted(root: Path = TF) -> dict[str, set]:
    """Each Tollgate service account's grants, by evaluating every IAM grant's for_each over the topology
    (with the review webhook configured). Grants to people (var.*) and Google's agents are not ours."""
    topo = topology.load()
    kinds = {**{f: "function" for f in topo.functions}, **{j: "job" for j in topo.jobs}, "predictor": "predictor",
             "console": "console"}
    publishes = {**{n: f.publishes for n, f in topo.functions.items()},
                 **{n: j.publishes for n, j in topo.jobs.items()},
                 **{n: s.publishes for n, s in topo.services.items()}}
    deployers = {n for n, f in {**topo.functions, **topo.jobs, **topo.services}.items() if f.deploys_predictor}
    iam = locals_of(root / "environments" / "production" / "iam.tf")
    project_roles = {k: [unq(r) for r in v] for k, v in iam["project_roles"].items()}
    # what each for_each iterates: (service account, role if the grant takes it from each.value, the scope
    # of a condition built from each.value)
    for_each = {
        "${local.project_grants}": [(sa, r, None) for sa, k in kinds.items() for r in project_roles[k]],
        "${local.workloads}": [(sa, None, None) for sa in kinds],
        '${{for name, w in local.workloads : name => w if w.kind != "predictor"}}':
            [(sa, None, None) for sa, k in kinds.items() if k != "predictor"],
        "${local.jobs}": [(sa, None, None) for sa in topo.jobs],
        "${local.prefix_grants}": [(sa, "roles/storage.objectCreator", j.writes) for sa, j in topo.jobs.items()
                                   if j.writes]
                                  + [(sa, "roles/storage.objectUser", j.updates) for sa, j in topo.jobs.items()
                                     if j.updates],
        "${local.publish_grants}": [(sa, None, None) for sa, topics in publishes.items() if topics],
        "${toset(local.deployers)}": [(sa, None, None) for sa in deployers],
        "${toset(local.webhook_users)}": [(sa, None, None) for sa, topics in publishes.items()
                                          if {"review-requested", "alerts"} & set(topics)],
        "${toset(local.mlflow_users)}": [(sa, None, None) for sa, f in topo.functions.items() if f.mlflow],
        "${local.subscriptions}": [(s.reader, None, None) for s in topo.subscriptions.values() if not s.local_only],
        "${toset(local.warehouse_readers)}": [(sa, None, None) for sa, j in topo.jobs.items() if j.warehouse],
        "${{for pair in setproduct(local.warehouse_readers, [\"roles/bigquery.jobUser\", "
        "\"roles/bigquery.readSessionUser\"]) : \"${pair[0]} ${pair[1]}\" => {sa = pair[0], role = pair[1]}}}":
            [(sa, role, None) for sa, j in topo.jobs.items() if j.warehouse
             for role in ("roles/bigquery.jobUser", "roles/bigquery.readSessionUser")],
        "${{for grant in local.curated_project_roles : \"${grant.sa} ${grant.role}\" => grant}}":
            [(sa, "roles/bigquery.jobUser", None) for sa, j in topo.jobs.items() if j.curated]
            + [(sa, "roles/bigquery.readSessionUser", None) for sa, j in topo.jobs.items() if j.curated == "read"],
        "${toset(local.curated_loaders)}": [(sa, None, None) for sa, j in topo.jobs.items() if j.curated == "load"],
        "${toset(local.curated_readers)}": [(sa, None, None) for sa, j in topo.jobs.items() if j.curated == "read"],
        "${{for pair in setproduct(local.warehouse_pruners, keys(local.warehouse_records)) : "
        "\"${pair[0]} ${pair[1]}\" => {sa = pair[0], table = pair[1]}}}":
            [(sa, None, None) for sa, j in topo.jobs.items() if j.warehouse == "prune"],
    }
    # ... and the locals say what this mirrors
    assert "local.project_roles[w.kind]" in iam["project_grants"] and "w.publishes" in iam["publish_grants"]
    assert "deploys_predictor" in iam["deployers"] and '"review-requested", "alerts"' in iam["webhook_users"]
    assert "local.topology.services" in iam["deployers"]
    assert 'role = "roles/storage.objectCreator", prefixes = j.writes' in iam["prefix_grants"]
    assert 'role = "roles/storage.objectUser", prefixes = j.updates' in iam["prefix_grants"]
    assert "watches_jobs" in iam["job_watchers"]
    found: dict[str, set] = {}
    for path, rtype, name, body in blocks("resource", root / "environments" / "production"):
        if not rtype.endswith("_iam_member"):
            continue
        member, role = unq(body["member"]), unq(body["role"])
        workload = re.fullmatch(r"serviceAccount:\$\{google_service_account\.workload\[each\.(key|value\.sa|value\."
                                r"reader)\]\.email\}", member)
        one = re.fullmatch(r'serviceAccount:\$\{google_service_account\.workload\["([a-z-]+)"\]\.email\}', member)
        if "google_service_account.function_build.email" in member:
            found.setdefault("function-build", set()).add((role, _scope(body, None)))
        elif one:
            assert "for_each" not in body, (path, name)
            found.setdefault(one.group(1), set()).add((role, _scope(body, None)))
        elif workload:
            assert body["for_each"] in for_each, (path, name, body["for_each"])
            for sa, each_role, each_scope in for_each[body["for_each"]]:
                found.setdefault(sa, set()).add((each_role if role == "${each.value.role}" else role,
                                                 _scope(body, each_scope)))
        else:   # people named in variables, or Google's service agents
            assert re.search(r"each\.value|local\.(pubsub|scheduler|iap)_agent|data\.google_storage_project", member), \
                (path, name, member)
    modules = {name: body for _, _, name, body in blocks("module", root / "environments" / "production")}
    assert "local.launchers[each.key]" in modules["jobs"]["launchers"]   # jobsExecutorWithOverrides, per job
    assert "local.job_watchers" in modules["jobs"]["viewers"]            # run.viewer, per job
    for fn in topo.functions.values():
        if fn.env.get("JOB"):
            found[fn.name].add(("roles/run.jobsExecutorWithOverrides", None))
        if fn.watches_jobs:
            found[fn.name].add(("roles/run.viewer", None))
        if fn.trigger_topic:   # the push subscription's token is the function's own: it invokes itself
            found[fn.name].add(("roles/run.invoker", None))
    return found


def check_service_accounts(root: Path) -> None:
    found = granted(root)
    assert found == SERVICE_ACCOUNT_GRANTS, {sa: (found.get(sa, set()) ^ g) for sa, g in
                                             SERVICE_ACCOUNT_GRANTS.items() if found.get(sa) != g}


def test_no_workload_may_write_specs_or_incoming():
    """Specs say what runs; incoming/ is the users' own: only people (the deployer) write them."""
    for sa, held in granted().items():
        for role, scope in held:
            if role in ("roles/storage.objectCreator", "roles/storage.objectUser", "roles/storage.objectAdmin"):
                assert isinstance(scope, tuple) and not any(p.startswith(("specs/", "incoming/")) for p in scope), sa


def test_each_service_account_holds_exactly_its_allow_listed_roles():
    check_service_accounts(TF)
    function = {(t, n): b for _, t, n, b in blocks("resource", TF / "modules" / "function")}
    invoker = function[("google_cloud_run_v2_service_iam_member", "invoker")]["for_each"]
    assert '["serviceAccount:${var.service_account_email}"]' in invoker and "var.trigger_topic_id == null" in invoker


@pytest.mark.parametrize(("old", "new"), [
    ('prefixes = j.writes, does = "Create"', 'prefixes = j.updates, does = "Create"'),   # another list's prefixes
    ('role = "roles/storage.objectUser"', 'role = "roles/storage.objectAdmin"'),          # a wider role
    ("for_each  = toset(local.webhook_users)", "for_each  = local.workloads"),   # everyone reads the secret
    ('role     = "roles/storage.objectViewer"', 'role     = "roles/storage.objectAdmin"'),
    ('objects}models/', 'objects}'),                                              # the predictor reads everything
    ('predictor = ["roles/datastore.viewer"', 'predictor = ["roles/datastore.user"'),   # and writes Firestore
    ('objects under ${join(", ", each.value.prefixes)}"\n    expression  = join(',   # no condition at all
     'x"\n    expression  = join(" || ", ["true"]) == join('),
])
def test_the_allow_list_catches_a_widened_grant(tmp_path, old, new):
    copy = mutated_copy(tmp_path, "environments/production/iam.tf", old, new)
    with pytest.raises(AssertionError):
        check_service_accounts(copy)


def test_the_warehouse_tables_are_the_ones_the_code_reads_and_the_subscriptions_fill_them_by_kind():
    """BigQuery's tables have the record fields tollgate.warehouse writes locally and queries everywhere;
    each BigQuery subscription takes the messages whose `kind` attribute names its table (what the predictor
    and the monitor set), expires with the retention, and only the monitor reads them."""
    from tollgate.warehouse import tables

    warehouse = locals_of(TF / "environments" / "production" / "bigquery.tf")
    fields = {table: tuple((unq(name), unq(kind)) for name, kind in records)
              for table, records in warehouse["warehouse_records"].items()}
    assert fields == tables.RECORD_FIELDS
    resources = {(rtype, name): body for _, rtype, name, body in blocks("resource", TF / "environments" / "production")}
    subscription = resources[("google_pubsub_subscription", "warehouse")]
    assert unq(subscription["filter"]) == 'attributes.kind = \\"${each.key}\\"'
    [config] = subscription["bigquery_config"]
    assert config["use_table_schema"] and config["write_metadata"] and config["drop_unknown_fields"]
    [partitioning] = resources[("google_bigquery_table", "warehouse")]["time_partitioning"]
    assert unq(partitioning["field"]) == "publish_time" and unq(partitioning["type"]) == "HOUR"
    assert resources[("google_bigquery_table", "warehouse")]["require_partition_filter"]
    columns = re.findall(r'name = "(\w+)", type = "(\w+)"', resources[("google_bigquery_table", "warehouse")]["schema"])
    assert {"message_id", "publish_time"} <= {name for name, _ in columns}       # the subscription's metadata
    assert set(tables.MESSAGE_FIELDS) <= set(columns)                             # the message's own fields
    predlog = (ROOT / "services" / "predictor" / "predlog.py").read_text()
    assert '"kind": kind' in predlog and '_publish_chunks(SCHEMA, "predictions"' in predlog
    assert 'kind=tables.LABELS' in (ROOT / "shared" / "tollgate" / "jobs" / "monitor.py").read_text()
    assert {j.name for j in topology.load().jobs.values() if j.warehouse} == {"monitor"}
