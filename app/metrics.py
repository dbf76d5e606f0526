"""Prometheus metrics of the service and the job queue."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

registry = CollectorRegistry()

REQUEST_LATENCY = Histogram(
    "perflaw_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status.",
    ["method", "route", "status"],
    registry=registry,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
JOBS_BY_STATUS = Gauge("perflaw_jobs", "Jobs in the queue by kind and status.", ["kind", "status"], registry=registry)
QUEUE_DEPTH = Gauge("perflaw_queue_depth", "Jobs queued and ready to be claimed.", registry=registry)
WORKER_HEARTBEAT_AGE = Gauge(
    "perflaw_worker_heartbeat_age_seconds", "Seconds since each running worker's last heartbeat.", ["worker_id"], registry=registry
)
JOB_DURATION = Histogram(
    "perflaw_job_duration_seconds", "Wall time of finished jobs, by kind and final status.", ["kind", "status"],
    registry=registry, buckets=(0.1, 1, 5, 30, 60, 300, 900, 3600, 14400, 86400),
)
JOBS_FINISHED = Counter("perflaw_jobs_finished", "Jobs that reached a final status.", ["kind", "status"], registry=registry)


def observe_request(method: str, route: str, status: int, elapsed_s: float) -> None:
    REQUEST_LATENCY.labels(method, route, str(status)).observe(elapsed_s)


def render_latest() -> bytes:
    return generate_latest(registry)
