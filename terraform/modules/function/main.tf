# One topology function: a Cloud Functions (2nd gen) function running the shared code under its own
# service account, and, for an event function, the Pub/Sub push subscription that feeds it.
#
# Why a push subscription and not an Eventarc trigger: Google's Pub/Sub trigger guide for Cloud Run
# functions recommends this "direct Pub/Sub trigger" (Eventarc only for its filtering and routing), and
# Eventarc creates its subscription itself, which terraform cannot give a dead-letter policy. This is the
# subscription Eventarc would create (push to the function's URL with an OIDC token, retried with
# backoff), plus a dead-letter topic, and exactly how the local cloud delivers events to
# functions-framework (which turns the push request into the CloudEvent the handler takes).

resource "google_cloudfunctions2_function" "function" {
  project     = var.project_id
  location    = var.region
  name        = var.name
  description = var.description
  labels      = var.labels

  build_config {
    runtime           = "python311"
    entry_point       = var.entry_point
    service_account   = "projects/${var.project_id}/serviceAccounts/${var.build_service_account_email}"
    docker_repository = var.docker_repository
    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email            = var.service_account_email
    ingress_settings                 = var.trigger_topic_id == null ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    available_memory                 = var.memory
    timeout_seconds                  = var.timeout_seconds
    max_instance_count               = var.max_instances
    max_instance_request_concurrency = 1
    environment_variables            = var.environment

    dynamic "secret_environment_variables" {
      for_each = var.secret_environment
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }
}

# Only the named invokers (the push identity, or the reviewers for an HTTP function) may call it.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = toset(concat(var.invokers, var.trigger_topic_id == null ? [] : ["serviceAccount:${var.service_account_email}"]))

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.function.name
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_pubsub_subscription" "trigger" {
  count = var.trigger_topic_id == null ? 0 : 1

  project                    = var.project_id
  name                       = "${var.name}-push"
  topic                      = var.trigger_topic_id
  labels                     = var.labels
  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.function.service_config[0].uri
    oidc_token {
      service_account_email = var.service_account_email
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = var.dead_letter_topic_id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }
}

# Pub/Sub mints the push OIDC token as the function's account, and moves dead letters as itself.
resource "google_service_account_iam_member" "push_token_creator" {
  count = var.trigger_topic_id == null ? 0 : 1

  service_account_id = "projects/${var.project_id}/serviceAccounts/${var.service_account_email}"
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${var.pubsub_service_agent}"
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  count = var.trigger_topic_id == null ? 0 : 1

  project      = var.project_id
  subscription = google_pubsub_subscription.trigger[0].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${var.pubsub_service_agent}"
}
