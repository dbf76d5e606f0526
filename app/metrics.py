"""Prometheus metrics of the service and the job queue."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily

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
JOB_DURATION_BUCKETS_S = (0.1, 1, 5, 30, 60, 300, 900, 3600, 14400, 86400)


@dataclass(frozen=True)
class JobDurationRow:
    """Finished jobs of one kind and final status: cumulative counts per bucket, and the sum."""

    kind: str
    status: str
    bucket_counts: tuple[int, ...]  # jobs that took at most JOB_DURATION_BUCKETS_S[i] seconds
    count: int
    sum_s: float


class JobDurationCollector:
    """The job-duration histogram, read from the jobs table at scrape time.

    Jobs run in worker processes on any machine, so no single process can observe them all;
    the table can. A job's duration is finished_at - started_at of its last attempt.
    """

    def __init__(self) -> None:
        self.rows: list[JobDurationRow] = []

    def collect(self):
        family = HistogramMetricFamily(
            "perflaw_job_duration_seconds",
            "Wall time of finished jobs (last attempt), by kind and final status.",
            labels=["kind", "status"],
        )
        for row in self.rows:
            buckets = [(str(bound), count) for bound, count in zip(JOB_DURATION_BUCKETS_S, row.bucket_counts)]
            buckets.append(("+Inf", row.count))
            family.add_metric([row.kind, row.status], buckets, row.sum_s)
        yield family


JOB_DURATION = JobDurationCollector()
registry.register(JOB_DURATION)


def observe_request(method: str, route: str, status: int, elapsed_s: float) -> None:
    REQUEST_LATENCY.labels(method, route, str(status)).observe(elapsed_s)


def render_latest() -> bytes:
    return generate_latest(registry)
