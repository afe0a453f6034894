"""Settings: one object per deployable, built once at start-up from the environment.

The same variables name the same things on GCP and locally; locally the standard
emulator variables (STORAGE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST, FIRESTORE_EMULATOR_HOST)
point the Google clients at the local cloud, and CLOUD_RUN_API_ENDPOINT points the Cloud
Run client at the local Cloud Run Admin API.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping


class SettingsError(RuntimeError):
    """A required setting is missing or malformed; the message says which and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Settings:
    project: str
    region: str
    bucket: str
    cloud_run_endpoint: str | None = None
    predictor_image: str = "predictor"
    predictor_service_account: str | None = None
    predictor_min_instances: int = 0
    feedback_key_secret: str | None = None   # Secret Manager secret of the predictors' request-id key
    code_version: str = "dev"
    warehouse: str = "bigquery"              # "bigquery", or "duckdb" over the bucket's Parquet (the local cloud)
    bigquery_dataset: str = "tollgate"       # the BigQuery dataset of the prediction log and labels
    bigquery_curated_dataset: str = "tollgate_curated"   # the BigQuery dataset of the curated batches

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: str) -> "Settings":
        env = dict(os.environ if env is None else env)
        env.update({k.upper(): v for k, v in overrides.items() if v is not None})
        project = env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCP_PROJECT")
        warehouse = env.get("TOLLGATE_WAREHOUSE") or ("duckdb" if env.get("STORAGE_EMULATOR_HOST") else "bigquery")
        if warehouse not in ("bigquery", "duckdb"):
            raise SettingsError(f"TOLLGATE_WAREHOUSE={warehouse!r}: use bigquery (Google Cloud) or duckdb (the "
                                "bucket's Parquet, as the local cloud does)")
        missing = [name for name, value in (("GOOGLE_CLOUD_PROJECT", project),
                                             ("TOLLGATE_BUCKET", env.get("TOLLGATE_BUCKET")))
                   if not value]
        if missing:
            raise SettingsError(
                f"missing environment variable(s): {', '.join(missing)}. Locally, start the local "
                "cloud with `make up` and run `eval $(tollgate env)`; on GCP, terraform sets them."
            )
        return cls(
            project=project,  # type: ignore[arg-type]
            region=env.get("TOLLGATE_REGION", "us-central1"),
            bucket=env["TOLLGATE_BUCKET"],
            cloud_run_endpoint=env.get("CLOUD_RUN_API_ENDPOINT") or None,
            predictor_image=env.get("TOLLGATE_PREDICTOR_IMAGE", "predictor"),
            predictor_service_account=env.get("TOLLGATE_PREDICTOR_SA") or None,
            predictor_min_instances=int(env.get("TOLLGATE_PREDICTOR_MIN_INSTANCES") or 0),
            feedback_key_secret=env.get("TOLLGATE_FEEDBACK_KEY_SECRET") or None,
            code_version=env.get("TOLLGATE_CODE_VERSION", "dev"),
            warehouse=warehouse,
            bigquery_dataset=env.get("TOLLGATE_BIGQUERY_DATASET", "tollgate"),
            bigquery_curated_dataset=env.get("TOLLGATE_BIGQUERY_CURATED_DATASET", "tollgate_curated"),
        )
