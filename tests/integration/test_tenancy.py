"""Tenant isolation and API-key authentication, on real SQLite and PostgreSQL databases.

Tenant A owns a dataset (with a stored profile), imported runs, a fitted law, a stored
prediction and a queued training job. Tenant B, with a key of its own, must see none of
it: every route that names one of A's resources returns 404, never 403, so B cannot even
learn that the id exists, and nothing of A's changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app import auth
from app.db import session_scope
from app.models import Dataset, DatasetProfile, Job, Law, Prediction, Run

CYCLE_LOG = b"".join(f"u{user} {1 + (user + step) % 12}\n".encode() for user in range(40) for step in range(8))
TRAIN_REQUEST = {
    "configs": [{"n_layers": 1, "d_model": 16, "n_heads": 1, "max_len": 10}],
    "train": {"epochs": 2, "batch_size": 32},
}


def imported_runs(dataset_id: int) -> list[dict]:
    """Eight runs on one dataset whose ndcg@10 grows with size: enough to fit a law."""
    return [
        {
            "dataset_id": dataset_id, "n_layers": layers, "d_model": width, "n_heads": 1, "max_len": 10,
            "d_prime": 5_000.0, "protocol": "full",
            "metrics": {"ndcg@10": 0.05 + 0.01 * index + 0.002 * layers, "hr@10": 0.1 + 0.02 * index},
        }
        for index, (layers, width) in enumerate((l, w) for l in (1, 2, 4, 8) for w in (16, 64))
    ]


@dataclass
class OwnerData:
    """The ids of everything tenant A owns."""

    dataset_id: int
    run_id: int
    law_id: int
    job_id: int


@pytest.fixture
def keys(service_env) -> dict[str, str]:
    """One API key for tenant-a and one for tenant-b."""
    with session_scope() as session:
        return {name: auth.create_api_key(session, name) for name in ("tenant-a", "tenant-b")}


@pytest.fixture
def service(service_env, keys):
    """The app with keys configured; anonymous access disabled as on a non-loopback address."""
    from app.main import create_app

    return create_app(allow_anonymous=False)


@pytest.fixture
def client_a(service, keys):
    with TestClient(service, headers={"Authorization": f"Bearer {keys['tenant-a']}"}) as client:
        yield client


@pytest.fixture
def client_b(service, keys):
    with TestClient(service, headers={"Authorization": f"Bearer {keys['tenant-b']}"}) as client:
        yield client


@pytest.fixture
def anonymous(service):
    with TestClient(service) as client:
        yield client


@pytest.fixture
def owner_data(client_a) -> OwnerData:
    uploaded = client_a.post("/v1/datasets", params={"format": "sasrec"}, files={"file": ("cycle.txt", CYCLE_LOG)})
    assert uploaded.status_code == 201, uploaded.text
    dataset_id = uploaded.json()["id"]
    assert client_a.get(f"/v1/datasets/{dataset_id}/profile").status_code == 200

    runs = client_a.post("/v1/runs", json={"runs": imported_runs(dataset_id)})
    assert runs.status_code == 201, runs.text
    law = client_a.post("/v1/laws", json={"metric": "ndcg@10", "dataset_id": dataset_id, "n_bootstrap": 0})
    assert law.status_code == 201, law.text
    prediction = client_a.post("/v1/predictions", json={
        "dataset_id": dataset_id, "law": law.json()["id"], "layers": [2], "d_models": [32], "max_len": 10,
    })
    assert prediction.status_code == 200, prediction.text
    jobs = client_a.post(f"/v1/datasets/{dataset_id}/verification-runs", json=TRAIN_REQUEST)
    assert jobs.status_code == 202, jobs.text

    return OwnerData(
        dataset_id=dataset_id, run_id=runs.json()["items"][0]["id"], law_id=law.json()["id"],
        job_id=jobs.json()["items"][0]["id"],
    )


def requests_on_owner_data(data: OwnerData) -> list[tuple[str, str, dict]]:
    """Every request that names one of tenant A's resources: (method, path, httpx keyword arguments)."""
    dataset, run, law, job = data.dataset_id, data.run_id, data.law_id, data.job_id
    run_on_dataset = {**imported_runs(dataset)[0]}
    return [
        ("GET", f"/v1/datasets/{dataset}", {}),
        ("GET", f"/v1/datasets/{dataset}/profile", {}),
        ("GET", f"/v1/datasets/{dataset}/profile", {"params": {"m": 1, "max_len": 0}}),
        ("DELETE", f"/v1/datasets/{dataset}", {}),
        ("POST", f"/v1/datasets/{dataset}/verification-runs", {"json": TRAIN_REQUEST}),
        ("GET", f"/v1/runs/{run}", {}),
        ("POST", "/v1/runs", {"json": {"runs": [run_on_dataset]}}),
        ("POST", "/v1/laws", {"json": {"metric": "ndcg@10", "run_ids": [run], "n_bootstrap": 0}}),
        ("GET", f"/v1/laws/{law}", {}),
        ("GET", f"/v1/laws/{law}/plot", {}),
        ("POST", "/v1/predictions", {"json": {"law": law, "d_prime": 5_000, "layers": [2], "d_models": [32]}}),
        ("POST", "/v1/predictions", {"json": {"dataset_id": dataset, "law": "reference", "layers": [2], "d_models": [32]}}),
        ("POST", "/v1/plans", {"json": {"law": law, "d_prime": 5_000, "n_items": 100, "budget": "1M"}}),
        ("POST", "/v1/plans", {"json": {"dataset_id": dataset, "law": "reference", "budget": "1M"}}),
        ("POST", "/v1/checks", {"json": {"law": law, "d_prime": 5_000, "n_items": 100, "config": {"n_layers": 2, "d_model": 32}}}),
        ("POST", "/v1/checks", {"json": {"dataset_id": dataset, "law": "reference", "config": {"n_layers": 2, "d_model": 32}}}),
        ("GET", f"/v1/jobs/{job}", {}),
        ("POST", f"/v1/jobs/{job}/cancel", {}),
    ]


def row_counts() -> dict[str, int]:
    with session_scope() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (Dataset, DatasetProfile, Run, Law, Prediction, Job)
        }


def test_other_tenant_gets_404_on_every_route(owner_data, client_b):
    answers = {
        f"{method} {path} {arguments}": client_b.request(method, path, **arguments)
        for method, path, arguments in requests_on_owner_data(owner_data)
    }

    not_404 = {request: response.status_code for request, response in answers.items() if response.status_code != 404}
    assert not_404 == {}
    not_problem = [request for request, response in answers.items()
                   if not response.headers["content-type"].startswith("application/problem+json")]
    assert not_problem == []


def test_other_tenant_answer_equals_missing_id(owner_data, client_b):
    missing = 10**12
    for kind, owned_id in (("datasets", owner_data.dataset_id), ("runs", owner_data.run_id),
                           ("laws", owner_data.law_id), ("jobs", owner_data.job_id)):
        owned = client_b.get(f"/v1/{kind}/{owned_id}").json()
        absent = client_b.get(f"/v1/{kind}/{missing}").json()

        assert owned["status"] == absent["status"] == 404
        assert owned["detail"] == absent["detail"].replace(str(missing), str(owned_id))


def test_law_fit_on_foreign_dataset_is_404(owner_data, client_b):
    # Fitting on another tenant's dataset id must get the same response as fitting on an id
    # that does not exist, so the response reveals nothing about the other tenant.
    foreign = client_b.post("/v1/laws", json={"metric": "ndcg@10", "dataset_id": owner_data.dataset_id})
    absent = client_b.post("/v1/laws", json={"metric": "ndcg@10", "dataset_id": 10**12})

    assert foreign.status_code == 404
    assert absent.status_code == 404
    assert foreign.json()["detail"] == absent.json()["detail"].replace(str(10**12), str(owner_data.dataset_id))


def test_other_tenant_lists_are_empty(owner_data, client_b):
    for path in ("/v1/datasets", "/v1/runs", "/v1/laws", "/v1/jobs"):
        response = client_b.get(path)

        assert response.status_code == 200, f"{path}: {response.text}"
        assert response.json()["items"] == [], path
    assert client_b.get("/v1/runs", params={"dataset_id": owner_data.dataset_id}).json()["items"] == []


def test_owner_data_intact_after_other_tenant_tries(owner_data, client_a, client_b, storage_files):
    before = {path: client_a.get(path).json() for path in (
        f"/v1/datasets/{owner_data.dataset_id}", f"/v1/runs/{owner_data.run_id}",
        f"/v1/laws/{owner_data.law_id}", f"/v1/jobs/{owner_data.job_id}",
    )}
    counts_before = row_counts()
    files_before = storage_files()

    for method, path, arguments in requests_on_owner_data(owner_data):
        client_b.request(method, path, **arguments)

    after = {path: client_a.get(path).json() for path in before}
    assert after == before
    assert after[f"/v1/jobs/{owner_data.job_id}"]["status"] == "queued"
    assert after[f"/v1/jobs/{owner_data.job_id}"]["cancel_requested"] is False
    assert row_counts() == counts_before
    assert storage_files() == files_before
    assert client_a.get(f"/v1/datasets/{owner_data.dataset_id}/profile").json()["cached"] is True


def test_same_file_from_other_tenant_is_new_dataset(owner_data, client_b):
    response = client_b.post("/v1/datasets", params={"format": "sasrec"}, files={"file": ("cycle.txt", CYCLE_LOG)})

    assert response.status_code == 201, response.text
    assert response.json()["id"] != owner_data.dataset_id
    assert [item["id"] for item in client_b.get("/v1/datasets").json()["items"]] == [response.json()["id"]]


def test_each_tenant_lists_only_its_own(owner_data, client_a, client_b):
    own_b = client_b.post("/v1/datasets", files={"file": ("b.csv", b"user,item\nx,1\nx,2\ny,1\n")}).json()["id"]

    listed_a = [item["id"] for item in client_a.get("/v1/datasets").json()["items"]]
    listed_b = [item["id"] for item in client_b.get("/v1/datasets").json()["items"]]

    assert listed_a == [owner_data.dataset_id]
    assert listed_b == [own_b]


@pytest.mark.parametrize(
    ("authorization", "expected_detail"),
    [
        (None, "API key is required"),
        ("Bearer pl_not-a-real-key", "invalid or revoked"),
        ("Bearer ", "API key is required"),
        ("Basic dXNlcjpwYXNz", "API key is required"),
        ("pl_key-without-scheme", "API key is required"),
    ],
    ids=["missing", "invalid", "empty-bearer", "basic-scheme", "no-scheme"],
)
def test_bad_credentials_are_401_problem(anonymous, keys, authorization, expected_detail):
    headers = {"Authorization": authorization} if authorization is not None else {}

    response = anonymous.get("/v1/datasets", headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["status"] == 401
    assert expected_detail in response.json()["detail"]


def test_revoked_key_is_401(client_a, keys):
    assert client_a.get("/v1/datasets").status_code == 200
    with session_scope() as session:
        assert auth.revoke_api_key(session, keys["tenant-a"]) == 1

    response = client_a.get("/v1/datasets")

    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_keys_make_anonymous_401_even_on_loopback(service_env, keys):
    from app.main import create_app

    with TestClient(create_app(allow_anonymous=True)) as loopback_client:
        response = loopback_client.get("/v1/datasets")

    assert response.status_code == 401
    assert "API key is required" in response.json()["detail"]


def test_no_keys_beyond_loopback_is_401(service_env):
    from app.main import create_app

    with TestClient(create_app(allow_anonymous=False)) as exposed_client:
        response = exposed_client.get("/v1/datasets")

    assert response.status_code == 401
    assert "perflaw keys create" in response.json()["detail"]


def test_probes_and_docs_need_no_key(anonymous, keys):
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"):
        assert anonymous.get(path).status_code == 200, path
