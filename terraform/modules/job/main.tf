# One topology job: a Cloud Run job whose image's command is the topology's `command` (the
# Dockerfile target of the same name), run by its own service account. The functions that start
# it (with per-run environment overrides) are the only members allowed to.

resource "google_cloud_run_v2_job" "job" {
  project             = var.project_id
  location            = var.region
  name                = var.name
  labels              = var.labels
  deletion_protection = false

  template {
    task_count = 1
    template {
      service_account = var.service_account_email
      timeout         = "${var.timeout_seconds}s"
      max_retries     = var.max_retries
      containers {
        image = var.image
        resources {
          limits = {
            cpu    = var.cpu
            memory = var.memory
          }
        }
        dynamic "env" {
          for_each = var.environment
          content {
            name  = env.key
            value = env.value
          }
        }
        dynamic "env" {
          for_each = var.secret_environment
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }
      }
    }
  }
}

resource "google_cloud_run_v2_job_iam_member" "launcher" {
  for_each = toset(var.launchers)

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.job.name
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = each.value
}

# Who may read the job's executions (the reconciler: has an execution failed, vanished, outlived its timeout?).
resource "google_cloud_run_v2_job_iam_member" "viewer" {
  for_each = toset(var.viewers)

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.job.name
  role     = "roles/run.viewer"
  member   = each.value
}
