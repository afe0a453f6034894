# The warehouse: the predictors' log and the labels as BigQuery tables (tollgate.warehouse). BigQuery
# subscriptions on the `predictions` topic write each message as one row (its records a repeated record),
# split by the message's `kind` attribute; nothing drains the log on Google Cloud. Tables are partitioned by
# the hour of publish time and expire with it; every query must name the partitions it reads. The monitor
# (topology `warehouse: prune`) runs queries, reads the tables and deletes a dataset's rows older than its
# spec's monitoring.retention_days (data editor of the two tables), nothing more.

locals {
  # Each table's record fields (name, type): tollgate/warehouse/tables.py RECORD_FIELDS, kept equal by a test.
  warehouse_records = {
    predictions = [
      ["request_id", "STRING"], ["row", "INT64"], ["time", "TIMESTAMP"], ["model_version", "INT64"],
      ["status", "INT64"], ["latency_ms", "FLOAT64"], ["prediction", "STRING"], ["probabilities", "STRING"],
      ["features", "STRING"],
    ]
    labels = [
      ["request_id", "STRING"], ["row", "INT64"], ["keys", "STRING"], ["label", "STRING"], ["time", "TIMESTAMP"],
      ["seq", "INT64"],
    ]
  }
  warehouse_clustering = { predictions = ["dataset", "model_version"], labels = ["dataset"] }
  warehouse_readers    = [for name, j in local.jobs : name if contains(["read", "prune"], try(j.warehouse, ""))]
  warehouse_pruners    = [for name, j in local.jobs : name if try(j.warehouse, "") == "prune"]
}

# The BigQuery datasets: the log's and the curated batches' (each workload is granted on one of them only).
resource "google_bigquery_dataset" "tollgate" {
  for_each = {
    warehouse = { id = var.bigquery_dataset, description = "Tollgate's prediction log and labels" }
    curated   = { id = var.bigquery_curated_dataset, description = "Tollgate's curated batches, one table per dataset" }
  }

  project     = var.project_id
  dataset_id  = each.value.id
  location    = var.bigquery_location
  description = each.value.description
  labels      = var.labels

  dynamic "default_encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_bigquery_table" "warehouse" {
  #checkov:skip=CKV_GCP_80:encrypted with var.kms_key_name through the dataset's default when it is set
  for_each = local.warehouse_records

  project                  = var.project_id
  dataset_id               = google_bigquery_dataset.tollgate["warehouse"].dataset_id
  table_id                 = each.key
  description              = "One row per Pub/Sub message of kind ${each.key} (its records repeated), written by subscription ${each.key}-to-bigquery"
  labels                   = var.labels
  deletion_protection      = true
  require_partition_filter = true
  clustering               = local.warehouse_clustering[each.key]

  time_partitioning {
    type          = "HOUR"
    field         = "publish_time"
    expiration_ms = var.prediction_log_retention_days * 86400000
  }

  schema = jsonencode([
    { name = "subscription_name", type = "STRING", mode = "NULLABLE" },
    { name = "message_id", type = "STRING", mode = "REQUIRED" },
    { name = "publish_time", type = "TIMESTAMP", mode = "REQUIRED" },
    { name = "attributes", type = "STRING", mode = "NULLABLE" },
    { name = "schema", type = "STRING", mode = "NULLABLE" },
    { name = "dataset", type = "STRING", mode = "REQUIRED" },
    { name = "model_version", type = "INT64", mode = "NULLABLE" },
    {
      name   = "records", type = "RECORD", mode = "REPEATED",
      fields = [for f in each.value : { name = f[0], type = f[1], mode = "NULLABLE" }]
    },
  ])
}

# Pub/Sub writes as its service agent: data editor of these tables only.
resource "google_bigquery_table_iam_member" "subscription_writer" {
  for_each = local.warehouse_records

  project    = var.project_id
  dataset_id = google_bigquery_dataset.tollgate["warehouse"].dataset_id
  table_id   = google_bigquery_table.warehouse[each.key].table_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${local.pubsub_agent}"
}

resource "google_pubsub_subscription" "warehouse" {
  for_each = local.warehouse_records

  project = var.project_id
  name    = "${each.key}-to-bigquery"
  topic   = module.topics["predictions"].id
  filter  = "attributes.kind = \"${each.key}\""
  labels  = var.labels

  bigquery_config {
    table               = "${var.project_id}.${google_bigquery_dataset.tollgate["warehouse"].dataset_id}.${google_bigquery_table.warehouse[each.key].table_id}"
    use_table_schema    = true
    write_metadata      = true
    drop_unknown_fields = true
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = module.topics["predictions"].dead_letter_topic_id
    max_delivery_attempts = 10
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [google_bigquery_table_iam_member.subscription_writer]
}

# Pub/Sub moves dead letters as its own agent, which must be able to acknowledge them here.
resource "google_pubsub_subscription_iam_member" "warehouse_dead_letter_subscriber" {
  for_each = local.warehouse_records

  project      = var.project_id
  subscription = google_pubsub_subscription.warehouse[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.pubsub_agent}"
}

# Readers run query jobs in the project (BigQuery has no finer place for that permission), read the results
# through the Storage Read API, and read the warehouse dataset's tables only.
resource "google_project_iam_member" "warehouse_query" {
  for_each = { for pair in setproduct(local.warehouse_readers, ["roles/bigquery.jobUser", "roles/bigquery.readSessionUser"]) : "${pair[0]} ${pair[1]}" => { sa = pair[0], role = pair[1] } }

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.workload[each.value.sa].email}"
}

resource "google_bigquery_dataset_iam_member" "warehouse_read" {
  for_each = toset(local.warehouse_readers)

  project    = var.project_id
  dataset_id = google_bigquery_dataset.tollgate["warehouse"].dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.workload[each.key].email}"
}

# Pruners delete old rows of the log tables (DML): data editor of those two tables only.
resource "google_bigquery_table_iam_member" "warehouse_prune" {
  for_each = { for pair in setproduct(local.warehouse_pruners, keys(local.warehouse_records)) : "${pair[0]} ${pair[1]}" => { sa = pair[0], table = pair[1] } }

  project    = var.project_id
  dataset_id = google_bigquery_dataset.tollgate["warehouse"].dataset_id
  table_id   = google_bigquery_table.warehouse[each.value.table].table_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.workload[each.value.sa].email}"
}

# Curated batches: a table curated_<dataset> per dataset in a BigQuery dataset of their own, made and appended to
# by the validator's load jobs (topology `curated: load`: data editor of that dataset only, which holds nothing
# else), queried by the trainer for its window (`curated: read`: data viewer there). Both run jobs in the project.
locals {
  curated_loaders = [for name, j in local.jobs : name if try(j.curated, "") == "load"]
  curated_readers = [for name, j in local.jobs : name if try(j.curated, "") == "read"]
  curated_project_roles = concat(
    [for sa in local.curated_loaders : { sa = sa, role = "roles/bigquery.jobUser" }],
    flatten([for sa in local.curated_readers : [for role in ["roles/bigquery.jobUser", "roles/bigquery.readSessionUser"] : { sa = sa, role = role }]]),
  )
}

resource "google_project_iam_member" "curated_jobs" {
  for_each = { for grant in local.curated_project_roles : "${grant.sa} ${grant.role}" => grant }

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.workload[each.value.sa].email}"
}

resource "google_bigquery_dataset_iam_member" "curated_load" {
  for_each = toset(local.curated_loaders)

  project    = var.project_id
  dataset_id = google_bigquery_dataset.tollgate["curated"].dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.workload[each.key].email}"
}

resource "google_bigquery_dataset_iam_member" "curated_read" {
  for_each = toset(local.curated_readers)

  project    = var.project_id
  dataset_id = google_bigquery_dataset.tollgate["curated"].dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.workload[each.key].email}"
}

moved {
  from = google_bigquery_dataset.warehouse
  to   = google_bigquery_dataset.tollgate["warehouse"]
}
