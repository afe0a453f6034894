# Every topology function, packaged with the shared code (functions/<source>/main.py at the root of
# the zip, shared/tollgate as the `tollgate` package, functions/requirements.txt), each under its
# own service account. A function added to topology.yaml appears here with no .tf change.

locals {
  function_sources = toset([for f in values(local.functions) : f.source])
  # The review function records the reviewer its caller's Google ID token names, verified again in the code
  # (tollgate/identity.py) after Cloud Run IAM: a token for the function's own URL (a service account's), or for
  # the gcloud CLI's OAuth client, the audience of people's own `gcloud auth print-identity-token`.
  reviewer_env = { TOLLGATE_ID_AUDIENCES = "32555940559.apps.googleusercontent.com" }
  shared_files = fileset("${local.root}/shared", "tollgate/**/*.{py,json}")

}

data "archive_file" "function_source" {
  for_each    = local.function_sources
  type        = "zip"
  output_path = "${path.module}/.build/${replace(each.value, "/", "-")}.zip"

  source {
    filename = "main.py"
    content  = file("${local.root}/${each.value}/main.py")
  }
  source {
    filename = "requirements.txt"
    content  = file("${local.root}/functions/requirements.txt")
  }
  dynamic "source" {
    for_each = local.shared_files
    content {
      filename = source.value
      content  = file("${local.root}/shared/${source.value}")
    }
  }
}

resource "google_storage_bucket_object" "function_source" {
  for_each = local.function_sources
  bucket   = google_storage_bucket.hardened["sources"].name
  # The content hash in the name: a changed source is a new object, which redeploys the function.
  name   = "functions/${replace(each.value, "/", "-")}-${data.archive_file.function_source[each.value].output_md5}.zip"
  source = data.archive_file.function_source[each.value].output_path
}

module "functions" {
  source   = "../../modules/function"
  for_each = local.functions

  project_id                  = var.project_id
  region                      = var.region
  name                        = each.key
  description                 = "Tollgate ${each.key} (${each.value.source})"
  entry_point                 = each.value.entry_point
  source_bucket               = google_storage_bucket.hardened["sources"].name
  build_service_account_email = google_service_account.function_build.email
  docker_repository           = google_artifact_registry_repository.functions.id
  source_object               = google_storage_bucket_object.function_source[each.value.source].name
  service_account_email       = google_service_account.workload[each.key].email
  environment                 = merge(local.predictor_env, try(each.value.env, {}), try(each.value.trigger, "") == "http" ? local.reviewer_env : {})
  secret_environment          = local.secret_env[each.key]
  trigger_topic_id            = try(each.value.trigger_topic, null) == null ? null : module.topics[each.value.trigger_topic].id
  dead_letter_topic_id        = try(each.value.trigger_topic, null) == null ? null : module.topics[each.value.trigger_topic].dead_letter_topic_id
  max_delivery_attempts       = var.max_delivery_attempts
  invokers                    = try(each.value.trigger, "") == "http" ? var.reviewers : []
  pubsub_service_agent        = local.pubsub_agent
  labels                      = var.labels

  depends_on = [
    google_project_service.apis, google_secret_manager_secret_iam_member.webhook,
    google_secret_manager_secret_iam_member.mlflow_uri,
    google_project_iam_member.function_build_logs, google_storage_bucket_iam_member.function_build_sources,
    google_artifact_registry_repository_iam_member.function_build_images,
  ]
}

# Cloud Build builds each function as this account, not the project's default compute account (which new
# projects and many organisations leave without the roles a build needs): it reads the sources bucket,
# writes the images to their own repository, and writes its logs. Nothing else.
resource "google_service_account" "function_build" {
  project      = var.project_id
  account_id   = "tg-function-build"
  display_name = "Tollgate function builds"
}

resource "google_project_iam_member" "function_build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.function_build.email}"
}

resource "google_storage_bucket_iam_member" "function_build_sources" {
  bucket = google_storage_bucket.hardened["sources"].name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.function_build.email}"
}

resource "google_artifact_registry_repository_iam_member" "function_build_images" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.function_build.email}"
}

# The images Cloud Build makes from the function sources (their tags move with each build, so not the
# immutable `tollgate` repository); only recent versions are kept.
resource "google_artifact_registry_repository" "functions" {
  project       = var.project_id
  location      = var.region
  repository_id = "tollgate-functions"
  description   = "Tollgate function images built by Cloud Functions from the packaged sources"
  format        = "DOCKER"
  labels        = var.labels
  kms_key_name  = var.kms_key_name

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis]
}
