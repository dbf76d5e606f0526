"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import case, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from app import metrics
from app.db import get_engine, get_session_factory
from app.migrate import schema_is_current
from app.models import Job
from app.schemas import HealthStatus

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthStatus)
def healthz() -> HealthStatus:
    """Report that the process is up; it checks nothing else."""
    return HealthStatus(status="ok")


@router.get("/readyz", response_model=HealthStatus, responses={503: {"model": HealthStatus}})
def readyz():
    """Report whether the database answers and its schema is at the newest migration."""
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
        checks["schema"] = "ok" if schema_is_current(get_engine()) else "behind the newest migration: run `perflaw db upgrade`"
    except SQLAlchemyError as error:
        checks["database"] = f"unreachable: {type(error).__name__}"
    ready = all(value == "ok" for value in checks.values()) and "schema" in checks
    body = HealthStatus(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def prometheus_metrics() -> Response:
    """Return the service's metrics in the Prometheus text format."""
    _refresh_queue_gauges()
    return Response(metrics.render_latest(), media_type="text/plain; version=0.0.4")


def _refresh_queue_gauges() -> None:
    now = datetime.now(timezone.utc)
    try:
        with get_session_factory()() as session:
            counts = session.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)).all()
            ready = session.scalar(select(func.count()).where(Job.status == "queued", Job.run_after <= now))
            heartbeats = session.execute(
                select(Job.worker_id, func.max(Job.heartbeat_at)).where(Job.status == "running").group_by(Job.worker_id)
            ).all()
            durations = _job_duration_rows(session)
    except SQLAlchemyError as error:
        # The request metrics are still worth returning; the queue gauges keep their last values.
        logger.warning("cannot read the job queue for /metrics: %s", error)
        return
    metrics.JOBS_BY_STATUS.clear()
    for kind, status, count in counts:
        metrics.JOBS_BY_STATUS.labels(kind, status).set(count)
    metrics.QUEUE_DEPTH.set(ready or 0)
    metrics.WORKER_HEARTBEAT_AGE.clear()
    for worker_id, heartbeat_at in heartbeats:
        if worker_id and heartbeat_at:
            if heartbeat_at.tzinfo is None:
                heartbeat_at = heartbeat_at.replace(tzinfo=timezone.utc)
            metrics.WORKER_HEARTBEAT_AGE.labels(worker_id).set((now - heartbeat_at).total_seconds())
    metrics.JOB_DURATION.rows = durations


def _job_duration_s(dialect_name: str):
    """Return a SQL expression for a job's finished_at - started_at in seconds."""
    if dialect_name == "postgresql":
        return func.extract("epoch", Job.finished_at - Job.started_at)
    return (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0


def _job_duration_rows(session) -> list[metrics.JobDurationRow]:
    """Count finished jobs into the duration buckets, by kind and final status, in one query."""
    duration_s = _job_duration_s(session.get_bind().dialect.name)
    bucket_columns = [
        func.sum(case((duration_s <= bound, 1), else_=0)) for bound in metrics.JOB_DURATION_BUCKETS_S
    ]
    query = (
        select(Job.kind, Job.status, func.count(), func.sum(duration_s), *bucket_columns)
        .where(Job.started_at.is_not(None), Job.finished_at.is_not(None))
        .group_by(Job.kind, Job.status)
    )
    return [
        metrics.JobDurationRow(
            kind=kind, status=status, count=count, sum_s=float(total_s or 0.0),
            bucket_counts=tuple(int(value or 0) for value in buckets),
        )
        for kind, status, count, total_s, *buckets in session.execute(query)
    ]
