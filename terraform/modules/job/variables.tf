variable "project_id" {
  description = "The project that runs the job."
  type        = string
}

variable "region" {
  description = "The job's region."
  type        = string
}

variable "name" {
  description = "Job name, as declared in topology.yaml."
  type        = string
}

variable "image" {
  description = "The job's image (services/Dockerfile target of the same name), tagged with the commit."
  type        = string
}

variable "service_account_email" {
  description = "The job's own service account."
  type        = string
}

variable "environment" {
  description = "Environment variables every execution gets (runs add RUN_ID as an override)."
  type        = map(string)
  default     = {}
}

variable "secret_environment" {
  description = "Environment variables read from Secret Manager at start: name => secret id (latest version)."
  type        = map(string)
  default     = {}
}

variable "timeout_seconds" {
  description = "Task timeout (topology `timeout_seconds`)."
  type        = number
  validation {
    condition     = var.timeout_seconds > 0 && var.timeout_seconds <= 86400
    error_message = "A Cloud Run task runs for 1 second to 24 hours."
  }
}

variable "max_retries" {
  description = "Retries of a failed task (topology `max_retries`); steps are idempotent, so a retry is safe."
  type        = number
  default     = 1
  validation {
    condition     = var.max_retries >= 0 && var.max_retries <= 10
    error_message = "Cloud Run retries a task 0 to 10 times."
  }
}

variable "memory" {
  description = "Memory limit (topology `memory`); Cloud Run's /tmp counts against it."
  type        = string
  default     = "2Gi"
}

variable "cpu" {
  description = "CPU limit."
  type        = string
  default     = "2"
}

variable "launchers" {
  description = "Members that may run the job with overrides (the functions that start it)."
  type        = list(string)
  default     = []
}

variable "labels" {
  description = "Labels for the job."
  type        = map(string)
  default     = {}
}

variable "viewers" {
  description = "Members that may read the job's executions (the reconciler)."
  type        = list(string)
  default     = []
}
