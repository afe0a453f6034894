output "name" {
  description = "The job's name."
  value       = google_cloud_run_v2_job.job.name
}

output "id" {
  description = "The job's id."
  value       = google_cloud_run_v2_job.job.id
}
