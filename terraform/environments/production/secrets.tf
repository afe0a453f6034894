# Secret Manager: every secret Tollgate keeps, one pair of resources for all of them. The optional ones exist only
# when set: the review webhook (a Slack-compatible incoming-webhook URL, TOLLGATE_REVIEW_WEBHOOK for the workloads
# that publish review requests or alerts; without it both are still published to their topics and listed by the
# CLI) and the MLflow tracking server (its URL, which may carry credentials: TOLLGATE_MLFLOW_URI for the functions
# that sync the mirror). The predictors' request-id key and the console's CSRF key are random, made once. Who may
# read each is in iam.tf and console.tf: only the workloads that use it.

locals {
  secret_ids = merge(
    { feedback_key = "tollgate-feedback-key", console_key = "tollgate-console-key" },
    local.webhook ? { review_webhook = "tollgate-review-webhook" } : {},
    local.mlflow ? { mlflow_uri = "tollgate-mlflow-uri" } : {},
  )
  secret_data = {
    feedback_key   = random_password.feedback_key.result
    console_key    = random_password.console_key.result
    review_webhook = var.review_webhook_url
    mlflow_uri     = var.mlflow_tracking_uri
  }
}

resource "google_secret_manager_secret" "tollgate" {
  for_each  = local.secret_ids
  project   = var.project_id
  secret_id = each.value
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "tollgate" {
  for_each    = local.secret_ids
  secret      = google_secret_manager_secret.tollgate[each.key].id
  secret_data = local.secret_data[each.key]
}

# Where these lived before they were one pair: an existing deployment keeps its secrets.
moved {
  from = google_secret_manager_secret.review_webhook[0]
  to   = google_secret_manager_secret.tollgate["review_webhook"]
}

moved {
  from = google_secret_manager_secret_version.review_webhook[0]
  to   = google_secret_manager_secret_version.tollgate["review_webhook"]
}

moved {
  from = google_secret_manager_secret.mlflow_uri[0]
  to   = google_secret_manager_secret.tollgate["mlflow_uri"]
}

moved {
  from = google_secret_manager_secret_version.mlflow_uri[0]
  to   = google_secret_manager_secret_version.tollgate["mlflow_uri"]
}

moved {
  from = google_secret_manager_secret.feedback_key
  to   = google_secret_manager_secret.tollgate["feedback_key"]
}

moved {
  from = google_secret_manager_secret_version.feedback_key
  to   = google_secret_manager_secret_version.tollgate["feedback_key"]
}

moved {
  from = google_secret_manager_secret.console_key
  to   = google_secret_manager_secret.tollgate["console_key"]
}

moved {
  from = google_secret_manager_secret_version.console_key
  to   = google_secret_manager_secret_version.tollgate["console_key"]
}
