"""gunicorn settings for the predictor (Cloud Run sets PORT; Vertex AI sets AIP_HTTP_PORT).

One process with threads: the model is in memory once, and the micro-batcher needs concurrent
requests in the same process to batch them. On SIGTERM (Cloud Run gives 10 s) gunicorn stops
accepting, finishes the requests in flight (graceful_timeout), then the prediction log is flushed.
"""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('AIP_HTTP_PORT') or os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"
# few threads: one core's worth of Python work, and more threads only contend for the GIL (measured
# with `make bench-serve`: 4 threads beat 8 and 16 at 8 connections); waiting connections queue in the poller
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 60
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "8"))
keepalive = 5
accesslog = None
# a model that fails to load ends the process (exit 3, "failed to boot"): the revision fails at once
os.environ.setdefault("TOLLGATE_EXIT_ON_LOAD_FAILURE", "1")


def worker_exit(server, worker):  # noqa: ANN001 - gunicorn's hook signature
    from services.predictor.main import close

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        close(app)
