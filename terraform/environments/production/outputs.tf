output "bucket" {
  description = "Drop files into gs://BUCKET/incoming/<dataset>/; push specs to specs/ (`tollgate spec push`)."
  value       = "gs://${google_storage_bucket.hardened["data"].name}"
}

output "review_url" {
  description = "The review function (set TOLLGATE_REVIEW_URL to this for `tollgate review`)."
  value       = module.functions["review"].uri
}

output "predictor_urls" {
  description = "Each dataset's predictor (503 until its first promotion). Call with an identity token of a predictor_invokers member."
  value       = { for dataset, p in module.predictors : dataset => p.uri }
}

output "topics" {
  description = "Topic names, for subscribers of the event chain (e.g. model-decided)."
  value       = { for name, t in module.topics : name => t.id }
}

output "dead_letter_subscriptions" {
  description = "Where undeliverable events wait, per topic."
  value       = { for name, t in module.topics : name => t.dead_letter_topic_name }
}

output "image_registry" {
  description = "Push the job and predictor images here, tagged with the commit SHA."
  value       = local.registry
}

output "environment" {
  description = "`export` these for the tollgate CLI against this project."
  value = {
    GOOGLE_CLOUD_PROJECT = var.project_id
    TOLLGATE_BUCKET      = google_storage_bucket.hardened["data"].name
    TOLLGATE_REGION      = var.region
    TOLLGATE_REVIEW_URL  = module.functions["review"].uri
    TOLLGATE_CONSOLE_URL = local.console ? "https://${var.console_domain}" : ""
    TOLLGATE_TARGET      = "gcp"
  }
}

output "console_url" {
  description = "The console behind Identity-Aware Proxy (set TOLLGATE_CONSOLE_URL to it for `tollgate console`); null without console_domain."
  value       = local.console ? "https://${var.console_domain}" : null
}

output "console_ip" {
  description = "Point console_domain's A record here; the managed certificate is issued once DNS resolves to it."
  value       = local.console ? google_compute_global_address.console[0].address : null
}
