# A topology topic with its dead-letter topic. Messages a subscriber cannot take after
# max_delivery_attempts land in <name>-dead-letter, which keeps them on its own subscription
# for inspection and replay (`gcloud pubsub subscriptions pull <name>-dead-letter`).

resource "google_pubsub_topic" "topic" {
  project                    = var.project_id
  name                       = var.name
  labels                     = var.labels
  message_retention_duration = var.message_retention
  kms_key_name               = var.kms_key_name
}

resource "google_pubsub_topic" "dead_letter" {
  project                    = var.project_id
  name                       = "${var.name}-dead-letter"
  labels                     = var.labels
  message_retention_duration = var.message_retention
  kms_key_name               = var.kms_key_name
}

resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
  name                       = "${var.name}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true
  expiration_policy {
    ttl = ""
  }
}

# Pub/Sub forwards undeliverable messages as its own service agent.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${var.pubsub_service_agent}"
}
