"""gunicorn settings for the console (Cloud Run sets PORT; the local cloud sets HOST to 127.0.0.1): one process
with a few threads, the pages being Firestore reads."""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"
workers = 1
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 120
graceful_timeout = 8
accesslog = None
