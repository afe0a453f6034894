# One predictor service per dataset, made before its first model so that its URL and IAM exist after
# apply (it answers 503 with what to do until then). The decider, the review function and the monitor
# roll its revisions from the first promotion on. A dataset not listed here still gets its service, from
# the same settings, on its first promotion.

locals {
  spec_files = fileset("${local.root}/datasets", "*.yaml")
  # Default: every spec in datasets/ (its `name`), the files `tollgate spec push` uploads.
  datasets = var.datasets != null ? toset(var.datasets) : toset([
    for f in local.spec_files : yamldecode(file("${local.root}/datasets/${f}")).name
  ])
}

module "predictors" {
  source   = "../../modules/predictor"
  for_each = local.datasets

  project_id            = var.project_id
  region                = var.region
  name                  = "predictor-${replace(each.key, "_", "-")}"
  dataset               = each.key
  image                 = local.predictor_env.TOLLGATE_PREDICTOR_IMAGE
  service_account_email = google_service_account.workload["predictor"].email
  environment           = merge(local.base_env, { TOLLGATE_FEEDBACK_KEY_SECRET = google_secret_manager_secret.tollgate["feedback_key"].secret_id })
  secret_environment    = { TOLLGATE_FEEDBACK_KEY = google_secret_manager_secret.tollgate["feedback_key"].secret_id }
  memory                = try(local.topology.services.predictor.memory, "1Gi")
  ingress               = var.predictor_ingress
  deletion_protection   = var.predictor_deletion_protection
  labels                = var.labels

  depends_on = [google_project_service.apis, google_secret_manager_secret_iam_member.feedback_key,
  google_secret_manager_secret_version.tollgate["feedback_key"]]
}
