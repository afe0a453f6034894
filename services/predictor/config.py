"""The predictor's settings, read from the environment in one place (the Flask tutorial's way: defaults, then the
environment, then a test's overrides). Cloud Run sets DATASET and MODEL_VERSION on each revision; Vertex AI sets
AIP_* ; gunicorn.conf.py sets TOLLGATE_EXIT_ON_LOAD_FAILURE."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from tollgate import inputs


@dataclasses.dataclass(frozen=True)
class PredictorConfig:
    dataset: str
    model_version: int = 0                 # 0: no model yet (the revision terraform makes before the first one)
    project: str | None = None
    bucket: str | None = None
    code_version: str = "dev"
    max_body_bytes: int = 8 * 1024 * 1024
    max_instances: int = inputs.MAX_INSTANCES
    batch_max_rows: int = 256
    batch_max_wait_ms: float = 1.0
    prediction_log: bool = True
    predictions_topic: str = "predictions"
    prediction_log_timeout: float = 30.0
    feedback_key: str = ""                 # signs request ids; shared by the dataset's revisions
    health_route: str = "/health"          # Vertex AI: AIP_HEALTH_ROUTE
    predict_route: str = "/predict"        # Vertex AI: AIP_PREDICT_ROUTE
    storage_uri: str | None = None         # Vertex AI: AIP_STORAGE_URI (model.skops + record.json)
    model_sha256: str = ""                 # the hash to trust on the AIP_STORAGE_URI path
    exit_on_load_failure: bool = False     # under gunicorn: a model that fails to load ends the process

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: str) -> "PredictorConfig":
        """From ``env`` (default: os.environ) with ``overrides`` (variable names, as tests give them)."""
        env = {**(os.environ if env is None else env), **overrides}
        dataset = env.get("DATASET") or ""
        if not dataset:
            raise RuntimeError("DATASET must be set (and MODEL_VERSION: the decider pins both on each revision)")
        return cls(
            dataset=dataset,
            model_version=int(env.get("MODEL_VERSION") or 0),
            project=env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCP_PROJECT") or None,
            bucket=env.get("TOLLGATE_BUCKET") or None,
            code_version=env.get("TOLLGATE_CODE_VERSION", "dev"),
            max_body_bytes=int(env.get("TOLLGATE_MAX_BODY_BYTES") or 8 * 1024 * 1024),
            max_instances=int(env.get("TOLLGATE_MAX_INSTANCES") or inputs.MAX_INSTANCES),
            batch_max_rows=int(env.get("TOLLGATE_BATCH_MAX_ROWS") or 256),
            batch_max_wait_ms=float(env.get("TOLLGATE_BATCH_MAX_WAIT_MS") or 1),
            prediction_log=env.get("TOLLGATE_PREDICTION_LOG", "on").lower() not in ("off", "0", "false"),
            predictions_topic=env.get("TOLLGATE_PREDICTIONS_TOPIC", "predictions"),
            prediction_log_timeout=float(env.get("TOLLGATE_PREDICTION_LOG_TIMEOUT") or 30),
            feedback_key=env.get("TOLLGATE_FEEDBACK_KEY", ""),
            health_route=env.get("AIP_HEALTH_ROUTE") or "/health",
            predict_route=env.get("AIP_PREDICT_ROUTE") or "/predict",
            storage_uri=env.get("AIP_STORAGE_URI") or None,
            model_sha256=env.get("TOLLGATE_MODEL_SHA256", ""),
            exit_on_load_failure=env.get("TOLLGATE_EXIT_ON_LOAD_FAILURE") == "1",
        )
