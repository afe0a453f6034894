variable "project_id" {
  description = "The Google Cloud project to deploy Tollgate into."
  type        = string
  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{4,28}[a-z0-9]$", var.project_id))
    error_message = "A project id is 6 to 30 lowercase letters, digits and hyphens."
  }
}

variable "region" {
  description = "Region of the functions, jobs, predictor services, scheduler and images."
  type        = string
  default     = "us-central1"
}

variable "firestore_location" {
  description = "Firestore location (a region such as us-central1, or a multi-region such as nam5)."
  type        = string
  default     = "nam5"
}

variable "create_firestore_database" {
  description = "Create the (default) Firestore database (native mode); false if the project already has it."
  type        = bool
  default     = true
}

variable "bucket_name" {
  description = "The data bucket (incoming/, curated/, quarantine/, reports/, models/, specs/); default <project>-tollgate."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "Tag of the job and predictor images in Artifact Registry: the commit SHA Cloud Build pushed."
  type        = string
  validation {
    condition     = length(var.image_tag) > 0 && var.image_tag != "latest"
    error_message = "Deploy an immutable tag (the commit SHA), not latest."
  }
}

variable "topology_file" {
  description = "The topology both worlds read; terraform creates what it declares."
  type        = string
  default     = null
}

variable "reviewers" {
  description = "Members who may call the review function (e.g. group:ml-reviewers@example.com)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for m in var.reviewers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "Reviewing is never public: name people, groups or service accounts."
  }
}

variable "predictor_invokers" {
  description = "Members who may call the predictor services (applications' service accounts, groups)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for m in var.predictor_invokers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "The predictor is never public: name the callers."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries of an event before it is dead-lettered."
  type        = number
  default     = 10
}

variable "reports_retention_days" {
  description = "Days before objects under reports/ are deleted (runs keep their summaries in Firestore)."
  type        = number
  default     = 365
  validation {
    condition     = var.reports_retention_days >= 1
    error_message = "Keep reports at least a day."
  }
}

variable "soft_delete_days" {
  description = "Days a deleted or overwritten object can still be restored."
  type        = number
  default     = 30
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = { app = "tollgate" }
}

variable "review_webhook_url" {
  description = "Slack-compatible incoming-webhook URL for review requests (stored in Secret Manager); empty: none."
  type        = string
  default     = ""
  sensitive   = true
}

variable "mlflow_tracking_uri" {
  description = "MLflow tracking server that mirrors runs, versions and serving aliases (https://user:token@host, stored in Secret Manager); empty: none."
  type        = string
  default     = ""
  sensitive   = true
}

variable "egress_allow" {
  description = "Networks besides global addresses that URLs from configuration (a spec's MLflow, the webhook) may reach, e.g. [\"10.8.0.0/24\"] for an MLflow on the VPC; link-local (the metadata server) never."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for n in var.egress_allow : can(cidrhost(n, 0)) && !startswith(n, "169.254.")])
    error_message = "Each entry must be a CIDR network, and never link-local (169.254.0.0/16)."
  }
}

variable "mlflow_artifact_buckets" {
  description = "gs:// buckets (names only) the MLflow mirror may upload artifacts to when the MLflow server names one; otherwise artifacts go only through its proxied artifact API."
  type        = list(string)
  default     = []
}

variable "kms_key_name" {
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) for topics and images; null: Google-managed."
  type        = string
  default     = null
}

variable "predictor_min_instances" {
  description = "Instances each predictor service keeps warm (0 scales to zero; 1 avoids cold starts)."
  type        = number
  default     = 1
  validation {
    condition     = var.predictor_min_instances >= 0 && var.predictor_min_instances <= 100
    error_message = "Between 0 and 100."
  }
}

variable "datasets" {
  description = "Datasets whose predictor service (predictor-<dataset>) terraform creates before any model; null: the `name` of every spec in datasets/."
  type        = list(string)
  default     = null
  validation {
    condition     = var.datasets == null ? true : alltrue([for d in var.datasets : length(d) <= 30 && can(regex("^[a-z](_?[a-z0-9])*$", d))])
    error_message = "Dataset names are 1 to 30 lowercase letters, digits and single underscores, starting with a letter and not ending with an underscore (the service is predictor-<dataset> with _ as -)."
  }
}

variable "predictor_ingress" {
  description = "Network reach of the predictor services; run.invoker (predictor_invokers) still decides who may call."
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"
}

variable "predictor_deletion_protection" {
  description = "Refuse to destroy predictor services; set false and apply before `terraform destroy`."
  type        = bool
  default     = true
}

variable "bigquery_dataset" {
  description = "The BigQuery dataset of the warehouse (the prediction log and labels)."
  type        = string
  default     = "tollgate"
}

variable "bigquery_curated_dataset" {
  description = "BigQuery dataset of the curated batches: one table curated_<dataset> per dataset, loaded by the validator."
  type        = string
  default     = "tollgate_curated"
}

variable "bigquery_location" {
  description = "Where the warehouse's BigQuery dataset lives (a region such as us-central1, or US / EU)."
  type        = string
  default     = "US"
}

variable "prediction_log_retention_days" {
  description = "Days the prediction log and labels are kept in BigQuery (partition expiry); at least the longest monitoring.label_window_hours."
  type        = number
  default     = 90
  validation {
    condition     = var.prediction_log_retention_days >= 8
    error_message = "At least 8 days: the default label window is 7 days."
  }
}

variable "console_domain" {
  description = "The console's domain (e.g. tollgate.example.com): an HTTPS load balancer with Identity-Aware Proxy and a managed certificate serves it; point its DNS at output console_ip. Empty: no console."
  type        = string
  default     = ""
}

variable "console_users" {
  description = "Who may open the console through IAP (user:, group:, domain: members); the console records their verified e-mail as the actor of what they decide."
  type        = list(string)
  default     = []
  validation {
    condition     = !contains(var.console_users, "allUsers") && !contains(var.console_users, "allAuthenticatedUsers")
    error_message = "The console is never public: name people or groups."
  }
}
