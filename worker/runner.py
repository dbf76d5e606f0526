"""The worker: a loop that claims jobs, runs their handlers, keeps their leases, and stops cleanly.

Timings (settings, environment prefix PERFLAW_):
- lease_s: a claim lasts this long unless renewed. While a job runs, a background thread
  renews the lease every heartbeat_s, so a job may run for any length of time while its
  worker is alive, and is taken back about lease_s after its worker dies. heartbeat_s must
  be less than lease_s; a few heartbeats per lease tolerate a slow database.
- Every heartbeat_s, between jobs, each worker also takes back other workers' jobs whose
  lease expired (worker.store.requeue_expired_leases).
- poll_interval_s: the wait between claims while the queue is empty.
- retry_base_s, retry_max_s, max_attempts: the retry schedule of worker.store.fail_job.

Shutdown: the first SIGTERM or SIGINT stops the claiming of new jobs. A running training job
stops at its next epoch boundary, after that epoch's checkpoint, and is released to the
queue without counting the attempt. Any other running job runs to the end. Then the
process exits with status 0. A second signal stops the process at once (SIGTERM with its
default action, SIGINT with KeyboardInterrupt), and the job goes back to the queue when
its lease expires.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from app.db import get_engine
from app.logging_setup import configure_logging
from app.models import Job
from app.settings import Settings, get_settings
from app.storage import Storage, get_storage
from worker import store
from worker.errors import (
    FatalJobError,
    JobCancelled,
    JobStopped,
    LeaseLost,
    RetryableJobError,
    WorkerStopping,
)
from worker.handlers import ResultWriter, get_handler, registered_kinds

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention
# Maximum wait between tries when the loop itself keeps failing (e.g. the database is down).
MAX_LOOP_BACKOFF_S = 60.0
# Error texts longer than this are cut before they are stored in the job row.
MAX_ERROR_CHARS = 4000


def default_worker_id() -> str:
    """Return an id unique to this worker: host name, process id and a random suffix.

    The suffix keeps thread workers of one process apart, and keeps a restarted container
    whose host name and process id repeat from looking like its predecessor.
    """
    return f"{socket.gethostname()[:80]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def is_retryable(error: BaseException) -> bool:
    """Return whether a job that raised error may succeed on a later attempt."""
    if isinstance(error, RetryableJobError):
        return True
    if isinstance(error, FatalJobError):
        return False
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (OSError, OperationalError))


def describe_error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    if len(text) > MAX_ERROR_CHARS:
        return text[: MAX_ERROR_CHARS - 15] + " ... (truncated)"
    return text


class JobContext:
    """The handler's view of a running job: the claimed job, the worker's resources, and the reasons to stop.

    The stop reasons are set from other threads: the lease thread sets cancel and lost
    lease, the signal handler sets shutdown. Handlers with steps (training epochs) check
    stop_requested between steps and then call raise_if_stopped().
    """

    def __init__(
        self,
        job: Job,
        *,
        worker_id: str,
        engine: Engine,
        storage: Storage,
        settings: Settings,
        device: str,
        shutdown: threading.Event,
    ) -> None:
        self.job = job
        self.worker_id = worker_id
        self.engine = engine
        self.storage = storage
        self.settings = settings
        self.device = device
        self.log_extra = {"job_id": job.id, "worker_id": worker_id, "attempt": job.attempts, "kind": job.kind}
        self._shutdown = shutdown
        self._cancel_requested = threading.Event()
        self._lease_lost = threading.Event()
        self._final_callbacks: list[Callable[[], None]] = []

    def renew_lease(self, progress: dict | None = None) -> None:
        """Extend the lease (a heartbeat), store progress if given, and note cancel or a lost lease.

        A database error is logged and otherwise ignored: the lease thread tries again every
        heartbeat_s, and the job is lost only if no renewal succeeds within lease_s.
        """
        try:
            status = store.heartbeat(self.engine, self.job.id, self.worker_id, self.settings.lease_s, progress)
        except (SQLAlchemyError, OSError) as error:
            logger.warning("heartbeat failed; trying again later: %s", error, extra=self.log_extra)
            return
        if not status.owned and not self._lease_lost.is_set():
            logger.warning("lease lost: the job was taken back from this worker", extra=self.log_extra)
            self._lease_lost.set()
        if status.cancel_requested and not self._cancel_requested.is_set():
            logger.info("cancel requested; stopping at the next step", extra=self.log_extra)
            self._cancel_requested.set()
        logger.debug("heartbeat", extra=self.log_extra)

    def report_progress(self, progress: dict) -> None:
        """Store progress in the job row at once, renewing the lease with it."""
        self.renew_lease(progress)

    @property
    def stop_requested(self) -> bool:
        return self._lease_lost.is_set() or self._cancel_requested.is_set() or self._shutdown.is_set()

    def raise_if_stopped(self) -> None:
        """Raise the JobStopped subclass for the most urgent stop reason, if there is one."""
        if self._lease_lost.is_set():
            raise LeaseLost(f"job {self.job.id} was taken back from worker {self.worker_id}")
        if self._cancel_requested.is_set():
            raise JobCancelled(f"job {self.job.id} was cancelled")
        if self._shutdown.is_set():
            raise WorkerStopping(f"worker {self.worker_id} is shutting down")

    def on_final(self, callback: Callable[[], None]) -> None:
        """Register callback to run once the job is succeeded, failed or cancelled, but not when it is retried or released."""
        self._final_callbacks.append(callback)

    def run_final_callbacks(self) -> None:
        for callback in self._final_callbacks:
            try:
                callback()
            except Exception:
                logger.exception("clean-up after the job failed", extra=self.log_extra)


class LeaseKeeper:
    """A background thread that renews a running job's lease every interval_s; a context manager."""

    def __init__(self, context: JobContext, interval_s: float) -> None:
        self.context = context
        self.interval_s = interval_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_done, name=f"lease-job-{context.job.id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()

    def _renew_until_done(self) -> None:
        while not self._done.wait(self.interval_s):
            self.context.renew_lease()


class Worker:
    """Claims and runs jobs one at a time.

    Args:
        engine, storage, settings: the database, file storage and timings to use.
        worker_id: the id written into claimed jobs; None makes one (default_worker_id).
        kinds: job kinds to claim; None claims every kind with a registered handler.
        device: "auto", "cpu" or "cuda" for training; None takes the device setting.

    Raises:
        ValueError: heartbeat_s is not less than lease_s, so leases would lapse while jobs run.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        storage: Storage,
        settings: Settings,
        worker_id: str | None = None,
        kinds: list[str] | None = None,
        device: str | None = None,
    ) -> None:
        if not settings.heartbeat_s < settings.lease_s:
            raise ValueError(
                f"heartbeat_s ({settings.heartbeat_s}) must be less than lease_s ({settings.lease_s}), "
                "or leases expire while jobs run; set PERFLAW_HEARTBEAT_S and PERFLAW_LEASE_S"
            )
        self.engine = engine
        self.storage = storage
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.kinds = list(kinds) if kinds is not None else None
        self.device = device or settings.device
        self.log_extra = {"worker_id": self.worker_id}
        self._stopping = threading.Event()
        self._next_lease_check = 0.0

    def request_stop(self) -> None:
        """Stop claiming jobs, and make a running job stop at its next step; safe to call from any thread."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run_forever(self) -> None:
        """Claim and run jobs until request_stop(); errors of the loop itself are logged and retried."""
        kinds = self.kinds if self.kinds is not None else registered_kinds()
        logger.info("worker started", extra={**self.log_extra, "device": self.device, "kinds": ",".join(kinds)})
        consecutive_errors = 0
        while not self._stopping.is_set():
            try:
                ran = self.run_once()
            except Exception:
                consecutive_errors += 1
                delay_s = min(MAX_LOOP_BACKOFF_S, self.settings.poll_interval_s * 2**consecutive_errors)
                logger.exception("worker loop failed; trying again in %.1f s", delay_s, extra=self.log_extra)
                self._stopping.wait(delay_s)
                continue
            consecutive_errors = 0
            if not ran:
                self._stopping.wait(self.settings.poll_interval_s)
        logger.info("worker stopped", extra=self.log_extra)

    def run_once(self) -> bool:
        """Take back expired leases if due, then claim and run one job; return whether one ran."""
        self._requeue_expired_leases_if_due()
        if self._stopping.is_set():
            return False
        kinds = self.kinds if self.kinds is not None else registered_kinds()
        job = store.claim_job(self.engine, self.worker_id, self.settings.lease_s, kinds)
        if job is None:
            return False
        self.run_job(job)
        return True

    def run_job(self, job: Job) -> None:
        """Run a job this worker has claimed and record how it ended."""
        context = JobContext(
            job,
            worker_id=self.worker_id,
            engine=self.engine,
            storage=self.storage,
            settings=self.settings,
            device=self.device,
            shutdown=self._stopping,
        )
        logger.info("claimed job", extra=context.log_extra)
        started = time.monotonic()
        try:
            handler = get_handler(job.kind)
            with LeaseKeeper(context, self.settings.heartbeat_s):
                write_result = handler(context)
            self._finish(context, write_result)
        except JobStopped as stop:
            self._settle_stopped(context, stop)
        except Exception as error:
            self._settle_failure(context, error)
        else:
            logger.info(
                "job succeeded", extra={**context.log_extra, "duration_s": round(time.monotonic() - started, 3)}
            )
            context.run_final_callbacks()

    def _finish(self, context: JobContext, write_result: ResultWriter) -> None:
        """Write the job's rows and mark it succeeded in one transaction, if this worker still owns it."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            if not store.lock_owned_job(session, context.job.id, self.worker_id):
                raise LeaseLost(f"job {context.job.id} was taken back before its result was written")
            result = write_result(session)
            if not store.finish_job(session, context.job.id, self.worker_id, result):
                raise LeaseLost(f"job {context.job.id} was taken back while its result was written")

    def _settle_stopped(self, context: JobContext, stop: JobStopped) -> None:
        if isinstance(stop, LeaseLost):
            # The job now belongs to another worker, and so does its checkpoint: leave both.
            logger.warning("abandoned job: %s", stop, extra=context.log_extra)
            return
        if isinstance(stop, JobCancelled):
            if store.mark_cancelled(self.engine, context.job.id, self.worker_id):
                logger.info("job cancelled", extra=context.log_extra)
                context.run_final_callbacks()
            else:
                logger.warning("job stopped for a cancel after its lease was lost", extra=context.log_extra)
            return
        if isinstance(stop, WorkerStopping):
            status = store.release_job(self.engine, context.job.id, self.worker_id)
            logger.info("released job on shutdown; its status is now %s", status, extra=context.log_extra)
            if status == store.CANCELLED:
                context.run_final_callbacks()

    def _settle_failure(self, context: JobContext, error: Exception) -> None:
        retryable = is_retryable(error)
        status = store.fail_job(
            self.engine,
            context.job.id,
            self.worker_id,
            error=describe_error(error),
            retryable=retryable,
            retry_base_s=self.settings.retry_base_s,
            retry_max_s=self.settings.retry_max_s,
        )
        if status is None:
            logger.warning("job failed after its lease was lost: %s", describe_error(error), extra=context.log_extra)
            return
        if status == store.QUEUED:
            delay_s = store.retry_delay_s(context.job.attempts, self.settings.retry_base_s, self.settings.retry_max_s)
            logger.warning(
                "job failed; retrying in %.1f s: %s", delay_s, describe_error(error), extra=context.log_extra
            )
            return
        if status == store.CANCELLED:
            logger.info("job cancelled after it failed: %s", describe_error(error), extra=context.log_extra)
        else:
            # Bad input is explained by its message; anything else needs the traceback.
            expected = isinstance(error, (FatalJobError, ValueError))
            logger.error(
                "job failed: %s", describe_error(error), exc_info=None if expected else error, extra=context.log_extra
            )
        context.run_final_callbacks()

    def _requeue_expired_leases_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next_lease_check:
            return
        self._next_lease_check = now + self.settings.heartbeat_s
        for expired in store.requeue_expired_leases(
            self.engine, retry_base_s=self.settings.retry_base_s, retry_max_s=self.settings.retry_max_s
        ):
            extra = {**self.log_extra, "job_id": expired.job_id, "attempt": expired.attempt}
            if expired.status == store.FAILED:
                logger.error("took back job: %s; no attempts left", expired.error, extra=extra)
            else:
                logger.warning("took back job: %s; now %s", expired.error, expired.status, extra=extra)


def _install_signal_handlers(worker: Worker) -> None:
    """Make the first SIGTERM or SIGINT stop the worker cleanly, and a second one stop it at once."""

    def request_stop(signal_number: int, _frame) -> None:
        logger.info(
            "received %s; stopping after the current step (send it again to stop at once)",
            signal.Signals(signal_number).name,
            extra=worker.log_extra,
        )
        worker.request_stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def _check_device(device: str) -> None:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"invalid device {device!r}: use auto, cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("device cuda was requested but torch sees no CUDA device; use --device cpu or auto")


def run_worker(device: str, once: bool) -> int:
    """Run a worker in this process with the configured settings; return the exit status.

    once=True runs at most one job and returns. Otherwise jobs run until SIGTERM or SIGINT.
    Returns 0 on a clean stop, 2 for an invalid device or settings, 3 when --once hit an
    internal error, and 130 when a second SIGINT interrupted the worker.
    """
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        _check_device(device)
        worker = Worker(engine=get_engine(), storage=get_storage(), settings=settings, device=device)
    except ValueError as error:
        logger.error("cannot start the worker: %s", error)
        return EXIT_BAD_INPUT
    if threading.current_thread() is threading.main_thread():
        _install_signal_handlers(worker)
    try:
        if not once:
            worker.run_forever()
            return EXIT_OK
        worker.run_once()
    except KeyboardInterrupt:
        logger.warning(
            "interrupted; a running job returns to the queue when its lease expires", extra=worker.log_extra
        )
        return EXIT_INTERRUPTED
    except Exception:
        logger.exception("worker failed", extra=worker.log_extra)
        return EXIT_INTERNAL_ERROR
    return EXIT_OK


def start_in_process_workers(count: int) -> Callable[..., None]:
    """Start count workers on daemon threads of this process (for `perflaw serve`).

    Returns:
        stop(timeout_s=None): requests that every worker stop, as SIGTERM does, and waits up
        to timeout_s (None: lease_s) for them. A worker still busy after that is left
        behind; its job goes back to the queue when its lease expires.

    NOTE: training seeds the process-wide Python, NumPy and torch random generators, so two
    training jobs running at once on threads of one process are not reproducible from
    their seeds. Use count=1, or `perflaw worker` processes, when runs must be reproducible.
    """
    settings = get_settings()
    workers = [Worker(engine=get_engine(), storage=get_storage(), settings=settings) for _ in range(count)]
    threads = [
        threading.Thread(target=worker.run_forever, name=f"perflaw-worker-{index}", daemon=True)
        for index, worker in enumerate(workers)
    ]
    for thread in threads:
        thread.start()

    def stop(timeout_s: float | None = None) -> None:
        for worker in workers:
            worker.request_stop()
        deadline = time.monotonic() + (settings.lease_s if timeout_s is None else timeout_s)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        still_running = [thread.name for thread in threads if thread.is_alive()]
        if still_running:
            logger.warning(
                "in-process workers %s are still running; their jobs return to the queue when their leases expire",
                still_running,
            )

    return stop
