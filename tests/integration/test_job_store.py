"""The job store's SQL, and the runner that drives it, against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from app.db import create_database_engine
from app.models import Dataset, DatasetProfile, Job, Run, Tenant
from app.settings import Settings
from app.storage import Storage
from core.dataset import from_sequences
from worker import store
from worker.errors import RetryableJobError
from worker.handlers import register_handler
from worker.runner import Worker

RETRY_BASE_S = 5.0
RETRY_MAX_S = 600.0


def as_utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes that are UTC; PostgreSQL returns aware ones."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


@pytest.fixture
def engine(database_url):
    engine = create_database_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def tenant_id(engine) -> int:
    with Session(engine) as session, session.begin():
        tenant = Tenant(name="store-tests")
        session.add(tenant)
        session.flush()
        return tenant.id


def enqueue(engine, tenant_id: int, count: int = 1, *, kind: str = "noop", max_attempts: int = 3) -> list[int]:
    with Session(engine) as session, session.begin():
        jobs = [
            store.enqueue_job(session, tenant_id=tenant_id, kind=kind, payload={"n": n}, max_attempts=max_attempts)
            for n in range(count)
        ]
        return [job.id for job in jobs]


def load_job(engine, job_id: int) -> Job:
    with Session(engine) as session:
        return session.get(Job, job_id)


def fail(engine, job_id: int, worker_id: str, *, retryable: bool) -> str | None:
    return store.fail_job(
        engine, job_id, worker_id, error="boom", retryable=retryable, retry_base_s=RETRY_BASE_S, retry_max_s=RETRY_MAX_S
    )


def expire_leases(engine) -> list[store.ExpiredLease]:
    """Move every running job's lease into the past, then take the expired ones back with no backoff."""
    with engine.begin() as connection:
        earlier = datetime.now(timezone.utc) - timedelta(seconds=1)
        connection.execute(update(Job).where(Job.status == "running").values(lease_expires_at=earlier))
    return store.requeue_expired_leases(engine, retry_base_s=0.0, retry_max_s=0.0)


def test_retry_delay_doubles_then_caps():
    delays = [store.retry_delay_s(attempt, 5.0, 600.0) for attempt in range(1, 10)]
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0]


def test_retry_delay_huge_attempt_stays_capped():
    assert store.retry_delay_s(10_000, 5.0, 600.0) == 600.0


def test_retry_delay_rejects_attempt_zero():
    with pytest.raises(ValueError, match="attempt must be at least 1"):
        store.retry_delay_s(0, 5.0, 600.0)


def test_enqueue_does_not_commit(engine, tenant_id):
    with Session(engine) as session:
        store.enqueue_job(session, tenant_id=tenant_id, kind="noop", payload={})
        session.rollback()
    with Session(engine) as session:
        assert session.scalar(select(Job.id)) is None


def test_enqueue_rejects_zero_attempts(engine, tenant_id):
    with Session(engine) as session:
        with pytest.raises(ValueError, match="max_attempts must be at least 1"):
            store.enqueue_job(session, tenant_id=tenant_id, kind="noop", payload={}, max_attempts=0)


def test_claim_takes_oldest_due_job(engine, tenant_id):
    first, second = enqueue(engine, tenant_id, 2)
    job = store.claim_job(engine, "worker-a", lease_s=30)
    assert job.id == first
    assert job.status == "running"
    assert job.attempts == 1
    assert job.worker_id == "worker-a"
    assert as_utc(job.lease_expires_at) > datetime.now(timezone.utc) + timedelta(seconds=25)
    assert store.claim_job(engine, "worker-b", lease_s=30).id == second
    assert store.claim_job(engine, "worker-c", lease_s=30) is None


def test_claim_skips_job_not_yet_due(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    with engine.begin() as connection:
        later = datetime.now(timezone.utc) + timedelta(minutes=5)
        connection.execute(update(Job).where(Job.id == job_id).values(run_after=later))
    assert store.claim_job(engine, "worker-a", lease_s=30) is None


def test_claim_filters_by_kind(engine, tenant_id):
    enqueue(engine, tenant_id, kind="train_run")
    (analyze_id,) = enqueue(engine, tenant_id, kind="analyze_dataset")
    assert store.claim_job(engine, "worker-a", lease_s=30, kinds=["analyze_dataset"]).id == analyze_id
    assert store.claim_job(engine, "worker-a", lease_s=30, kinds=["analyze_dataset"]) is None
    assert store.claim_job(engine, "worker-a", lease_s=30, kinds=[]) is None


def test_claim_skips_locked_job(engine, tenant_id, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks and SKIP LOCKED exist only on PostgreSQL")
    first, second = enqueue(engine, tenant_id, 2)
    with engine.connect() as locker:
        locker.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": first})
        started = time.monotonic()
        claimed = store.claim_job(engine, "worker-a", lease_s=30)
        elapsed_s = time.monotonic() - started
        locker.rollback()
    assert claimed.id == second
    assert elapsed_s < 2.0
    assert load_job(engine, first).status == "queued"


def test_threads_never_claim_one_job_twice(engine, tenant_id):
    job_ids = enqueue(engine, tenant_id, 60)
    claims: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def claim_until_empty(worker_id: str) -> None:
        mine = claims.setdefault(worker_id, [])
        try:
            while (job := store.claim_job(engine, worker_id, lease_s=30)) is not None:
                mine.append(job.id)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=claim_until_empty, args=(f"worker-{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    claimed = [job_id for ids in claims.values() for job_id in ids]
    assert errors == []
    assert sorted(claimed) == sorted(job_ids)
    with Session(engine) as session:
        owners = dict(session.execute(select(Job.id, Job.worker_id)).all())
        attempts = set(session.scalars(select(Job.attempts)))
    for worker_id, ids in claims.items():
        assert all(owners[job_id] == worker_id for job_id in ids)
    assert attempts == {1}


def test_heartbeat_extends_lease_for_owner(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    store.claim_job(engine, "worker-a", lease_s=5)
    status = store.heartbeat(engine, job_id, "worker-a", lease_s=120, progress={"epoch": 3})
    job = load_job(engine, job_id)
    assert status == store.HeartbeatStatus(owned=True, cancel_requested=False)
    assert as_utc(job.lease_expires_at) > datetime.now(timezone.utc) + timedelta(seconds=100)
    assert job.progress == {"epoch": 3}


def test_heartbeat_from_other_worker_changes_nothing(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    claimed = store.claim_job(engine, "worker-a", lease_s=5)
    status = store.heartbeat(engine, job_id, "worker-b", lease_s=120, progress={"epoch": 9})
    job = load_job(engine, job_id)
    assert status.owned is False
    assert job.lease_expires_at == claimed.lease_expires_at
    assert job.progress == {}


def test_heartbeat_reports_cancel_request(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    store.claim_job(engine, "worker-a", lease_s=30)
    with Session(engine) as session, session.begin():
        assert store.request_cancel(session, job_id) == "running"
    status = store.heartbeat(engine, job_id, "worker-a", lease_s=30)
    assert status == store.HeartbeatStatus(owned=True, cancel_requested=True)


def test_finish_stores_result_and_clears_error(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    store.claim_job(engine, "worker-a", lease_s=30)
    fail(engine, job_id, "worker-a", retryable=True)
    with engine.begin() as connection:
        connection.execute(update(Job).where(Job.id == job_id).values(run_after=datetime.now(timezone.utc)))
    store.claim_job(engine, "worker-a", lease_s=30)
    with Session(engine) as session, session.begin():
        assert store.lock_owned_job(session, job_id, "worker-a")
        assert store.finish_job(session, job_id, "worker-a", {"answer": 42})
    job = load_job(engine, job_id)
    assert job.status == "succeeded"
    assert job.result == {"answer": 42}
    assert job.error is None
    assert job.attempts == 2
    assert job.finished_at is not None


def test_finish_by_other_worker_is_refused(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    store.claim_job(engine, "worker-a", lease_s=30)
    with Session(engine) as session, session.begin():
        assert not store.lock_owned_job(session, job_id, "worker-b")
        assert not store.finish_job(session, job_id, "worker-b", {"answer": 42})
    assert load_job(engine, job_id).status == "running"


def test_retryable_failure_requeues_after_backoff(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id, max_attempts=3)
    store.claim_job(engine, "worker-a", lease_s=30)
    before = datetime.now(timezone.utc)
    assert fail(engine, job_id, "worker-a", retryable=True) == "queued"
    after = datetime.now(timezone.utc)
    job = load_job(engine, job_id)
    assert job.error == "boom"
    assert job.worker_id is None
    assert job.attempts == 1
    assert before + timedelta(seconds=RETRY_BASE_S) <= as_utc(job.run_after) <= after + timedelta(seconds=RETRY_BASE_S)
    assert store.claim_job(engine, "worker-a", lease_s=30) is None


def test_second_retry_waits_twice_as_long(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id, max_attempts=3)
    store.claim_job(engine, "worker-a", lease_s=30)
    fail(engine, job_id, "worker-a", retryable=True)
    with engine.begin() as connection:
        connection.execute(update(Job).where(Job.id == job_id).values(run_after=datetime.now(timezone.utc)))
    store.claim_job(engine, "worker-a", lease_s=30)
    before = datetime.now(timezone.utc)
    assert fail(engine, job_id, "worker-a", retryable=True) == "queued"
    after = datetime.now(timezone.utc)
    run_after = as_utc(load_job(engine, job_id).run_after)
    assert before + timedelta(seconds=2 * RETRY_BASE_S) <= run_after <= after + timedelta(seconds=2 * RETRY_BASE_S)


def test_retryable_failure_on_last_attempt_is_final(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id, max_attempts=1)
    store.claim_job(engine, "worker-a", lease_s=30)
    assert fail(engine, job_id, "worker-a", retryable=True) == "failed"
    job = load_job(engine, job_id)
    assert job.status == "failed"
    assert job.finished_at is not None


def test_fatal_failure_is_final_at_once(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id, max_attempts=5)
    store.claim_job(engine, "worker-a", lease_s=30)
    assert fail(engine, job_id, "worker-a", retryable=False) == "failed"
    assert load_job(engine, job_id).attempts == 1


def test_failure_by_other_worker_changes_nothing(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    store.claim_job(engine, "worker-a", lease_s=30)
    assert fail(engine, job_id, "worker-b", retryable=False) is None
    job = load_job(engine, job_id)
    assert job.status == "running"
    assert job.error is None


def test_expired_lease_requeues_then_fails(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id, max_attempts=2)
    store.claim_job(engine, "worker-a", lease_s=30)
    assert store.requeue_expired_leases(engine, retry_base_s=0.0, retry_max_s=0.0) == []

    (first,) = expire_leases(engine)
    job = load_job(engine, job_id)
    assert first.status == "queued"
    assert job.status == "queued"
    assert job.error == "lease expired on worker worker-a (attempt 1)"
    assert job.worker_id is None

    store.claim_job(engine, "worker-b", lease_s=30)
    (second,) = expire_leases(engine)
    job = load_job(engine, job_id)
    assert second.status == "failed"
    assert job.status == "failed"
    assert job.error == "lease expired on worker worker-b (attempt 2)"
    assert job.finished_at is not None


def test_expired_lease_waits_for_backoff(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id, max_attempts=3)
    store.claim_job(engine, "worker-a", lease_s=30)
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    store.requeue_expired_leases(engine, later, retry_base_s=7.0, retry_max_s=600.0)
    assert as_utc(load_job(engine, job_id).run_after) == later + timedelta(seconds=7.0)


def test_stale_worker_cannot_touch_reclaimed_job(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    store.claim_job(engine, "worker-a", lease_s=30)
    expire_leases(engine)
    store.claim_job(engine, "worker-b", lease_s=30)
    assert store.heartbeat(engine, job_id, "worker-a", lease_s=30).owned is False
    assert fail(engine, job_id, "worker-a", retryable=False) is None
    assert store.release_job(engine, job_id, "worker-a") is None
    assert not store.mark_cancelled(engine, job_id, "worker-a")
    with Session(engine) as session, session.begin():
        assert not store.finish_job(session, job_id, "worker-a", {})
    job = load_job(engine, job_id)
    assert job.status == "running"
    assert job.worker_id == "worker-b"


def test_result_rows_roll_back_when_lease_lost(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    store.claim_job(engine, "worker-a", lease_s=30)
    expire_leases(engine)
    with Session(engine) as session, session.begin():
        session.add(Run(tenant_id=tenant_id, dataset_name="d", source="verified", n_layers=1, d_model=8,
                        n_heads=1, max_len=5, d_prime=1.0, protocol="full", metrics={}, job_id=job_id))
        if not store.finish_job(session, job_id, "worker-a", {}):
            session.rollback()
    with Session(engine) as session:
        assert session.scalar(select(Run.id)) is None


def test_release_does_not_count_attempt(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    store.claim_job(engine, "worker-a", lease_s=30)
    assert store.release_job(engine, job_id, "worker-a") == "queued"
    job = load_job(engine, job_id)
    assert job.attempts == 0
    assert job.worker_id is None
    assert job.lease_expires_at is None
    assert store.claim_job(engine, "worker-b", lease_s=30).attempts == 1


def test_cancel_of_queued_job_is_immediate(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    with Session(engine) as session, session.begin():
        assert store.request_cancel(session, job_id) == "cancelled"
    job = load_job(engine, job_id)
    assert job.status == "cancelled"
    assert job.finished_at is not None
    assert store.claim_job(engine, "worker-a", lease_s=30) is None


def test_cancel_of_running_job_waits_for_handler(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    store.claim_job(engine, "worker-a", lease_s=30)
    with Session(engine) as session, session.begin():
        assert store.request_cancel(session, job_id) == "running"
    assert load_job(engine, job_id).cancel_requested is True
    assert store.mark_cancelled(engine, job_id, "worker-a")
    job = load_job(engine, job_id)
    assert job.status == "cancelled"
    assert job.finished_at is not None


def test_cancel_of_finished_job_changes_nothing(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    store.claim_job(engine, "worker-a", lease_s=30)
    fail(engine, job_id, "worker-a", retryable=False)
    with Session(engine) as session, session.begin():
        assert store.request_cancel(session, job_id) == "failed"
    assert load_job(engine, job_id).cancel_requested is False


def test_cancel_of_missing_job_returns_none(engine, tenant_id):
    with Session(engine) as session, session.begin():
        assert store.request_cancel(session, 999_999) is None


def test_cancel_requested_job_is_not_retried(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id, max_attempts=3)
    store.claim_job(engine, "worker-a", lease_s=30)
    with Session(engine) as session, session.begin():
        store.request_cancel(session, job_id)
    assert fail(engine, job_id, "worker-a", retryable=True) == "cancelled"


def test_cancel_requested_job_is_not_released(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    store.claim_job(engine, "worker-a", lease_s=30)
    with Session(engine) as session, session.begin():
        store.request_cancel(session, job_id)
    assert store.release_job(engine, job_id, "worker-a") == "cancelled"
    assert load_job(engine, job_id).finished_at is not None


def test_cancel_requested_job_with_expired_lease_is_cancelled(engine, tenant_id):
    (job_id,) = enqueue(engine, tenant_id)
    store.claim_job(engine, "worker-a", lease_s=30)
    with Session(engine) as session, session.begin():
        store.request_cancel(session, job_id)
    (expired,) = expire_leases(engine)
    assert expired.status == "cancelled"
    assert load_job(engine, job_id).status == "cancelled"


def test_counts_by_status_and_queue_depth(engine, tenant_id):
    first, second, _third = enqueue(engine, tenant_id, 3)
    store.claim_job(engine, "worker-a", lease_s=30)
    with Session(engine) as session, session.begin():
        store.request_cancel(session, second)
    with Session(engine) as session:
        assert store.count_jobs_by_status(session) == {
            "queued": 1, "running": 1, "succeeded": 0, "failed": 0, "cancelled": 1,
        }
        assert store.queue_depth(session) == 1


# The runner in this process, driving the store with jobs of kinds registered here.

TEST_KINDS = ("store_test_flaky", "store_test_bad_input", "store_test_bug", "store_test_long",
              "store_test_stop", "store_test_lose_lease")


@register_handler("store_test_flaky")
def fail_first_attempt(context):
    if context.job.attempts == 1:
        raise RetryableJobError("the first attempt always fails")
    return lambda session: {"attempt": context.job.attempts}


@register_handler("store_test_bad_input")
def reject_input(context):
    raise ValueError("n_layers must be positive, got 0")


@register_handler("store_test_bug")
def crash(context):
    raise KeyError("missing")


@register_handler("store_test_long")
def outlive_lease(context):
    """Run for longer than the lease, then check that no worker could take the job back."""
    time.sleep(context.settings.lease_s * 2.5)
    taken_back = store.requeue_expired_leases(context.engine)
    return lambda session: {"taken_back": len(taken_back)}


handler_started = threading.Event()


@register_handler("store_test_stop")
def wait_for_stop(context):
    """Signal that the handler runs, then wait up to 10 s for a reason to stop between steps."""
    handler_started.set()
    deadline = time.monotonic() + 10
    while not context.stop_requested and time.monotonic() < deadline:
        time.sleep(0.02)
    context.raise_if_stopped()
    return lambda session: {"stopped": False}


def run_once_in_thread(worker: Worker) -> threading.Thread:
    handler_started.clear()
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    assert handler_started.wait(10)
    return thread


@register_handler("store_test_lose_lease")
def lose_lease_then_write(context):
    """Let another worker take the job over, then try to write a run for it."""
    with context.engine.begin() as connection:
        earlier = datetime.now(timezone.utc) - timedelta(seconds=1)
        connection.execute(update(Job).where(Job.id == context.job.id).values(lease_expires_at=earlier))
    store.requeue_expired_leases(context.engine, retry_base_s=0.0, retry_max_s=0.0)
    store.claim_job(context.engine, "worker-other", lease_s=30)

    def write_run(session):
        session.add(Run(tenant_id=context.job.tenant_id, dataset_name="d", source="verified", n_layers=1,
                        d_model=8, n_heads=1, max_len=5, d_prime=1.0, protocol="full", metrics={},
                        job_id=context.job.id))
        return {}

    return write_run


@pytest.fixture
def make_worker(engine, tmp_path):
    settings = Settings(data_dir=tmp_path, lease_s=1.0, heartbeat_s=0.2, retry_base_s=0.0, retry_max_s=0.0,
                        max_train_layers=48)

    def make(worker_id: str = "worker-a", kinds: tuple[str, ...] = TEST_KINDS) -> Worker:
        return Worker(engine=engine, storage=Storage(tmp_path / "storage"), settings=settings,
                      worker_id=worker_id, kinds=list(kinds))

    return make


def enqueue_kind(engine, tenant_id: int, kind: str, payload: dict | None = None, max_attempts: int = 3) -> int:
    with Session(engine) as session, session.begin():
        return store.enqueue_job(session, tenant_id=tenant_id, kind=kind, payload=payload or {},
                                 max_attempts=max_attempts).id


def test_worker_retries_transient_error(engine, tenant_id, make_worker):
    job_id = enqueue_kind(engine, tenant_id, "store_test_flaky")
    worker = make_worker()
    assert worker.run_once()
    assert load_job(engine, job_id).status == "queued"
    assert worker.run_once()
    job = load_job(engine, job_id)
    assert job.status == "succeeded"
    assert job.result == {"attempt": 2}
    assert job.error is None


def test_worker_fails_bad_input_at_once(engine, tenant_id, make_worker):
    job_id = enqueue_kind(engine, tenant_id, "store_test_bad_input", max_attempts=5)
    make_worker().run_once()
    job = load_job(engine, job_id)
    assert job.status == "failed"
    assert job.attempts == 1
    assert job.error == "ValueError: n_layers must be positive, got 0"


def test_worker_does_not_retry_unknown_error(engine, tenant_id, make_worker):
    job_id = enqueue_kind(engine, tenant_id, "store_test_bug", max_attempts=5)
    make_worker().run_once()
    job = load_job(engine, job_id)
    assert job.status == "failed"
    assert job.error == "KeyError: 'missing'"


def test_worker_fails_job_of_unknown_kind(engine, tenant_id, make_worker):
    job_id = enqueue_kind(engine, tenant_id, "store_test_unregistered")
    make_worker(kinds=("store_test_unregistered",)).run_once()
    job = load_job(engine, job_id)
    assert job.status == "failed"
    assert job.error.startswith("FatalJobError: unknown job kind 'store_test_unregistered'")


def test_lease_thread_keeps_long_job(engine, tenant_id, make_worker):
    job_id = enqueue_kind(engine, tenant_id, "store_test_long")
    make_worker().run_once()
    job = load_job(engine, job_id)
    assert job.status == "succeeded"
    assert job.result == {"taken_back": 0}
    assert job.attempts == 1


def test_worker_stop_releases_job(engine, tenant_id, make_worker):
    job_id = enqueue_kind(engine, tenant_id, "store_test_stop")
    worker = make_worker()
    thread = run_once_in_thread(worker)
    worker.request_stop()
    thread.join(10)
    job = load_job(engine, job_id)
    assert job.status == "queued"
    assert job.attempts == 0
    assert worker.run_once() is False


def test_lease_thread_notices_cancel(engine, tenant_id, make_worker):
    job_id = enqueue_kind(engine, tenant_id, "store_test_stop")
    thread = run_once_in_thread(make_worker())
    with Session(engine) as session, session.begin():
        store.request_cancel(session, job_id)
    thread.join(10)
    job = load_job(engine, job_id)
    assert job.status == "cancelled"
    assert job.finished_at is not None


def test_worker_drops_result_after_lease_lost(engine, tenant_id, make_worker):
    job_id = enqueue_kind(engine, tenant_id, "store_test_lose_lease")
    make_worker().run_once()
    job = load_job(engine, job_id)
    assert job.status == "running"
    assert job.worker_id == "worker-other"
    with Session(engine) as session:
        assert session.scalar(select(Run.id)) is None


@register_handler("store_test_echo")
def echo_payload(context):
    return lambda session: dict(context.job.payload)


def test_in_process_workers_run_jobs_then_stop(service_env, monkeypatch):
    from app.db import get_engine
    from app.runtime import reset_cached_state
    from worker.runner import start_in_process_workers

    for name, value in {"PERFLAW_LEASE_S": "2", "PERFLAW_HEARTBEAT_S": "0.5", "PERFLAW_POLL_INTERVAL_S": "0.05"}.items():
        monkeypatch.setenv(name, value)
    reset_cached_state()
    engine = get_engine()
    with Session(engine) as session, session.begin():
        tenant = Tenant(name="in-process")
        session.add(tenant)
        session.flush()
        job_ids = [
            store.enqueue_job(session, tenant_id=tenant.id, kind="store_test_echo", payload={"n": n}).id
            for n in range(20)
        ]

    stop = start_in_process_workers(2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with Session(engine) as session:
            if store.count_jobs_by_status(session)["succeeded"] == len(job_ids):
                break
        time.sleep(0.05)
    started = time.monotonic()
    stop()
    stop_s = time.monotonic() - started

    with Session(engine) as session:
        results = {job.id: job.result for job in session.scalars(select(Job))}
    assert results == {job_id: {"n": n} for n, job_id in enumerate(job_ids)}
    assert stop_s < 2
    assert [thread.name for thread in threading.enumerate() if thread.name.startswith("perflaw-worker")] == []


# The real job kinds' handling of their input, on a small stored dataset.

PINCUS_KEY = "m=2;r=0.0;max_len=50;variant=pincus"


@pytest.fixture
def dataset_id(engine, tenant_id, tmp_path) -> int:
    arrays = from_sequences([[1, 2, 3, 1, 2, 3], [2, 3, 4, 2, 3, 4, 5], [1, 5, 1, 5], [4, 4, 4]])
    with Session(engine) as session, session.begin():
        dataset = Dataset(tenant_id=tenant_id, name="tiny", content_sha256="0" * 64, read_options_key="test",
                          size_bytes=1, storage_key="datasets/tiny.npz", detected={}, n_users=arrays.n_users,
                          n_items=arrays.n_items, n_interactions=arrays.n_interactions)
        session.add(dataset)
        session.flush()
        with Storage(tmp_path / "storage").atomic_write(dataset.storage_key) as path:
            arrays.save(path)
        return dataset.id


def run_kind(engine, make_worker, tenant_id: int, kind: str, payload: dict) -> Job:
    job_id = enqueue_kind(engine, tenant_id, kind, payload)
    make_worker(kinds=(kind,)).run_once()
    return load_job(engine, job_id)


def test_analyze_dataset_stores_one_profile(engine, tenant_id, dataset_id, make_worker):
    params = {"m": 2, "r": 0, "max_len": 50, "variant": "pincus"}
    first = run_kind(engine, make_worker, tenant_id, "analyze_dataset", {"dataset_id": dataset_id, "params": params})
    second = run_kind(engine, make_worker, tenant_id, "analyze_dataset", {"dataset_id": dataset_id, "params": {}})
    with Session(engine) as session:
        profiles = session.scalars(select(DatasetProfile)).all()
    assert first.status == "succeeded"
    assert second.status == "succeeded"
    assert [profile.params_key for profile in profiles] == [PINCUS_KEY]
    assert first.result["profile_id"] == profiles[0].id
    assert second.result["profile_id"] == profiles[0].id
    assert first.result["params_key"] == PINCUS_KEY
    assert profiles[0].profile == second.result["profile"]


def test_analyze_dataset_of_other_tenant_fails(engine, dataset_id, make_worker):
    with Session(engine) as session, session.begin():
        other = Tenant(name="other")
        session.add(other)
        session.flush()
        other_id = other.id
    job = run_kind(engine, make_worker, other_id, "analyze_dataset", {"dataset_id": dataset_id})
    assert job.status == "failed"
    assert job.attempts == 1
    assert job.error == f"FatalJobError: dataset {dataset_id} not found"


def test_analyze_dataset_rejects_invalid_params(engine, tenant_id, dataset_id, make_worker):
    payload = {"dataset_id": dataset_id, "params": {"variant": "fancy"}}
    job = run_kind(engine, make_worker, tenant_id, "analyze_dataset", payload)
    assert job.status == "failed"
    assert job.error.startswith("FatalJobError: invalid profile parameters")


def test_analyze_dataset_rejects_unknown_param(engine, tenant_id, dataset_id, make_worker):
    payload = {"dataset_id": dataset_id, "params": {"window": 3}}
    job = run_kind(engine, make_worker, tenant_id, "analyze_dataset", payload)
    assert job.status == "failed"
    assert "unknown profile parameters ['window']" in job.error


def test_train_run_without_dataset_fails(engine, tenant_id, make_worker):
    job = run_kind(engine, make_worker, tenant_id, "train_run", {"model": {}, "train": {}})
    assert job.status == "failed"
    assert job.error == "FatalJobError: job payload is missing 'dataset_id'"


def test_train_run_rejects_invalid_model(engine, tenant_id, dataset_id, make_worker):
    model = {"arch": "sasrec", "n_layers": 1, "d_model": 10, "n_heads": 3, "max_len": 5, "dropout": 0.1}
    payload = {"dataset_id": dataset_id, "model": model, "train": {"epochs": 1}}
    job = run_kind(engine, make_worker, tenant_id, "train_run", payload)
    assert job.status == "failed"
    assert job.error.startswith("FatalJobError: invalid model config")


def test_train_run_rejects_unknown_train_field(engine, tenant_id, dataset_id, make_worker):
    model = {"arch": "sasrec", "n_layers": 1, "d_model": 8, "n_heads": 1, "max_len": 5, "dropout": 0.1}
    payload = {"dataset_id": dataset_id, "model": model, "train": {"epochs": 1, "warmup": 3}}
    job = run_kind(engine, make_worker, tenant_id, "train_run", payload)
    assert job.status == "failed"
    assert job.error.startswith("FatalJobError: invalid train config")


def test_train_run_rejects_too_many_layers(engine, tenant_id, dataset_id, make_worker):
    model = {"arch": "sasrec", "n_layers": 1000, "d_model": 8, "n_heads": 1, "max_len": 5, "dropout": 0.1}
    payload = {"dataset_id": dataset_id, "model": model, "train": {"epochs": 1}}
    job = run_kind(engine, make_worker, tenant_id, "train_run", payload)
    assert job.status == "failed"
    assert job.error == "FatalJobError: n_layers = 1000 exceeds this service's limit of 48"
