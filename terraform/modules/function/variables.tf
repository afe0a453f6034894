variable "project_id" {
  description = "The project that runs the function."
  type        = string
}

variable "region" {
  description = "The function's region."
  type        = string
}

variable "name" {
  description = "Function name, as declared in topology.yaml."
  type        = string
  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{0,61}[a-z0-9]$", var.name))
    error_message = "A function name is lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "description" {
  description = "What the function does."
  type        = string
  default     = ""
}

variable "entry_point" {
  description = "The handler in main.py (topology `entry_point`)."
  type        = string
}

variable "build_service_account_email" {
  description = "The account Cloud Build builds the function as (reads the source, writes the image, logs)."
  type        = string
}

variable "docker_repository" {
  description = "Artifact Registry repository (projects/P/locations/L/repositories/R) for the built image."
  type        = string
}

variable "source_bucket" {
  description = "Bucket holding the packaged source (the function's folder plus the shared code)."
  type        = string
}

variable "source_object" {
  description = "The source zip's object name; a new name (it carries the content hash) redeploys."
  type        = string
}

variable "service_account_email" {
  description = "The function's own service account (also the push identity of its subscription)."
  type        = string
}

variable "environment" {
  description = "Environment variables (topology `env` plus the project settings)."
  type        = map(string)
  default     = {}
}

variable "secret_environment" {
  description = "Environment variables read from Secret Manager: variable name to secret id."
  type        = map(string)
  default     = {}
}

variable "trigger_topic_id" {
  description = "Topic whose messages are pushed to the function; null for an HTTP function."
  type        = string
  default     = null
}

variable "dead_letter_topic_id" {
  description = "Where messages go after max_delivery_attempts (required with trigger_topic_id)."
  type        = string
  default     = null
}

variable "max_delivery_attempts" {
  description = "Deliveries before a message is dead-lettered."
  type        = number
  default     = 10
  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub allows 5 to 100 delivery attempts."
  }
}

variable "invokers" {
  description = "Members allowed to call an HTTP function (e.g. group:reviewers@example.com); never allUsers."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for m in var.invokers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "Functions are never public: name the people or groups who may call it."
  }
}

variable "pubsub_service_agent" {
  description = "The project's Pub/Sub service agent e-mail."
  type        = string
}

variable "memory" {
  description = "Memory per instance."
  type        = string
  default     = "512Mi"
}

variable "timeout_seconds" {
  description = "Request timeout (an approval deploys the predictor: allow minutes)."
  type        = number
  default     = 540
}

variable "max_instances" {
  description = "Upper bound on instances."
  type        = number
  default     = 10
}

variable "labels" {
  description = "Labels for the function and its subscription."
  type        = map(string)
  default     = {}
}
