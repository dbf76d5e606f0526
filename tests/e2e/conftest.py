"""Worker processes on a real PostgreSQL schema, and two job kinds that exist only in tests.

The worker processes import this module (`python -m worker --import tests.e2e.conftest`),
which registers the kinds:
- `record_execution`: writes one row to e2e_executions when its handler starts and one row to
  e2e_results when the job succeeds, so a test can count how often each job ran;
- `slow_steps`: runs `steps` steps of `step_s` seconds, writes a JSON checkpoint to storage
  after each and reports progress, stops between steps when asked, and resumes from its
  checkpoint on a later attempt, like a training job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.migrate import upgrade_database
from app.models import Tenant
from app.storage import checkpoint_key
from worker.handlers import register_handler

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# Short timings so a killed worker's job comes back within seconds.
WORKER_TIMINGS = {
    "PERFLAW_LEASE_S": "2",
    "PERFLAW_HEARTBEAT_S": "0.4",
    "PERFLAW_POLL_INTERVAL_S": "0.1",
    "PERFLAW_RETRY_BASE_S": "0.2",
    "PERFLAW_RETRY_MAX_S": "1",
}
TEST_TABLES = """
CREATE TABLE e2e_executions (
    id SERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL,
    worker_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    first_step INTEGER NOT NULL
);
CREATE TABLE e2e_results (job_id BIGINT PRIMARY KEY, worker_id TEXT NOT NULL);
"""


def record_execution_row(context, first_step: int) -> None:
    with context.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO e2e_executions (job_id, worker_id, attempt, first_step) "
                "VALUES (:job_id, :worker_id, :attempt, :first_step)"
            ),
            {"job_id": context.job.id, "worker_id": context.worker_id, "attempt": context.job.attempts,
             "first_step": first_step},
        )


def result_row_writer(context, result: dict) -> Callable[[Session], dict]:
    def write_result(session: Session) -> dict:
        session.execute(
            text("INSERT INTO e2e_results (job_id, worker_id) VALUES (:job_id, :worker_id)"),
            {"job_id": context.job.id, "worker_id": context.worker_id},
        )
        return result

    return write_result


@register_handler("record_execution")
def record_execution(context):
    record_execution_row(context, first_step=0)
    return result_row_writer(context, {"worker_id": context.worker_id})


@register_handler("slow_steps")
def slow_steps(context):
    storage = context.storage
    key = checkpoint_key(context.job.id)
    first_step = json.loads(storage.path(key).read_text())["step"] if storage.exists(key) else 0
    record_execution_row(context, first_step)
    context.on_final(lambda: storage.delete(key))

    for step in range(first_step + 1, context.job.payload["steps"] + 1):
        time.sleep(context.job.payload["step_s"])
        with storage.atomic_write(key) as path:
            path.write_text(json.dumps({"step": step}))
        context.report_progress({"step": step})
        if context.stop_requested:
            context.raise_if_stopped()
    return result_row_writer(context, {"resumed_from": first_step, "worker_id": context.worker_id})


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL schema of this test process's own, with the e2e tables."""
    base_url = os.environ.get("PERFLAW_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    admin = sqlalchemy.create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sqlalchemy.exc.OperationalError as error:
        reason = f"PostgreSQL at {base_url} is unreachable: {error.orig}"
        if os.environ.get("PERFLAW_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    schema = f"perflaw_e2e_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{base_url}?options=-csearch_path%3D{schema}"
    upgrade_database(url)
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        for statement in TEST_TABLES.split(";"):
            if statement.strip():
                connection.execute(text(statement))
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def engine(postgres_url) -> Iterator[sqlalchemy.Engine]:
    """An engine on the e2e schema, emptied before the test."""
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE tenants, e2e_executions, e2e_results RESTART IDENTITY CASCADE"))
    yield engine
    engine.dispose()


@pytest.fixture
def tenant_id(engine) -> int:
    with Session(engine) as session, session.begin():
        tenant = Tenant(name="e2e")
        session.add(tenant)
        session.flush()
        return tenant.id


@pytest.fixture
def worker_env(postgres_url, tmp_path) -> dict[str, str]:
    """The environment of a worker process: the e2e schema, a fresh data folder, short timings."""
    return {
        **os.environ,
        "PERFLAW_DATABASE_URL": postgres_url,
        "PERFLAW_DATA_DIR": str(tmp_path / "data"),
        "PERFLAW_LOG_LEVEL": "INFO",
        **WORKER_TIMINGS,
    }


class WorkerProcesses:
    """Starts `python -m worker` processes and stops every one still running at teardown."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []

    def start(self, *extra_arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log_path = self.log_dir / f"worker-{len(self.processes)}.log"
        command = [sys.executable, "-m", "worker", "--import", "tests.e2e.conftest", *extra_arguments]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, cwd=REPOSITORY_ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT
            )
        process.log_path = log_path
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen, timeout_s: float = 30) -> int:
        """Send SIGTERM and return the exit status."""
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=timeout_s)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log_path.read_text()}" for p in self.processes)

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def workers(worker_env, tmp_path) -> Iterator[WorkerProcesses]:
    processes = WorkerProcesses(worker_env, tmp_path)
    yield processes
    processes.kill_all()


def wait_until(condition: Callable[[], object], timeout_s: float, description: str, logs: Callable[[], str]):
    """Poll condition every 0.1 s until it returns a true value, and return that value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s} s waiting for {description}\n{logs()}")


@pytest.fixture
def wait_for(workers):
    """wait_for(condition, timeout_s, description): wait_until with the worker logs in the failure message."""

    def wait(condition: Callable[[], object], timeout_s: float, description: str):
        return wait_until(condition, timeout_s, description, workers.logs)

    return wait
