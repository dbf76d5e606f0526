"""Request ids, JSON logs, Prometheus metrics and the health probes, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text, update

from app.db import get_engine, session_scope
from app.logging_setup import configure_logging
from app.models import Job
from app.runtime import reset_cached_state
from app.settings import get_settings
from app.storage import get_storage
from worker.runner import Worker
from worker.store import claim_job

CYCLE_LOG = b"".join(f"u{user} {1 + (user + step) % 12}\n".encode() for user in range(40) for step in range(8))
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


def metric_samples(client) -> dict[str, list]:
    """Return the samples of GET /metrics by sample name."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def sample_value(samples: dict[str, list], name: str, **labels: str) -> float | None:
    for sample in samples.get(name, []):
        if all(sample.labels.get(key) == value for key, value in labels.items()):
            return sample.value
    return None


def upload_cycle_log(client) -> int:
    response = client.post("/v1/datasets", params={"format": "sasrec"}, files={"file": ("cycle.txt", CYCLE_LOG)})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_request_id_is_returned_as_sent(client):
    response = client.get("/v1/datasets", headers={"X-Request-ID": "trace-42.a_b"})

    assert response.headers["x-request-id"] == "trace-42.a_b"


def test_request_id_is_created_when_absent(client):
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]

    assert GENERATED_ID.match(first)
    assert GENERATED_ID.match(second)
    assert first != second


@pytest.mark.parametrize("sent", ["has space", "x" * 129, "semi;colon", "ünïcode"], ids=["space", "too-long", "semicolon", "non-ascii"])
def test_unsafe_request_id_is_replaced(client, sent):
    response = client.get("/healthz", headers={"X-Request-ID": sent.encode("utf-8")})

    assert GENERATED_ID.match(response.headers["x-request-id"])


def test_problem_details_carry_request_id(client):
    response = client.get("/v1/datasets/424242", headers={"X-Request-ID": "lookup-1"})

    assert response.status_code == 404
    assert response.json()["request_id"] == "lookup-1"
    assert response.headers["x-request-id"] == "lookup-1"


def test_body_limit_answer_carries_request_id(service_env, monkeypatch):
    from app.main import create_app

    monkeypatch.setenv("PERFLAW_MAX_JSON_BODY_KB", "1")
    reset_cached_state()
    with TestClient(create_app()) as small_client:
        response = small_client.post("/v1/runs", json={"runs": ["x" * 2000]}, headers={"X-Request-ID": "big-1"})

    assert response.status_code == 413
    assert response.headers["x-request-id"] == "big-1"
    assert response.json()["request_id"] == "big-1"


@pytest.fixture
def json_log_lines():
    """Configure JSON logging for the test; return a function that parses the lines written."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("INFO", "json")
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)

    def read_lines() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    yield read_lines
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_access_log_line_is_json_with_request_id(client, json_log_lines):
    client.get("/v1/datasets/777", headers={"X-Request-ID": "log-check-1"})

    access = [line for line in json_log_lines() if line.get("logger") == "app.access"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == "log-check-1"
    assert line["method"] == "GET"
    assert line["path"] == "/v1/datasets/777"
    assert line["status"] == 404
    assert line["duration_ms"] >= 0
    assert line["level"] == "INFO"
    assert "time" in line


def test_upload_log_line_names_dataset(client, json_log_lines):
    dataset_id = upload_cycle_log(client)

    stored = [line for line in json_log_lines() if line.get("message") == "stored dataset"]
    assert len(stored) == 1
    assert stored[0]["dataset_id"] == dataset_id
    assert stored[0]["interactions"] == 320


def test_metrics_has_request_latency_by_route(client):
    client.get("/v1/datasets")
    client.get("/v1/datasets/31337")

    samples = metric_samples(client)

    name = "perflaw_http_request_duration_seconds_count"
    assert sample_value(samples, name, method="GET", route="/v1/datasets", status="200") >= 1
    assert sample_value(samples, name, method="GET", route="/v1/datasets/{dataset_id}", status="404") >= 1
    bucket = "perflaw_http_request_duration_seconds_bucket"
    assert sample_value(samples, bucket, method="GET", route="/v1/datasets", status="200", le="+Inf") >= 1


def test_metrics_has_queue_gauges(client):
    dataset_id = upload_cycle_log(client)
    train = {"configs": [{"n_layers": 1, "d_model": 16}] * 3, "train": {"epochs": 1}}
    assert client.post(f"/v1/datasets/{dataset_id}/verification-runs", json=train).status_code == 202

    samples = metric_samples(client)

    assert sample_value(samples, "perflaw_jobs", kind="train_run", status="queued") == 3
    assert sample_value(samples, "perflaw_queue_depth") == 3


def test_metrics_has_job_duration(client, monkeypatch):
    dataset_id = upload_cycle_log(client)
    monkeypatch.setenv("PERFLAW_PROFILE_INLINE_MAX_INTERACTIONS", "10")
    get_settings.cache_clear()
    assert client.get(f"/v1/datasets/{dataset_id}/profile").status_code == 202
    worker = Worker(engine=get_engine(), storage=get_storage(), settings=get_settings(), device="cpu")
    assert worker.run_once() is True

    samples = metric_samples(client)

    labels = {"kind": "analyze_dataset", "status": "succeeded"}
    assert sample_value(samples, "perflaw_job_duration_seconds_count", **labels) == 1
    assert 0 <= sample_value(samples, "perflaw_job_duration_seconds_sum", **labels) < 60
    assert sample_value(samples, "perflaw_job_duration_seconds_bucket", le="+Inf", **labels) == 1
    assert sample_value(samples, "perflaw_jobs", **labels) == 1
    assert sample_value(samples, "perflaw_queue_depth") == 0


def test_metrics_has_worker_heartbeat_age(client):
    dataset_id = upload_cycle_log(client)
    train = {"configs": [{"n_layers": 1, "d_model": 16}], "train": {"epochs": 1}}
    assert client.post(f"/v1/datasets/{dataset_id}/verification-runs", json=train).status_code == 202
    job = claim_job(get_engine(), "observed-worker", lease_s=600)
    assert job is not None
    with session_scope() as session:
        beat = datetime.now(timezone.utc) - timedelta(seconds=30)
        session.execute(update(Job).where(Job.id == job.id).values(heartbeat_at=beat))

    samples = metric_samples(client)

    age_s = sample_value(samples, "perflaw_worker_heartbeat_age_seconds", worker_id="observed-worker")
    assert age_s is not None
    assert 29 <= age_s < 120
    assert sample_value(samples, "perflaw_jobs", kind="train_run", status="running") == 1


def test_healthz_is_ok(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readyz_is_ready_at_head(client):
    response = client.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "schema": "ok"}}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path):
    """A reachable database with no tables and no migration applied."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    base_url = request.getfixturevalue("postgres_schema_url").split("?")[0]
    schema = f"perflaw_empty_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{base_url}?options=-csearch_path%3D{schema}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def app_on(database_url: str, tmp_path, monkeypatch) -> TestClient:
    from app.main import create_app

    monkeypatch.setenv("PERFLAW_DATABASE_URL", database_url)
    monkeypatch.setenv("PERFLAW_DATA_DIR", str(tmp_path / "data"))
    reset_cached_state()
    return TestClient(create_app())


def test_readyz_is_503_without_migrations(empty_database_url, tmp_path, monkeypatch):
    with app_on(empty_database_url, tmp_path, monkeypatch) as client:
        response = client.get("/readyz")
        metrics_response = client.get("/metrics")
    reset_cached_state()

    assert response.status_code == 503
    assert response.json()["status"] == "not ready"
    assert response.json()["checks"]["database"] == "ok"
    assert "perflaw db upgrade" in response.json()["checks"]["schema"]
    assert metrics_response.status_code == 200


def test_readyz_is_503_when_database_unreachable(tmp_path, monkeypatch):
    # Port 1 on the loopback address: nothing listens there, so the connection is refused.
    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2"
    with app_on(unreachable, tmp_path, monkeypatch) as client:
        response = client.get("/readyz")
        liveness = client.get("/healthz")
    reset_cached_state()

    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unreachable")
    assert "schema" not in response.json()["checks"]
    assert liveness.status_code == 200
