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
