# The data bucket and its notification: every object finalized under incoming/ is published to
# data-arrived, which starts a run.

resource "google_storage_bucket" "data" {
  project                     = var.project_id
  name                        = local.bucket
  location                    = var.region
  labels                      = var.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_days * 86400
  }

  lifecycle_rule {
    condition {
      age            = var.reports_retention_days
      matches_prefix = ["reports/"]
    }
    action {
      type = "Delete"
    }
  }

  # Noncurrent versions exist only if something was overwritten: keep them a month.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }
}

# The packaged function sources (one zip per source folder and content hash), apart from the data: the
# function build account reads this bucket only.
resource "google_storage_bucket" "sources" {
  project                     = var.project_id
  name                        = "${local.bucket}-sources"
  location                    = var.region
  labels                      = var.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }
}

# Access logs of the data and sources buckets (who read or wrote which object).
resource "google_storage_bucket" "access_logs" {
  #checkov:skip=CKV_GCP_62:this is the log bucket itself; logging it into itself would loop
  project                     = var.project_id
  name                        = "${local.bucket}-logs"
  location                    = var.region
  labels                      = var.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 365
    }
    action {
      type = "Delete"
    }
  }
}

data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

resource "google_pubsub_topic_iam_member" "gcs_notifications" {
  project = var.project_id
  topic   = module.topics["data-arrived"].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_storage_notification" "incoming" {
  bucket             = google_storage_bucket.data.name
  topic              = module.topics["data-arrived"].id
  payload_format     = "JSON_API_V1"
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = "incoming/"

  depends_on = [google_pubsub_topic_iam_member.gcs_notifications]
}
