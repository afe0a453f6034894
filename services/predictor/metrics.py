"""The predictor's Prometheus metrics (GET /metrics), in a registry of their own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("tollgate_predictor_requests", "HTTP requests by route and status code",
                                ["route", "code"], registry=r)
        self.errors = Counter("tollgate_predictor_errors", "Responses with a 4xx or 5xx status, by code",
                              ["code"], registry=r)
        self.latency = Histogram("tollgate_predictor_request_seconds", "Time to answer a prediction request",
                                 ["route"], registry=r,
                                 buckets=(.0005, .001, .002, .003, .005, .0075, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.rows = Counter("tollgate_predictor_predictions", "Instances predicted", registry=r)
        self.batch_rows = Histogram("tollgate_predictor_batch_rows", "Rows per model call (micro-batch size)",
                                    registry=r, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.batch_requests = Histogram("tollgate_predictor_batch_requests", "Requests per model call",
                                        registry=r, buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32))
        self.model = Gauge("tollgate_predictor_model_info", "The model this revision serves (value 1)",
                           ["dataset", "model_version", "path"], registry=r)
        self.ready = Gauge("tollgate_predictor_ready", "1 once the model is loaded and checked", registry=r)
        self.load_seconds = Gauge("tollgate_predictor_load_seconds", "Seconds from start to ready", registry=r)
        self.log_published = Counter("tollgate_prediction_log_published", "Predictions published to the log",
                                     registry=r)
        self.log_lost = Counter("tollgate_prediction_log_lost", "Predictions the log could not publish",
                                ["reason"], registry=r)

    def batch(self, requests: int, rows: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_rows.observe(rows)
