# One dataset's predictor: the Cloud Run service `predictor-<dataset>`, created before any model exists.
# Its first revision runs the predictor image with DATASET and no MODEL_VERSION: healthy, so the service,
# its URL and its IAM exist after apply, and every prediction answers 503 saying where to drop data.
# From the first promotion on, the deciding workloads own revisions and traffic
# (tollgate.cloud.run.set_traffic: revision predictor-<dataset>-v<N>, pinned to its model, from this
# deployment's image and min instances, keeping this template's probes, resources and account).

resource "google_cloud_run_v2_service" "predictor" {
  project             = var.project_id
  location            = var.region
  name                = var.name
  description         = "Tollgate predictor for ${var.dataset}: one revision per model version, tagged v<N>"
  labels              = var.labels
  ingress             = var.ingress
  deletion_protection = var.deletion_protection

  template {
    service_account                  = var.service_account_email
    max_instance_request_concurrency = var.concurrency
    timeout                          = "60s"

    scaling {
      # Nothing to keep warm before a model: each promotion sets the deployment's min instances.
      min_instance_count = 0
      max_instance_count = var.max_instances
    }

    containers {
      image = var.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = merge(var.environment, { DATASET = var.dataset })
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

      # Ready once the model is loaded and hash-checked (up to 2 minutes for a large forest).
      startup_probe {
        period_seconds    = 2
        failure_threshold = 60
        timeout_seconds   = 1
        http_get {
          path = "/health"
        }
      }

      liveness_probe {
        period_seconds    = 30
        failure_threshold = 3
        timeout_seconds   = 5
        http_get {
          path = "/v2/health/live"
        }
      }
    }
  }

  lifecycle {
    # Revisions and traffic belong to the promotions from the first one on: terraform must not roll them
    # back to the model-less revision. Changing probes or resources later: see README, "Deploying".
    ignore_changes = [template, traffic, client, client_version]
  }
}
