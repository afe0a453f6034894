terraform {
  required_version = ">= 1.5"

  # State in a GCS bucket: `terraform init -backend-config=bucket=PROJECT-tfstate` (make deploy creates it).
  backend "gcs" {
    prefix = "tollgate"
  }

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "6.50.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "2.7.1"
    }
    random = {
      source  = "hashicorp/random"
      version = "3.7.2"
    }
  }
}

provider "google" {
  project               = var.project_id
  region                = var.region
  user_project_override = true
  billing_project       = var.project_id
}
