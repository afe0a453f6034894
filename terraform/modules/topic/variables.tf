variable "project_id" {
  description = "The project that holds the topic."
  type        = string
}

variable "name" {
  description = "Topic name, as declared in topology.yaml."
  type        = string
  validation {
    condition     = can(regex("^[a-zA-Z][-a-zA-Z0-9_.~+%]{2,254}$", var.name))
    error_message = "A Pub/Sub topic name starts with a letter and has 3 to 255 allowed characters."
  }
}

variable "labels" {
  description = "Labels for the topic and its dead-letter topic and subscription."
  type        = map(string)
  default     = {}
}

variable "message_retention" {
  description = "How long the topics keep messages, for replay."
  type        = string
  default     = "86400s"
}

variable "pubsub_service_agent" {
  description = "The project's Pub/Sub service agent e-mail (service-NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com)."
  type        = string
}

variable "kms_key_name" {
  description = "Cloud KMS key for the topics (CMEK); null: Google-managed encryption."
  type        = string
  default     = null
}
