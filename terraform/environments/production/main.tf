# Tollgate on Google Cloud: everything topology.yaml declares, plus the bucket, Firestore, images,
# service accounts and their grants. `terraform apply`, then drop a file into gs://BUCKET/incoming/.

locals {
  root     = abspath("${path.module}/../../..")
  topology = yamldecode(file(coalesce(var.topology_file, "${local.root}/topology.yaml")))

  topics    = local.topology.topics
  functions = local.topology.functions
  jobs      = local.topology.jobs
  schedules = try(local.topology.schedules, {})
  # pull subscriptions a job reads on Google Cloud (`local_only` ones stand in locally for a managed service)
  subscriptions = { for name, s in try(local.topology.subscriptions, {}) : name => s if !try(s.local_only, false) }

  bucket = coalesce(var.bucket_name, "${var.project_id}-tollgate")
  # whether the optional secrets are set is not secret (for_each and count may not depend on a sensitive value)
  webhook  = nonsensitive(var.review_webhook_url != "")
  mlflow   = nonsensitive(var.mlflow_tracking_uri != "")
  registry = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"

  # What every workload needs to find the project (Settings.from_env).
  base_env = {
    GOOGLE_CLOUD_PROJECT              = var.project_id
    TOLLGATE_BUCKET                   = local.bucket
    TOLLGATE_REGION                   = var.region
    TOLLGATE_CODE_VERSION             = var.image_tag
    TOLLGATE_WAREHOUSE                = "bigquery"
    TOLLGATE_BIGQUERY_DATASET         = var.bigquery_dataset
    TOLLGATE_BIGQUERY_CURATED_DATASET = var.bigquery_curated_dataset
    # The one egress rule (tollgate/egress.py): URLs from configuration reach only global addresses and these.
    TOLLGATE_EGRESS_ALLOW            = join(",", var.egress_allow)
    TOLLGATE_MLFLOW_ARTIFACT_BUCKETS = join(",", var.mlflow_artifact_buckets)
  }
  # What a workload that deploys the predictor rolls each new model revision from (functions get it all).
  predictor_env = merge(local.base_env, {
    TOLLGATE_PREDICTOR_IMAGE         = "${local.registry}/predictor:${var.image_tag}"
    TOLLGATE_PREDICTOR_SA            = google_service_account.workload["predictor"].email
    TOLLGATE_PREDICTOR_MIN_INSTANCES = tostring(var.predictor_min_instances)
    TOLLGATE_FEEDBACK_KEY_SECRET     = google_secret_manager_secret.tollgate["feedback_key"].secret_id
  })

  pubsub_agent    = "service-${data.google_project.project.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  scheduler_agent = "service-${data.google_project.project.number}@gcp-sa-cloudscheduler.iam.gserviceaccount.com"
}

data "google_project" "project" {
  project_id = var.project_id
}

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com", "bigquery.googleapis.com", "bigquerystorage.googleapis.com", "cloudbuild.googleapis.com", "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com", "cloudtrace.googleapis.com", "compute.googleapis.com", "firestore.googleapis.com", "iam.googleapis.com", "iap.googleapis.com", "pubsub.googleapis.com",
    "run.googleapis.com", "secretmanager.googleapis.com", "storage.googleapis.com",
  ])
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = "tollgate"
  description   = "Tollgate job and predictor images, tagged with the commit SHA"
  format        = "DOCKER"
  labels        = var.labels
  kms_key_name  = var.kms_key_name

  docker_config {
    immutable_tags = true
  }

  depends_on = [google_project_service.apis]
}

resource "google_firestore_database" "default" {
  count                             = var.create_firestore_database ? 1 : 0
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"

  depends_on = [google_project_service.apis]
}

# The one query Firestore cannot answer from its automatic single-field indexes: a dataset's runs, newest
# first (`tollgate runs --dataset D`, State.list_runs). The emulator needs none; tests/test_terraform.py
# keeps the list of such queries.
resource "google_firestore_index" "runs_by_dataset" {
  project    = var.project_id
  database   = "(default)"
  collection = "runs"

  fields {
    field_path = "dataset"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }

  depends_on = [google_firestore_database.default]
}

# The predictors' request-id key (TOLLGATE_FEEDBACK_KEY): random, made once, kept in Secret Manager. Every
# revision of every predictor reads it, so a label can name a request any of them answered.
resource "random_password" "feedback_key" {
  length  = 48
  special = false
}

