"""Exceptions that tell the runner what to do with a job that stopped before it succeeded.

Handlers raise RetryableJobError or FatalJobError for failures they recognise. The runner
also treats ValueError as fatal (bad input), and OSError and SQLAlchemy's OperationalError as
retryable (a full disk, a dropped database connection). Any other exception is a fatal error
too, because an unrecognised bug fails the same way on every attempt.
"""

from __future__ import annotations


class RetryableJobError(Exception):
    """A transient failure: the job is queued again after a backoff while attempts remain."""


class FatalJobError(Exception):
    """A failure that retrying cannot fix, such as a missing dataset or an invalid config."""


class JobStopped(Exception):
    """The job stopped at a step boundary on the worker's request; the subclass gives the reason."""


class JobCancelled(JobStopped):
    """A cancel was requested for the job; the runner marks it cancelled."""


class LeaseLost(JobStopped):
    """This worker no longer owns the job, because its lease expired and the job was taken back."""


class WorkerStopping(JobStopped):
    """The worker is shutting down; the runner releases the job to the queue."""
