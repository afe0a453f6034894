output "bucket" {
  description = "Drop files into gs://BUCKET/incoming/<dataset>/; push specs to specs/ (`tollgate spec push`)."
  value       = "gs://${google_storage_bucket.data.name}"
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
    TOLLGATE_BUCKET      = google_storage_bucket.data.name
    TOLLGATE_REGION      = var.region
    TOLLGATE_REVIEW_URL  = module.functions["review"].uri
    TOLLGATE_TARGET      = "gcp"
  }
}
