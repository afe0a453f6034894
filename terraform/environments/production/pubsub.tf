# Every topology topic, each with a dead-letter topic and that topic's own subscription.

module "topics" {
  source   = "../../modules/topic"
  for_each = local.topics

  project_id           = var.project_id
  name                 = each.key
  labels               = var.labels
  pubsub_service_agent = local.pubsub_agent
  kms_key_name         = var.kms_key_name

  depends_on = [google_project_service.apis]
}

# Pull subscriptions a job reads (topology `subscriptions`): e.g. the monitor drains the prediction log
# on each tick. Only the reading job may pull; undeliverable messages go to the topic's dead letters.
resource "google_pubsub_subscription" "pull" {
  for_each = local.subscriptions

  project                    = var.project_id
  name                       = each.key
  topic                      = module.topics[each.value.topic].id
  labels                     = var.labels
  ack_deadline_seconds       = try(each.value.ack_deadline_seconds, 60)
  message_retention_duration = try(each.value.retention, "604800s")

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = module.topics[each.value.topic].dead_letter_topic_id
    max_delivery_attempts = 10
  }

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription_iam_member" "reader" {
  for_each = local.subscriptions

  project      = var.project_id
  subscription = google_pubsub_subscription.pull[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.workload[each.value.reader].email}"
}

# Pub/Sub moves dead letters as its own agent, which must be able to acknowledge them here.
resource "google_pubsub_subscription_iam_member" "pull_dead_letter_subscriber" {
  for_each = local.subscriptions

  project      = var.project_id
  subscription = google_pubsub_subscription.pull[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.pubsub_agent}"
}
