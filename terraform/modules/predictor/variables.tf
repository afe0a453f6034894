variable "project_id" {
  description = "The project that runs the service."
  type        = string
}

variable "region" {
  description = "The service's region."
  type        = string
}

variable "name" {
  description = "Service name: predictor-<dataset> (tollgate.cloud.run.service_id)."
  type        = string
  validation {
    condition     = can(regex("^predictor-[a-z0-9-]{1,38}[a-z0-9]$", var.name))
    error_message = "predictor-<dataset>: lowercase letters, digits and hyphens, at most 49 characters, no trailing hyphen."
  }
}

variable "dataset" {
  description = "The dataset spec's name, as the decider pins it (DATASET)."
  type        = string
}

variable "image" {
  description = "The predictor image (services/Dockerfile target `predictor`), tagged with the commit."
  type        = string
}

variable "service_account_email" {
  description = "The predictor's own service account."
  type        = string
}

variable "environment" {
  description = "Environment variables of the first revision (DATASET is added); promotions keep them."
  type        = map(string)
  default     = {}
}

variable "secret_environment" {
  description = "Environment variables read from Secret Manager at start: name => secret id (latest version); promotions keep them."
  type        = map(string)
  default     = {}
}

variable "ingress" {
  description = "Who can reach the service over the network; IAM (run.invoker) decides who may call it."
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"
  validation {
    condition     = contains(["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "One of INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY, INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "cpu" {
  description = "vCPUs per instance."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory per instance (the taxi forest serves in about 400 MiB)."
  type        = string
  default     = "1Gi"
}

variable "concurrency" {
  description = "Requests per instance at once (gunicorn runs 4 threads; the micro-batcher batches what queues)."
  type        = number
  default     = 8
}

variable "max_instances" {
  description = "Upper bound on instances."
  type        = number
  default     = 20
}

variable "deletion_protection" {
  description = "Refuse to destroy the service (set false, apply, then destroy to tear down)."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels on the service."
  type        = map(string)
  default     = {}
}
