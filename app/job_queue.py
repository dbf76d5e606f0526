"""Inserting and cancelling jobs: the part of the job queue that the service itself uses.

The service only ever inserts a job row or flags it for cancellation; claiming, leases and
retries live in worker/store.py, which builds on these functions.
"""

from __future__ import annotations

from sqlalchemy import Connection, case, func, select, update
from sqlalchemy.orm import Session

from app.models import Job, utc_now
from app.settings import get_settings

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL_STATUSES = (SUCCEEDED, FAILED, CANCELLED)


def current_time(connection: Connection) -> datetime:
    """Return the queue's clock: the database server's now() on PostgreSQL, else the local UTC time.

    On SQLite this reads nothing, so it can come before a transaction's first write.
    """
    if connection.dialect.name == "postgresql":
        return connection.execute(select(func.now())).scalar_one()
    return utc_now()


def enqueue_job(
    session: Session,
    *,
    tenant_id: int,
    kind: str,
    payload: dict,
    max_attempts: int | None = None,
) -> Job:
    """Add a queued job to the session and flush it so that it has an id; does not commit.

    The caller commits the job in the same transaction as the write that needs it, so a job
    never exists without its cause, nor the cause without its job.

    Args:
        max_attempts: attempts before the job fails for good; None takes the
            PERFLAW_MAX_ATTEMPTS setting.

    Raises:
        ValueError: max_attempts is less than 1.
    """
    if max_attempts is None:
        max_attempts = get_settings().max_attempts
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    job = Job(
        tenant_id=tenant_id,
        kind=kind,
        payload=payload,
        status=QUEUED,
        attempts=0,
        max_attempts=max_attempts,
        run_after=current_time(session.connection()),
        progress={},
        cancel_requested=False,
    )
    session.add(job)
    session.flush()
    return job


def request_cancel(session: Session, job_id: int) -> str | None:
    """Request that a job stop; does not commit.

    A queued job becomes cancelled at once. A running job gets cancel_requested = true and
    keeps running until its handler reaches the next step boundary (a training epoch), where
    the runner marks it cancelled; a job whose handler has no step boundary runs to the end.
    Jobs in a final status are left alone. One UPDATE makes the decision, so a job that
    changes state at the same moment cannot miss the request.

    Returns:
        The job's status after the request, or None when there is no job with that id.
    """
    now = current_time(session.connection())
    was_queued = Job.status == QUEUED
    status = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_([QUEUED, RUNNING]))
        .values(
            cancel_requested=True,
            status=case((was_queued, CANCELLED), else_=Job.status),
            finished_at=case((was_queued, now), else_=Job.finished_at),
            updated_at=now,
        )
        .returning(Job.status)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if status is not None:
        return status
    return session.scalar(select(Job.status).where(Job.id == job_id))
