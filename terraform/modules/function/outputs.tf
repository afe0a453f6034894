output "uri" {
  description = "The function's HTTPS URL."
  value       = google_cloudfunctions2_function.function.service_config[0].uri
}

output "name" {
  description = "The function's name."
  value       = google_cloudfunctions2_function.function.name
}

output "subscription" {
  description = "The push subscription feeding it (null for an HTTP function)."
  value       = try(google_pubsub_subscription.trigger[0].name, null)
}
