"""Our Prometheus metrics, on the default registry that KServe's /metrics already serves."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("autox_serve_requests", "Inference requests answered, by outcome", ["outcome"])
VIDEOS = Counter("autox_serve_videos", "Videos classified")
ERRORS = Counter("autox_serve_errors", "Requests answered with an error, by reason", ["reason"])
LATENCY = Histogram(
    "autox_serve_request_seconds",
    "Whole request latency (fetch, decode, batch wait, forward pass)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCH_SIZE = Histogram("autox_serve_batch_size", "Videos per forward pass", buckets=(1, 2, 4, 8, 16, 32, 64))
