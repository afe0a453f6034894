# Periodic work declared in the topology: Cloud Scheduler publishes `{}` to the schedule's topic.

resource "google_cloud_scheduler_job" "schedule" {
  for_each    = local.schedules
  project     = var.project_id
  region      = var.region
  name        = "tollgate-${each.key}"
  description = try(each.value.description, "")
  schedule    = each.value.schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = module.topics[each.value.topic].id
    data       = base64encode(jsonencode({ schema_version = "1", kind = each.value.topic, schedule = each.key }))
  }

  retry_config {
    retry_count = 3
  }

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic_iam_member" "scheduler" {
  for_each = toset([for s in values(local.schedules) : s.topic])
  project  = var.project_id
  topic    = module.topics[each.value].name
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${local.scheduler_agent}"
}
