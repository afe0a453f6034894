# Every topology job as a Cloud Run job, its image the Dockerfile target of the same name. Only the
# functions whose `env.JOB` names a job may start it; those that watch jobs (the reconciler) may read its
# executions. TOLLGATE_MAX_ATTEMPTS tells each attempt whether it is the last (tollgate.jobs.job_main).

locals {
  # topology `memory` (512Mi, 2Gi) in bytes: each job plans its work within it (TOLLGATE_MEMORY_LIMIT)
  job_memory_bytes = { for name, j in local.jobs : name => (
    tonumber(regex("^([0-9]+)(Mi|Gi)$", try(j.memory, "2Gi"))[0]) *
    (regex("^([0-9]+)(Mi|Gi)$", try(j.memory, "2Gi"))[1] == "Gi" ? 1073741824 : 1048576)
  ) }
}

module "jobs" {
  source   = "../../modules/job"
  for_each = local.jobs

  project_id            = var.project_id
  region                = var.region
  name                  = each.key
  image                 = "${local.registry}/${each.key}:${var.image_tag}"
  service_account_email = google_service_account.workload[each.key].email
  environment = merge(try(each.value.deploys_predictor, false) ? local.predictor_env : local.base_env,
    { TOLLGATE_MAX_ATTEMPTS = tostring(try(each.value.max_retries, 1) + 1),
  TOLLGATE_MEMORY_LIMIT = tostring(local.job_memory_bytes[each.key]) })
  secret_environment = local.secret_env[each.key]
  timeout_seconds    = each.value.timeout_seconds
  max_retries        = try(each.value.max_retries, 1)
  memory             = try(each.value.memory, "2Gi")
  launchers          = [for f in local.launchers[each.key] : "serviceAccount:${google_service_account.workload[f].email}"]
  viewers            = [for f in local.job_watchers : "serviceAccount:${google_service_account.workload[f].email}"]
  labels             = var.labels

  depends_on = [google_project_service.apis, google_secret_manager_secret_iam_member.webhook]
}
