output "id" {
  description = "The topic's id (projects/P/topics/NAME)."
  value       = google_pubsub_topic.topic.id
}

output "name" {
  description = "The topic's name."
  value       = google_pubsub_topic.topic.name
}

output "dead_letter_topic_id" {
  description = "The dead-letter topic's id, for subscriptions' dead_letter_policy."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_topic_name" {
  description = "The dead-letter topic's name."
  value       = google_pubsub_topic.dead_letter.name
}
