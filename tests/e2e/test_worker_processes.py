"""Worker processes (`python -m worker`) sharing one PostgreSQL queue, killed and stopped for real."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.models import Dataset, DatasetProfile, Job, Prediction, Run
from app.storage import Storage, checkpoint_key, dataset_key
from core.dataset import from_sequences
from worker import store

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(180)]


def enqueue(engine, tenant_id: int, kind: str, payload: dict, count: int = 1) -> list[int]:
    with Session(engine) as session, session.begin():
        jobs = [store.enqueue_job(session, tenant_id=tenant_id, kind=kind, payload=payload) for _ in range(count)]
        return [job.id for job in jobs]


def load_job(engine, job_id: int) -> Job:
    with Session(engine) as session:
        return session.get(Job, job_id)


def count_succeeded(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).where(Job.status == "succeeded"))


def executions_of(engine, job_id: int) -> list[tuple]:
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT worker_id, attempt, first_step FROM e2e_executions WHERE job_id = :id ORDER BY id"),
            {"id": job_id},
        ).all()


def result_rows_of(engine, job_id: int) -> list[tuple]:
    with engine.connect() as connection:
        return connection.execute(text("SELECT worker_id FROM e2e_results WHERE job_id = :id"), {"id": job_id}).all()


def storage_of(worker_env: dict[str, str]) -> Storage:
    return Storage(Path(worker_env["PERFLAW_DATA_DIR"]) / "storage")


def checkpointed_step(storage: Storage, job_id: int) -> int:
    return json.loads(storage.path(checkpoint_key(job_id)).read_text())["step"]


def progress_at_least(engine, job_id: int, key: str, value: int):
    def reached() -> bool:
        return load_job(engine, job_id).progress.get(key, 0) >= value

    return reached


def status_is(engine, job_id: int, status: str):
    """Return a condition that the job has status; it fails the test at once on another final status."""

    def reached() -> bool:
        job = load_job(engine, job_id)
        if job.status in store.FINAL_STATUSES and job.status != status:
            pytest.fail(f"job {job_id} ended {job.status}, not {status}: {job.error}")
        return job.status == status

    return reached


def test_four_workers_run_each_job_once(engine, tenant_id, workers, wait_for):
    processes = [workers.start("--device", "cpu") for _ in range(4)]
    wait_for(lambda: workers.logs().count("worker started") == 4, 60, "four workers to start")

    job_ids = enqueue(engine, tenant_id, "record_execution", {}, count=200)
    wait_for(lambda: count_succeeded(engine) == 200, 90, "200 jobs to succeed")
    exit_codes = [workers.stop(process) for process in processes]

    with engine.connect() as connection:
        executions = dict(
            connection.execute(text("SELECT job_id, count(*) FROM e2e_executions GROUP BY job_id")).all()
        )
        results = connection.execute(text("SELECT count(*), count(DISTINCT job_id) FROM e2e_results")).one()
        runners = connection.scalar(text("SELECT count(DISTINCT worker_id) FROM e2e_executions"))
    with Session(engine) as session:
        attempts = set(session.scalars(select(Job.attempts)))
    assert exit_codes == [0, 0, 0, 0]
    assert sorted(executions) == sorted(job_ids)
    assert set(executions.values()) == {1}
    assert tuple(results) == (200, 200)
    assert attempts == {1}
    assert runners >= 2


def test_killed_worker_job_resumes_from_checkpoint(engine, tenant_id, workers, worker_env, wait_for):
    (job_id,) = enqueue(engine, tenant_id, "slow_steps", {"steps": 12, "step_s": 0.25})
    first = workers.start()
    wait_for(progress_at_least(engine, job_id, "step", 3), 60, "the first worker to pass step 3")
    first.kill()
    first.wait()
    killed_at_step = checkpointed_step(storage_of(worker_env), job_id)

    second = workers.start()
    wait_for(status_is(engine, job_id, "succeeded"), 60, "the second worker to finish the job")
    assert workers.stop(second) == 0

    job = load_job(engine, job_id)
    (first_run, second_run) = executions_of(engine, job_id)
    assert killed_at_step >= 3
    assert first_run.attempt == 1
    assert first_run.first_step == 0
    assert second_run.attempt == 2
    assert second_run.first_step == killed_at_step
    assert second_run.worker_id != first_run.worker_id
    assert result_rows_of(engine, job_id) == [(second_run.worker_id,)]
    assert job.attempts == 2
    assert job.result["resumed_from"] == killed_at_step
    assert not storage_of(worker_env).exists(checkpoint_key(job_id))


def test_sigterm_releases_job_at_step_boundary(engine, tenant_id, workers, worker_env, wait_for):
    (job_id,) = enqueue(engine, tenant_id, "slow_steps", {"steps": 14, "step_s": 0.2})
    first = workers.start()
    wait_for(progress_at_least(engine, job_id, "step", 2), 60, "the first worker to pass step 2")
    assert workers.stop(first, timeout_s=10) == 0

    released = load_job(engine, job_id)
    released_at_step = checkpointed_step(storage_of(worker_env), job_id)
    assert released.status == "queued"
    assert released.attempts == 0
    assert released.worker_id is None
    assert released.progress["step"] == released_at_step

    second = workers.start()
    wait_for(status_is(engine, job_id, "succeeded"), 60, "the second worker to finish the job")
    assert workers.stop(second) == 0
    (_, second_run) = executions_of(engine, job_id)
    assert second_run.first_step == released_at_step
    assert load_job(engine, job_id).attempts == 1


def test_cancel_stops_slow_job_at_next_step(engine, tenant_id, workers, worker_env, wait_for):
    (job_id,) = enqueue(engine, tenant_id, "slow_steps", {"steps": 100, "step_s": 0.2})
    worker = workers.start()
    wait_for(progress_at_least(engine, job_id, "step", 2), 60, "the worker to pass step 2")
    with Session(engine) as session, session.begin():
        assert store.request_cancel(session, job_id) == "running"
        step_at_cancel = session.get(Job, job_id).progress["step"]

    wait_for(status_is(engine, job_id, "cancelled"), 10, "the job to be cancelled")
    assert workers.stop(worker) == 0
    assert load_job(engine, job_id).progress["step"] <= step_at_cancel + 1
    assert result_rows_of(engine, job_id) == []
    assert not storage_of(worker_env).exists(checkpoint_key(job_id))


# Training on real data: the first users of the Amazon Toys and Games sequences.

TOY_USERS = 200
TINY_MODEL = {"arch": "sasrec", "n_layers": 1, "d_model": 16, "n_heads": 1, "max_len": 20, "dropout": 0.1}


def store_toys_dataset(engine, tenant_id: int, storage: Storage, data_dir: Path) -> int:
    """Parse the first TOY_USERS lines ("user item item ...") and store them as a dataset."""
    lines = (data_dir / "amazon-toys" / "Toys_and_Games.txt").read_text().splitlines()[:TOY_USERS]
    item_ids: dict[str, int] = {}
    sequences = [[item_ids.setdefault(item, len(item_ids) + 1) for item in line.split()[1:]] for line in lines]
    arrays = from_sequences(sequences)
    with Session(engine) as session, session.begin():
        dataset = Dataset(
            tenant_id=tenant_id, name="toys-200", content_sha256=hashlib.sha256("\n".join(lines).encode()).hexdigest(),
            read_options_key="e2e", size_bytes=sum(len(line) + 1 for line in lines), storage_key="pending",
            detected={}, n_users=arrays.n_users, n_items=arrays.n_items, n_interactions=arrays.n_interactions,
        )
        session.add(dataset)
        session.flush()
        dataset.storage_key = dataset_key(dataset.id)
        with storage.atomic_write(dataset.storage_key) as path:
            arrays.save(path)
        return dataset.id


def train_payload(dataset_id: int, epochs: int) -> dict:
    train = {"epochs": epochs, "batch_size": 64, "lr": 0.001, "loss": "bce", "protocol": "sampled-100",
             "seed": 0, "patience": None, "num_threads": 1}
    return {"dataset_id": dataset_id, "model": TINY_MODEL, "train": train}


def test_train_run_records_one_verified_run(engine, tenant_id, workers, worker_env, wait_for, data_dir):
    dataset_id = store_toys_dataset(engine, tenant_id, storage_of(worker_env), data_dir)
    with Session(engine) as session, session.begin():
        session.add(Prediction(tenant_id=tenant_id, dataset_id=dataset_id, law_ref="reference", metric="ndcg@10",
                               protocol="sampled-100", n_layers=1, d_model=16, d_prime=1.0, predicted=0.2,
                               low=0.1, high=0.3))
    (job_id,) = enqueue(engine, tenant_id, "train_run", train_payload(dataset_id, epochs=3))
    worker = workers.start("--device", "cpu")
    wait_for(status_is(engine, job_id, "succeeded"), 150, "the training job to succeed")
    assert workers.stop(worker) == 0

    job = load_job(engine, job_id)
    with Session(engine) as session:
        (run,) = session.scalars(select(Run)).all()
        profile = session.scalar(
            select(DatasetProfile).where(DatasetProfile.params_key == "m=2;r=0.0;max_len=20;variant=reference")
        )
    comparison = job.result["prediction"]["ndcg@10"]
    assert run.job_id == job_id
    assert run.source == "verified"
    assert run.dataset_id == dataset_id
    assert (run.n_layers, run.d_model, run.max_len, run.protocol) == (1, 16, 20, "sampled-100")
    assert run.tokens == profile.profile["tokens"]
    assert run.apen == profile.profile["apen"]["mean"]
    assert run.d_prime == pytest.approx(run.tokens * run.apen)
    assert 0 <= run.metrics["ndcg@10"] <= 1
    assert job.result["run_id"] == run.id
    assert job.result["epochs_run"] == 3
    assert comparison["measured"] == run.metrics["ndcg@10"]
    assert comparison["error"] == pytest.approx(run.metrics["ndcg@10"] - 0.2)
    assert comparison["within_interval"] == (0.1 <= run.metrics["ndcg@10"] <= 0.3)
    assert run.details["prediction"] == job.result["prediction"]
    assert job.progress["epoch"] == 3
    assert not storage_of(worker_env).exists(checkpoint_key(job_id))


def test_killed_training_resumes_from_checkpoint(engine, tenant_id, workers, worker_env, wait_for, data_dir):
    dataset_id = store_toys_dataset(engine, tenant_id, storage_of(worker_env), data_dir)
    payload = train_payload(dataset_id, epochs=10)
    payload["model"] = {**TINY_MODEL, "d_model": 64, "max_len": 50}
    (job_id,) = enqueue(engine, tenant_id, "train_run", payload)
    first = workers.start("--device", "cpu")
    wait_for(progress_at_least(engine, job_id, "epoch", 3), 150, "training to pass epoch 3")
    first.kill()
    first.wait()
    checkpoint = torch.load(storage_of(worker_env).path(checkpoint_key(job_id)), weights_only=True)
    killed_at_epoch = checkpoint["progress"]["epoch"]

    second = workers.start("--device", "cpu")
    wait_for(status_is(engine, job_id, "succeeded"), 150, "the second worker to finish training")
    assert workers.stop(second) == 0
    job = load_job(engine, job_id)
    with Session(engine) as session:
        runs = session.scalars(select(Run)).all()
    assert 3 <= killed_at_epoch < 10
    assert job.attempts == 2
    assert job.result["resumed_from_epoch"] == killed_at_epoch
    assert job.result["epochs_run"] == 10
    assert [run.job_id for run in runs] == [job_id]


def test_cancel_stops_training_within_one_epoch(engine, tenant_id, workers, worker_env, wait_for, data_dir):
    dataset_id = store_toys_dataset(engine, tenant_id, storage_of(worker_env), data_dir)
    (job_id,) = enqueue(engine, tenant_id, "train_run", train_payload(dataset_id, epochs=2000))
    worker = workers.start("--device", "cpu")
    wait_for(progress_at_least(engine, job_id, "epoch", 2), 150, "training to pass epoch 2")
    with Session(engine) as session, session.begin():
        assert store.request_cancel(session, job_id) == "running"
        epoch_at_cancel = session.get(Job, job_id).progress["epoch"]

    wait_for(status_is(engine, job_id, "cancelled"), 30, "the training job to be cancelled")
    assert workers.stop(worker) == 0
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 0
    assert load_job(engine, job_id).progress["epoch"] <= epoch_at_cancel + 1
    assert not storage_of(worker_env).exists(checkpoint_key(job_id))
