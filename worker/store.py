"""The SQL that moves jobs through their states, for SQLite and PostgreSQL.

States and transitions:

    queued --claim_job--> running --finish_job--> succeeded
    running --fail_job (retryable, attempts left)--> queued (after a backoff)
    running --fail_job (otherwise)--> failed
    running --lease expired, attempts left--> queued (after a backoff)
    running --lease expired, no attempts left--> failed
    running --release_job (worker shutdown)--> queued (the attempt is not counted)
    queued --request_cancel--> cancelled
    running --request_cancel--> running with cancel_requested, then
            --mark_cancelled (the handler stopped between steps)--> cancelled

A running job whose cancel was requested never goes back to queued: where it would be
retried or released, it becomes cancelled instead.

Ownership: while a job runs, its row names the worker (worker_id) that claimed it. Every
function that moves a running job checks, in its WHERE clause, that the row is still running
and still names that worker. So a worker whose lease expired cannot finish, fail or extend a
job that another worker has claimed since. A worker runs one job at a time, so worker_id
and status together identify one attempt.

Concurrency: each statement that changes a job is a single UPDATE with its conditions in the
WHERE clause, and a transaction that must read a row before deciding takes the row's lock
first by updating it (UPDATE ... RETURNING). On PostgreSQL that is a row lock. On SQLite it
is the database's write lock, taken before anything is read, so no transaction works from a
stale snapshot. Claiming uses FOR UPDATE SKIP LOCKED on PostgreSQL, so concurrent workers
pass over a row that another worker is claiming instead of waiting for it. SQLite has one
writer at a time, and the UPDATE's `status = 'queued'` condition is checked under its lock.

Clock: on PostgreSQL every timestamp that the queue compares (run_after, lease_expires_at)
comes from the database server's clock (now(), the start of the current transaction), so
workers on machines whose clocks disagree still agree on when a lease expires. On SQLite
(one machine) the local clock is used. Timestamps are stored in UTC.

The functions here never start a loop or sleep; worker/runner.py does that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, case, func, select, update
from sqlalchemy.orm import Session

from app.job_queue import (  # noqa: F401  (re-exported: the store is the queue's full API)
    CANCELLED,
    FAILED,
    FINAL_STATUSES,
    QUEUED,
    RUNNING,
    STATUSES,
    SUCCEEDED,
    current_time,
    enqueue_job,
    request_cancel,
)
from app.models import Job, utc_now
from app.settings import get_settings


# 2 ** 60 seconds already exceeds any retry_max_s, and a larger exponent overflows a float.
_MAX_BACKOFF_EXPONENT = 60


@dataclass(frozen=True)
class HeartbeatStatus:
    """Result of a heartbeat: whether this worker still owns the job, and whether a cancel was requested."""

    owned: bool
    cancel_requested: bool


@dataclass(frozen=True)
class ExpiredLease:
    """A running job that requeue_expired_leases took back from a worker whose lease expired."""

    job_id: int
    worker_id: str | None
    attempt: int
    status: str
    error: str


def retry_delay_s(attempt: int, retry_base_s: float, retry_max_s: float) -> float:
    """Return the wait in seconds before retrying a job whose attempt number `attempt` failed.

    delay = min(retry_max_s, retry_base_s * 2 ** (attempt - 1)), so with the defaults
    (retry_base_s = 5, retry_max_s = 600) the waits after attempts 1, 2, 3, ... are
    5, 10, 20, 40, 80, 160, 320, 600, 600, ... seconds.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    exponent = min(attempt - 1, _MAX_BACKOFF_EXPONENT)
    return min(retry_max_s, retry_base_s * math.pow(2.0, exponent))



def claim_job(engine: Engine, worker_id: str, lease_s: float, kinds: list[str] | None = None) -> Job | None:
    """Claim the oldest queued job that is due, or return None when there is none.

    One UPDATE ... WHERE id = (SELECT ... LIMIT 1) ... RETURNING, in one transaction, moves
    the job to running, counts the attempt (attempts + 1), records worker_id and sets
    lease_expires_at = now + lease_s. On PostgreSQL the inner SELECT is FOR UPDATE SKIP
    LOCKED; on SQLite the outer `status = 'queued'` condition is checked under the write lock.
    Either way no two workers can claim one job.

    Args:
        lease_s: seconds the claim lasts unless heartbeat() extends it.
        kinds: claim only jobs of these kinds; None claims any kind.

    Returns:
        The claimed job, detached from any session, with its columns loaded.
    """
    if kinds is not None and not kinds:
        return None
    with Session(engine, expire_on_commit=False) as session, session.begin():
        now = current_time(session.connection())
        due = [Job.status == QUEUED, Job.run_after <= now]
        if kinds is not None:
            due.append(Job.kind.in_(kinds))
        oldest_due = (
            select(Job.id)
            .where(*due)
            .order_by(Job.run_after, Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        claimed_id = session.execute(
            update(Job)
            .where(Job.id == oldest_due, Job.status == QUEUED)
            .values(
                status=RUNNING,
                attempts=Job.attempts + 1,
                worker_id=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_s),
                heartbeat_at=now,
                started_at=now,
                updated_at=now,
            )
            .returning(Job.id)
        ).scalar_one_or_none()
        if claimed_id is None:
            return None
        return session.get(Job, claimed_id, populate_existing=True)


def _owned_by(job_id: int, worker_id: str) -> list:
    return [Job.id == job_id, Job.worker_id == worker_id, Job.status == RUNNING]


def heartbeat(
    engine: Engine, job_id: int, worker_id: str, lease_s: float, progress: dict | None = None
) -> HeartbeatStatus:
    """Extend the lease of a job that this worker still owns to now + lease_s.

    Args:
        progress: when given, replaces the job's progress document.

    Returns:
        owned=False when the job is no longer running under this worker (its lease expired
        and it was taken back, or it was finished); nothing is changed then.
    """
    with engine.begin() as connection:
        now = current_time(connection)
        values = {"lease_expires_at": now + timedelta(seconds=lease_s), "heartbeat_at": now, "updated_at": now}
        if progress is not None:
            values["progress"] = progress
        cancel_requested = connection.execute(
            update(Job).where(*_owned_by(job_id, worker_id)).values(**values).returning(Job.cancel_requested)
        ).scalar_one_or_none()
    if cancel_requested is None:
        return HeartbeatStatus(owned=False, cancel_requested=False)
    return HeartbeatStatus(owned=True, cancel_requested=bool(cancel_requested))


def lock_owned_job(session: Session, job_id: int, worker_id: str) -> bool:
    """Take the job row's lock if this worker owns the job, and return whether it does.

    Call it first in the transaction that writes a job's results, before anything is read,
    so the job cannot be taken back while those rows are written (see the module notes).
    """
    now = current_time(session.connection())
    locked_id = session.execute(
        update(Job).where(*_owned_by(job_id, worker_id)).values(updated_at=now).returning(Job.id)
    ).scalar_one_or_none()
    return locked_id is not None


def finish_job(session: Session, job_id: int, worker_id: str, result: dict) -> bool:
    """Mark a job that this worker owns succeeded with result; does not commit.

    The error of any earlier attempt is cleared. Returns False, changing nothing, when the
    worker no longer owns the job; the caller must then roll back whatever it wrote for it.
    A job whose cancel was requested but which ran to the end still succeeds, because its
    work is done.
    """
    now = current_time(session.connection())
    finished_id = session.execute(
        update(Job)
        .where(*_owned_by(job_id, worker_id))
        .values(status=SUCCEEDED, result=result, error=None, lease_expires_at=None, finished_at=now, updated_at=now)
        .returning(Job.id)
    ).scalar_one_or_none()
    return finished_id is not None


def _status_after_failure(attempts: int, max_attempts: int, cancel_requested: bool, retryable: bool) -> str:
    if cancel_requested:
        return CANCELLED
    if retryable and attempts < max_attempts:
        return QUEUED
    return FAILED


def _values_after_failure(status: str, attempts: int, now: datetime, retry_base_s: float, retry_max_s: float) -> dict:
    values = {"status": status, "lease_expires_at": None, "updated_at": now}
    if status == QUEUED:
        values["worker_id"] = None
        values["run_after"] = now + timedelta(seconds=retry_delay_s(attempts, retry_base_s, retry_max_s))
    else:
        values["finished_at"] = now
    return values


def fail_job(
    engine: Engine,
    job_id: int,
    worker_id: str,
    *,
    error: str,
    retryable: bool,
    retry_base_s: float,
    retry_max_s: float,
) -> str | None:
    """Record a failed attempt of a job that this worker owns, and queue it again or fail it.

    A retryable failure with attempts left (attempts < max_attempts) puts the job back to
    queued with run_after = now + min(retry_max_s, retry_base_s * 2 ** (attempts - 1)),
    where attempts counts the attempt that just failed (see retry_delay_s). Otherwise the job
    becomes failed, or cancelled if a cancel was requested. The error is stored either way.

    Returns:
        The job's new status, or None (nothing changed) when the worker no longer owns it.
    """
    with engine.begin() as connection:
        now = current_time(connection)
        locked = connection.execute(
            update(Job)
            .where(*_owned_by(job_id, worker_id))
            .values(error=error, updated_at=now)
            .returning(Job.attempts, Job.max_attempts, Job.cancel_requested)
        ).one_or_none()
        if locked is None:
            return None
        status = _status_after_failure(locked.attempts, locked.max_attempts, locked.cancel_requested, retryable)
        values = _values_after_failure(status, locked.attempts, now, retry_base_s, retry_max_s)
        connection.execute(update(Job).where(Job.id == job_id).values(**values))
    return status


def release_job(engine: Engine, job_id: int, worker_id: str) -> str | None:
    """Put a job that this worker owns back to queued because the worker is shutting down.

    The attempt is not counted (attempts - 1), because the job did not fail: a worker that
    is stopped during a deploy should not use up the job's retries. The job is due at once
    and, if it checkpointed, the next attempt resumes from the checkpoint. A job whose cancel
    was requested becomes cancelled instead.

    Returns:
        The job's new status (queued or cancelled), or None when the worker no longer owns it.
    """
    with engine.begin() as connection:
        now = current_time(connection)
        cancelled = Job.cancel_requested.is_(True)
        status = connection.execute(
            update(Job)
            .where(*_owned_by(job_id, worker_id))
            .values(
                status=case((cancelled, CANCELLED), else_=QUEUED),
                attempts=case((cancelled, Job.attempts), else_=Job.attempts - 1),
                worker_id=case((cancelled, Job.worker_id), else_=None),
                finished_at=case((cancelled, now), else_=None),
                lease_expires_at=None,
                run_after=now,
                updated_at=now,
            )
            .returning(Job.status)
        ).scalar_one_or_none()
    return status


def mark_cancelled(engine: Engine, job_id: int, worker_id: str) -> bool:
    """Mark a job that this worker owns cancelled, after its handler stopped on a cancel request.

    Returns False, changing nothing, when the worker no longer owns the job.
    """
    with engine.begin() as connection:
        now = current_time(connection)
        cancelled_id = connection.execute(
            update(Job)
            .where(*_owned_by(job_id, worker_id))
            .values(status=CANCELLED, lease_expires_at=None, finished_at=now, updated_at=now)
            .returning(Job.id)
        ).scalar_one_or_none()
    return cancelled_id is not None



def _lease_expiry_error(worker_id: str | None, attempt: int) -> str:
    return f"lease expired on worker {worker_id} (attempt {attempt})"


def requeue_expired_leases(
    engine: Engine, now: datetime | None = None, *, retry_base_s: float | None = None, retry_max_s: float | None = None
) -> list[ExpiredLease]:
    """Take back running jobs whose lease expired because their worker died or stalled.

    Each such job goes back to queued when attempts remain (attempts < max_attempts), after
    the same backoff as a retryable failure (retry_delay_s), and otherwise becomes failed; a
    job whose cancel was requested becomes cancelled. Its error reads
    "lease expired on worker W (attempt N)". Each job is taken back in its own transaction,
    under its row lock. A worker that renews the lease at the same moment either wins, and
    the job stays running, or loses, and its next heartbeat finds that it no longer owns it.

    Args:
        now: the time to compare leases with; None takes the queue's clock (current_time).
        retry_base_s, retry_max_s: the backoff settings; None takes PERFLAW_RETRY_BASE_S and
            PERFLAW_RETRY_MAX_S.

    Returns:
        The jobs taken back, with their new status.
    """
    settings = get_settings()
    retry_base_s = settings.retry_base_s if retry_base_s is None else retry_base_s
    retry_max_s = settings.retry_max_s if retry_max_s is None else retry_max_s
    with engine.begin() as connection:
        if now is None:
            now = current_time(connection)
        expired_ids = connection.scalars(
            select(Job.id).where(Job.status == RUNNING, Job.lease_expires_at < now).order_by(Job.id)
        ).all()
    taken_back = []
    for job_id in expired_ids:
        expired = _requeue_expired_lease(engine, job_id, now, retry_base_s, retry_max_s)
        if expired is not None:
            taken_back.append(expired)
    return taken_back


def _requeue_expired_lease(
    engine: Engine, job_id: int, now: datetime, retry_base_s: float, retry_max_s: float
) -> ExpiredLease | None:
    with engine.begin() as connection:
        locked = connection.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == RUNNING, Job.lease_expires_at < now)
            .values(updated_at=now)
            .returning(Job.worker_id, Job.attempts, Job.max_attempts, Job.cancel_requested)
        ).one_or_none()
        if locked is None:
            return None
        error = _lease_expiry_error(locked.worker_id, locked.attempts)
        status = _status_after_failure(locked.attempts, locked.max_attempts, locked.cancel_requested, retryable=True)
        values = _values_after_failure(status, locked.attempts, now, retry_base_s, retry_max_s)
        connection.execute(update(Job).where(Job.id == job_id).values(error=error, **values))
    return ExpiredLease(job_id=job_id, worker_id=locked.worker_id, attempt=locked.attempts, status=status, error=error)


def count_jobs_by_status(session: Session) -> dict[str, int]:
    """Return the number of jobs in each status, with 0 for statuses that have none."""
    counts = dict.fromkeys(STATUSES, 0)
    for status, count in session.execute(select(Job.status, func.count()).group_by(Job.status)):
        counts[status] = count
    return counts


def queue_depth(session: Session) -> int:
    """Return the number of queued jobs that are due now, i.e. ready to be claimed."""
    now = current_time(session.connection())
    return session.scalar(select(func.count()).where(Job.status == QUEUED, Job.run_after <= now))
