# One service account per workload (each function, each job, the predictor), granted only what its
# code does, on the narrowest resource that carries the permission. tests/test_terraform.py keeps the
# allow-list these grants must equal.

locals {
  workloads = merge(
    { for name, f in local.functions : name => { kind = "function", publishes = try(f.publishes, []) } },
    { for name, j in local.jobs : name => { kind = "job", publishes = flatten([try(j.publishes, [])]) } },
    { predictor = { kind = "predictor", publishes = try(local.topology.services.predictor.publishes, []) } },
    { console = { kind = "console", publishes = try(local.topology.services.console.publishes, []) } },
  )

  # Firestore has no finer IAM than the project: runs, registry and ledger are read and written there. The
  # internet-facing predictor only reads its model's registry record: read-only. Functions and jobs write each
  # run's spans to Cloud Trace (tollgate/tracing.py).
  project_roles = {
    function  = ["roles/datastore.user", "roles/logging.logWriter", "roles/cloudtrace.agent"]
    job       = ["roles/datastore.user", "roles/logging.logWriter", "roles/cloudtrace.agent"]
    predictor = ["roles/datastore.viewer", "roles/logging.logWriter"]
    console   = ["roles/datastore.user", "roles/logging.logWriter"] # decides reviews, moves serving pointers
  }
  project_grants = merge([
    for name, w in local.workloads : { for role in local.project_roles[w.kind] : "${name} ${role}" => { sa = name, role = role } }
  ]...)

  publish_grants = merge([
    for name, w in local.workloads : { for topic in w.publishes : "${name} ${topic}" => { sa = name, topic = topic } }
  ]...)

  deployers = concat([for name, f in local.functions : name if try(f.deploys_predictor, false)],
    [for name, j in local.jobs : name if try(j.deploys_predictor, false)],
  [for name, s in local.topology.services : name if try(s.deploys_predictor, false)])
  # Functions that read the jobs' executions (the reconciler): run.viewer on each job.
  job_watchers = [for name, f in local.functions : name if try(f.watches_jobs, false)]
  launchers    = { for job in keys(local.jobs) : job => [for name, f in local.functions : name if try(f.env.JOB, "") == job] }

  # Who posts to the review webhook: the workloads that publish review requests or alerts.
  webhook_users = local.webhook ? [
    for name, w in local.workloads : name if length(setintersection(w.publishes, ["review-requested", "alerts"])) > 0
  ] : []
  webhook_env = local.webhook ? { TOLLGATE_REVIEW_WEBHOOK = google_secret_manager_secret.tollgate["review_webhook"].secret_id } : {}
  # Who syncs the MLflow mirror (topology `mlflow: true`): reads the tracking server's URL.
  mlflow_users = local.mlflow ? [for name, f in local.functions : name if try(f.mlflow, false)] : []
  mlflow_env   = local.mlflow ? { TOLLGATE_MLFLOW_URI = google_secret_manager_secret.tollgate["mlflow_uri"].secret_id } : {}
  # Each workload's variables from Secret Manager: only the secrets it uses.
  secret_env = { for name in keys(local.workloads) : name => merge(
    contains(local.webhook_users, name) ? local.webhook_env : {},
    contains(local.mlflow_users, name) ? local.mlflow_env : {},
  ) }

  # Predictor services are `predictor-<dataset>` (made by predictor.tf, or by a dataset's first promotion
  # when it is not listed there): grants on them are conditioned on that name.
  predictor_services = "projects/${var.project_id}/locations/${var.region}/services/predictor-"
}

resource "google_service_account" "workload" {
  for_each     = local.workloads
  project      = var.project_id
  account_id   = substr("tg-${each.key}", 0, 30)
  display_name = "Tollgate ${each.value.kind} ${each.key}"
}

resource "google_project_iam_member" "workload" {
  for_each = local.project_grants
  project  = var.project_id
  role     = each.value.role
  member   = "serviceAccount:${google_service_account.workload[each.value.sa].email}"
}

# The bucket, by prefix (IAM conditions on the object name). Every workload but the predictor reads it (specs,
# curated data, models, reports; they list too); the internet-facing predictor reads models/ only. Jobs
# create objects only under their topology `writes` (create-only: nothing is overwritten or deleted) and
# replace them only under `updates`. Nobody but the deployer writes specs/ or incoming/.
locals {
  objects = "projects/_/buckets/${local.bucket}/objects/"
  # "<job> create" → objectCreator under its `writes`, "<job> update" → objectUser under its `updates`
  prefix_grants = merge(
    { for name, j in local.jobs : "${name} create" => {
      sa = name, role = "roles/storage.objectCreator", prefixes = j.writes, does = "Create"
    } if length(try(j.writes, [])) > 0 },
    { for name, j in local.jobs : "${name} update" => {
      sa = name, role = "roles/storage.objectUser", prefixes = j.updates, does = "Replace"
    } if length(try(j.updates, [])) > 0 },
  )
}

resource "google_storage_bucket_iam_member" "read" {
  for_each = { for name, w in local.workloads : name => w if w.kind != "predictor" }
  bucket   = google_storage_bucket.hardened["data"].name
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${google_service_account.workload[each.key].email}"
}

resource "google_storage_bucket_iam_member" "predictor_models" {
  bucket = google_storage_bucket.hardened["data"].name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.workload["predictor"].email}"
  condition {
    title       = "models only"
    description = "The predictor reads its model's artifact, nothing else"
    expression  = "resource.name.startsWith(\"${local.objects}models/\")"
  }
}

resource "google_storage_bucket_iam_member" "prefixes" {
  for_each = local.prefix_grants
  bucket   = google_storage_bucket.hardened["data"].name
  role     = each.value.role
  member   = "serviceAccount:${google_service_account.workload[each.value.sa].email}"
  condition {
    title       = "own prefixes only"
    description = "${each.value.does} objects under ${join(", ", each.value.prefixes)}"
    expression  = join(" || ", [for prefix in each.value.prefixes : "resource.name.startsWith(\"${local.objects}${prefix}\")"])
  }
}

resource "google_pubsub_topic_iam_member" "publish" {
  for_each = local.publish_grants
  project  = var.project_id
  topic    = module.topics[each.value.topic].name
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.workload[each.value.sa].email}"
}

# The decider, the review function and the monitor (canary decisions) roll predictor revisions, only
# on predictor-* services, and only they may run those revisions as the predictor's account.
resource "google_project_iam_member" "deploy_predictor" {
  for_each = toset(local.deployers)
  project  = var.project_id
  role     = "roles/run.developer"
  member   = "serviceAccount:${google_service_account.workload[each.key].email}"
  condition {
    title       = "predictor services only"
    description = "Tollgate predictor-<dataset> services"
    expression  = "resource.name.startsWith(\"${local.predictor_services}\")"
  }
}

resource "google_service_account_iam_member" "act_as_predictor" {
  for_each           = toset(local.deployers)
  service_account_id = google_service_account.workload["predictor"].name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.workload[each.key].email}"
}

resource "google_project_iam_member" "predictor_invoker" {
  for_each = toset(var.predictor_invokers)
  project  = var.project_id
  role     = "roles/run.invoker"
  member   = each.value
  condition {
    title       = "predictor services only"
    description = "Call Tollgate predictor-<dataset> services"
    expression  = "resource.name.startsWith(\"${local.predictor_services}\")"
  }
}

resource "google_secret_manager_secret_iam_member" "webhook" {
  for_each  = toset(local.webhook_users)
  project   = var.project_id
  secret_id = google_secret_manager_secret.tollgate["review_webhook"].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.workload[each.key].email}"
}

resource "google_secret_manager_secret_iam_member" "mlflow_uri" {
  for_each  = toset(local.mlflow_users)
  project   = var.project_id
  secret_id = google_secret_manager_secret.tollgate["mlflow_uri"].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.workload[each.key].email}"
}

# The key that signs the predictors' request ids (POST /feedback accepts labels only for ids it issued).
resource "google_secret_manager_secret_iam_member" "feedback_key" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.tollgate["feedback_key"].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.workload["predictor"].email}"
}

# Where the bucket grants lived before create and update were one resource: existing grants are kept.
moved {
  from = google_storage_bucket_iam_member.create["validator"]
  to   = google_storage_bucket_iam_member.prefixes["validator create"]
}

moved {
  from = google_storage_bucket_iam_member.create["trainer"]
  to   = google_storage_bucket_iam_member.prefixes["trainer create"]
}

moved {
  from = google_storage_bucket_iam_member.create["evaluator"]
  to   = google_storage_bucket_iam_member.prefixes["evaluator create"]
}

moved {
  from = google_storage_bucket_iam_member.create["monitor"]
  to   = google_storage_bucket_iam_member.prefixes["monitor create"]
}

moved {
  from = google_storage_bucket_iam_member.update["monitor"]
  to   = google_storage_bucket_iam_member.prefixes["monitor update"]
}
