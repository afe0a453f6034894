# The buckets, and the data bucket's notification: every object finalized under incoming/ is published to
# data-arrived, which starts a run.

# The data bucket and the packaged function sources (one zip per source folder and content hash, apart from the
# data: the function build account reads that bucket only), both hardened alike: uniform access, no public
# access, versioned (a noncurrent version exists only if something was overwritten: kept a month), access-logged.
locals {
  buckets = {
    data = {
      name             = local.bucket
      soft_delete_days = var.soft_delete_days
      expire           = { "reports/" = var.reports_retention_days } # prefix → days an object is kept
    }
    sources = {
      name             = "${local.bucket}-sources"
      soft_delete_days = null # the default: 7 days
      expire           = {}
    }
  }
}

resource "google_storage_bucket" "hardened" {
  for_each                    = local.buckets
  project                     = var.project_id
  name                        = each.value.name
  location                    = var.region
  labels                      = var.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  dynamic "soft_delete_policy" {
    for_each = each.value.soft_delete_days == null ? [] : [each.value.soft_delete_days]
    content {
      retention_duration_seconds = soft_delete_policy.value * 86400
    }
  }

  dynamic "lifecycle_rule" {
    for_each = each.value.expire
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = [lifecycle_rule.key]
      }
      action {
        type = "Delete"
      }
    }
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

moved {
  from = google_storage_bucket.data
  to   = google_storage_bucket.hardened["data"]
}

moved {
  from = google_storage_bucket.sources
  to   = google_storage_bucket.hardened["sources"]
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
  bucket             = google_storage_bucket.hardened["data"].name
  topic              = module.topics["data-arrived"].id
  payload_format     = "JSON_API_V1"
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = "incoming/"

  depends_on = [google_pubsub_topic_iam_member.gcs_notifications]
}
