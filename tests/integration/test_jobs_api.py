"""Jobs through the API: verification runs and large-dataset profiles, run by a real worker."""

from __future__ import annotations

import pytest

from app.db import get_engine
from app.settings import get_settings
from app.storage import get_storage
from worker.runner import Worker

# 60 users whose next item is predictable: each walks a fixed cycle of 12 items.
CYCLE_LOG = b"".join(
    f"u{user} {1 + (user + step) % 12}\n".encode() for user in range(60) for step in range(8)
)


def run_one_job() -> bool:
    worker = Worker(engine=get_engine(), storage=get_storage(), settings=get_settings(), device="cpu")
    return worker.run_once()


def upload_cycle_log(client) -> int:
    response = client.post("/v1/datasets", params={"format": "sasrec"}, files={"file": ("cycle.txt", CYCLE_LOG)})
    assert response.status_code == 201, response.text
    return response.json()["id"]


TINY_RUN = {
    "configs": [{"n_layers": 1, "d_model": 16, "n_heads": 1, "max_len": 10, "dropout": 0.0}],
    "train": {"epochs": 3, "batch_size": 32, "protocol": "full", "seed": 3},
}


def test_verification_run_stores_verified_run(client):
    dataset_id = upload_cycle_log(client)

    queued = client.post(f"/v1/datasets/{dataset_id}/verification-runs", json=TINY_RUN)
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["items"][0]["id"]
    assert queued.json()["items"][0]["status"] == "queued"

    assert run_one_job() is True

    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"]["epoch"] == 3
    runs = client.get("/v1/runs", params={"dataset_id": dataset_id, "source": "verified"}).json()["items"]
    assert len(runs) == 1
    assert runs[0]["id"] == job["result"]["run_id"]
    assert runs[0]["n_layers"] == 1
    assert 0 <= runs[0]["metrics"]["ndcg@10"] <= 1
    assert runs[0]["d_prime"] == pytest.approx(runs[0]["tokens"] * runs[0]["apen"])
    assert runs[0]["d_prime"] > 0


def test_verification_run_shows_prediction_against_measurement(client):
    dataset_id = upload_cycle_log(client)
    predicted = client.post(
        "/v1/predictions", json={"dataset_id": dataset_id, "layers": [1], "d_models": [16], "metric": "hr@10"}
    )
    assert predicted.status_code == 200, predicted.text
    row = predicted.json()["predictions"][0]

    job_id = client.post(f"/v1/datasets/{dataset_id}/verification-runs", json=TINY_RUN).json()["items"][0]["id"]
    assert run_one_job() is True
    job = client.get(f"/v1/jobs/{job_id}").json()
    run = client.get(f"/v1/runs/{job['result']['run_id']}").json()

    compared = job["result"]["prediction"]["hr@10"]
    assert compared["predicted"] == pytest.approx(row["predicted"])
    assert compared["measured"] == run["metrics"]["hr@10"]
    assert compared["error"] == pytest.approx(run["metrics"]["hr@10"] - row["predicted"])
    assert compared["within_interval"] == (row["low"] <= compared["measured"] <= row["high"])
    assert run["details"]["prediction"] == job["result"]["prediction"]


def test_training_limits_are_enforced(client):
    dataset_id = upload_cycle_log(client)
    too_deep = {**TINY_RUN, "configs": [{"n_layers": 10_000, "d_model": 16}]}

    response = client.post(f"/v1/datasets/{dataset_id}/verification-runs", json=too_deep)

    assert response.status_code == 422
    assert "n_layers" in response.json()["detail"]


def test_width_must_divide_into_heads(client):
    dataset_id = upload_cycle_log(client)
    uneven = {**TINY_RUN, "configs": [{"n_layers": 1, "d_model": 10, "n_heads": 3}]}

    response = client.post(f"/v1/datasets/{dataset_id}/verification-runs", json=uneven)

    assert response.status_code == 422
    assert "n_heads" in response.json()["detail"]


def test_cancel_queued_job(client):
    dataset_id = upload_cycle_log(client)
    job_id = client.post(f"/v1/datasets/{dataset_id}/verification-runs", json=TINY_RUN).json()["items"][0]["id"]

    cancelled = client.post(f"/v1/jobs/{job_id}/cancel")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert run_one_job() is False


def test_large_dataset_profile_runs_as_job(client, monkeypatch):
    dataset_id = upload_cycle_log(client)
    monkeypatch.setenv("PERFLAW_PROFILE_INLINE_MAX_INTERACTIONS", "10")
    get_settings.cache_clear()

    first = client.get(f"/v1/datasets/{dataset_id}/profile")
    again = client.get(f"/v1/datasets/{dataset_id}/profile")
    assert first.status_code == 202, first.text
    assert again.json()["id"] == first.json()["id"]

    assert run_one_job() is True
    done = client.get(f"/v1/datasets/{dataset_id}/profile")
    assert done.status_code == 200, done.text
    assert done.json()["profile"]["n_interactions"] == 480


def test_other_tenants_job_is_not_found(client):
    response = client.get("/v1/jobs/123456")

    assert response.status_code == 404
