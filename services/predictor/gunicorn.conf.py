"""gunicorn settings for the predictor (Cloud Run sets PORT; Vertex AI sets AIP_HTTP_PORT)."""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('AIP_HTTP_PORT') or os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 60
graceful_timeout = 20
accesslog = None
