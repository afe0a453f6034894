output "name" {
  description = "The service name (predictor-<dataset>)."
  value       = google_cloud_run_v2_service.predictor.name
}

output "uri" {
  description = "The predictor's URL: POST /predict with an identity token of an invoker."
  value       = google_cloud_run_v2_service.predictor.uri
}
