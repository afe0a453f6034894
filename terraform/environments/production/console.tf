# The web console (topology `services.console`): a Cloud Run service reached only through an external HTTPS load
# balancer with Identity-Aware Proxy in front, on var.console_domain (point its DNS at output console_ip). IAP
# admits var.console_users; the console verifies the header IAP signs (audience: this backend service) and
# records that identity in the ledger. Without a domain nothing of it is created.

locals {
  console   = var.console_domain != ""
  iap_agent = "service-${data.google_project.project.number}@gcp-sa-iap.iam.gserviceaccount.com"
}

# The key its CSRF tokens are signed with.
resource "random_password" "console_key" {
  length  = 48
  special = false
}

resource "google_secret_manager_secret_iam_member" "console_key" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.tollgate["console_key"].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.workload["console"].email}"
}

resource "google_cloud_run_v2_service" "console" {
  count               = local.console ? 1 : 0
  project             = var.project_id
  location            = var.region
  name                = "console"
  description         = "Tollgate console, behind Identity-Aware Proxy"
  labels              = var.labels
  ingress             = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
  deletion_protection = false

  template {
    service_account = google_service_account.workload["console"].email
    timeout         = "120s"

    scaling {
      min_instance_count = 0
      max_instance_count = 2
    }

    containers {
      image = "${local.registry}/console:${var.image_tag}"

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "1"
          memory = try(local.topology.services.console.memory, "1Gi")
        }
      }

      dynamic "env" {
        # approvals and serving moves roll predictor revisions, as the review function does
        for_each = merge(local.predictor_env, {
          TOLLGATE_CONSOLE_AUTH     = "iap"
          TOLLGATE_CONSOLE_AUDIENCE = "/projects/${data.google_project.project.number}/global/backendServices/${google_compute_backend_service.console[0].generated_id}"
        })
        content {
          name  = env.key
          value = env.value
        }
      }
      env {
        name = "TOLLGATE_CONSOLE_SECRET"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.tollgate["console_key"].secret_id
            version = "latest"
          }
        }
      }

      startup_probe {
        period_seconds    = 2
        failure_threshold = 30
        timeout_seconds   = 1
        http_get {
          path = "/health"
        }
      }
    }
  }

  depends_on = [google_project_service.apis, google_secret_manager_secret_iam_member.console_key,
  google_secret_manager_secret_version.tollgate["console_key"]]
}

# Only IAP calls the service (ingress: the load balancer only); IAP's service agent is its one invoker.
resource "google_cloud_run_v2_service_iam_member" "console_iap" {
  count    = local.console ? 1 : 0
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.console[0].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${local.iap_agent}"
}

resource "google_compute_region_network_endpoint_group" "console" {
  count                 = local.console ? 1 : 0
  project               = var.project_id
  region                = var.region
  name                  = "tollgate-console"
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = "console" # by name: the service's environment names this backend, so no reference back
  }

  depends_on = [google_project_service.apis]
}

resource "google_compute_backend_service" "console" {
  count                 = local.console ? 1 : 0
  project               = var.project_id
  name                  = "tollgate-console"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"

  backend {
    group = google_compute_region_network_endpoint_group.console[0].id
  }

  iap {
    enabled = true # Google-managed OAuth client
  }

  log_config {
    enable      = true
    sample_rate = 1
  }
}

resource "google_iap_web_backend_service_iam_member" "console_users" {
  for_each            = local.console ? toset(var.console_users) : toset([])
  project             = var.project_id
  web_backend_service = google_compute_backend_service.console[0].name
  role                = "roles/iap.httpsResourceAccessor"
  member              = each.value
}

resource "google_compute_url_map" "console" {
  count           = local.console ? 1 : 0
  project         = var.project_id
  name            = "tollgate-console"
  default_service = google_compute_backend_service.console[0].id
}

resource "google_compute_managed_ssl_certificate" "console" {
  count   = local.console ? 1 : 0
  project = var.project_id
  name    = "tollgate-console"

  managed {
    domains = [var.console_domain]
  }
}

resource "google_compute_ssl_policy" "console" {
  count           = local.console ? 1 : 0
  project         = var.project_id
  name            = "tollgate-console"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "console" {
  count            = local.console ? 1 : 0
  project          = var.project_id
  name             = "tollgate-console"
  url_map          = google_compute_url_map.console[0].id
  ssl_certificates = [google_compute_managed_ssl_certificate.console[0].id]
  ssl_policy       = google_compute_ssl_policy.console[0].id
}

resource "google_compute_global_address" "console" {
  count   = local.console ? 1 : 0
  project = var.project_id
  name    = "tollgate-console"
}

resource "google_compute_global_forwarding_rule" "console" {
  count                 = local.console ? 1 : 0
  project               = var.project_id
  name                  = "tollgate-console"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  port_range            = "443"
  target                = google_compute_target_https_proxy.console[0].id
  ip_address            = google_compute_global_address.console[0].address
}
