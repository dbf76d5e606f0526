"""The datasets API against real SQLite and PostgreSQL databases and real storage."""

from __future__ import annotations

import gzip

from sqlalchemy import func, select

from app.db import session_scope
from app.models import Dataset, DatasetProfile

SMALL_LOG = b"user,item,timestamp\nu1,a,3\nu1,b,1\nu2,a,5\nu2,c,6\nu2,a,7\nu1,c,2\n"


def upload(client, content: bytes, filename: str = "log.csv", **params):
    return client.post("/v1/datasets", params=params, files={"file": (filename, content, "application/octet-stream")})


def count_rows(model) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_upload_multipart_returns_counts(client):
    response = upload(client, SMALL_LOG)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["n_users"] == 2
    assert body["n_items"] == 3
    assert body["n_interactions"] == 6
    assert body["name"] == "log.csv"


def test_upload_raw_body_with_options(client):
    response = client.post(
        "/v1/datasets",
        params={"name": "raw", "format": "delimited", "separator": ";", "header": "false"},
        content=b"1;10\n1;11\n2;10\n",
        headers={"content-type": "application/octet-stream"},
    )

    assert response.status_code == 201, response.text
    assert response.json()["n_interactions"] == 3
    assert response.json()["name"] == "raw"


def test_timestamp_column_none_keeps_file_order(client):
    log = b"1\t10\t9\n1\t11\t3\n2\t10\t5\n"

    guessed = upload(client, log, "guessed.tsv")
    file_order = upload(client, log, "file-order.tsv", timestamp_column="none")

    assert guessed.status_code == 201, guessed.text
    assert guessed.json()["detected"]["timestamp_column"] == 2
    assert "'none' to keep file order" in guessed.json()["warnings"][0]
    assert file_order.status_code == 201, file_order.text
    assert file_order.json()["detected"]["timestamp_column"] is None
    assert file_order.json()["warnings"] == []


def test_same_file_twice_is_one_dataset(client):
    first = upload(client, SMALL_LOG)
    second = upload(client, SMALL_LOG, filename="again.csv")

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert count_rows(Dataset) == 1


def test_gzip_upload_is_read(client):
    response = upload(client, gzip.compress(SMALL_LOG), filename="log.csv.gz")

    assert response.status_code == 201, response.text
    assert response.json()["n_interactions"] == 6


def test_bad_row_names_line_and_leaves_nothing(client, storage_files):
    response = upload(client, b"user,item\nu1,a\n,b\nu2,c\n")

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["line"] == 3
    assert "empty" in problem["detail"]
    assert count_rows(Dataset) == 0
    assert storage_files() == []


def test_drop_invalid_reports_dropped_rows(client):
    response = upload(client, b"user,item\nu1,a\n,b\nu2,c\n", drop_invalid="true")

    assert response.status_code == 201, response.text
    assert response.json()["rows_dropped"] == 1
    assert response.json()["n_interactions"] == 2


def test_empty_upload_is_rejected(client, storage_files):
    response = upload(client, b"")

    assert response.status_code == 422
    assert "empty" in response.json()["detail"]
    assert storage_files() == []


def test_unknown_query_parameter_is_rejected(client):
    response = upload(client, SMALL_LOG, colour="blue")

    assert response.status_code == 422
    assert "colour" in response.json()["detail"]


def test_list_paginates_newest_first(client):
    ids = [upload(client, SMALL_LOG + f"u9,z,{index}\n".encode()).json()["id"] for index in range(5)]

    first_page = client.get("/v1/datasets", params={"limit": 2}).json()
    second_page = client.get("/v1/datasets", params={"limit": 2, "cursor": first_page["next_cursor"]}).json()
    last_page = client.get("/v1/datasets", params={"limit": 2, "cursor": second_page["next_cursor"]}).json()

    listed = [item["id"] for page in (first_page, second_page, last_page) for item in page["items"]]
    assert listed == sorted(ids, reverse=True)
    assert last_page["next_cursor"] is None


def test_invalid_cursor_is_a_client_error(client):
    response = client.get("/v1/datasets", params={"cursor": "not-a-cursor"})

    assert response.status_code == 400
    assert "cursor" in response.json()["detail"]


def test_delete_removes_row_profiles_and_file(client, storage_files):
    dataset_id = upload(client, SMALL_LOG).json()["id"]
    client.get(f"/v1/datasets/{dataset_id}/profile")

    response = client.delete(f"/v1/datasets/{dataset_id}")

    assert response.status_code == 204
    assert client.get(f"/v1/datasets/{dataset_id}").status_code == 404
    assert count_rows(DatasetProfile) == 0
    assert storage_files() == []


def test_missing_dataset_is_problem_404(client):
    response = client.get("/v1/datasets/999999")

    assert response.status_code == 404
    assert response.json()["status"] == 404
    assert "999999" in response.json()["detail"]


def test_profile_is_computed_once_per_parameters(client):
    dataset_id = upload(client, SMALL_LOG).json()["id"]

    first = client.get(f"/v1/datasets/{dataset_id}/profile", params={"m": 1, "max_len": 0})
    again = client.get(f"/v1/datasets/{dataset_id}/profile", params={"m": 1, "max_len": 0})
    other = client.get(f"/v1/datasets/{dataset_id}/profile", params={"m": 2, "variant": "pooled"})

    assert first.status_code == 200, first.text
    assert first.json()["cached"] is False
    assert again.json()["cached"] is True
    assert again.json()["profile"] == first.json()["profile"]
    assert other.json()["cached"] is False
    assert first.json()["params"]["m"] == 1
    assert other.json()["params"]["variant"] == "pooled"
    assert count_rows(DatasetProfile) == 2


def test_profile_rejects_unknown_variant(client):
    dataset_id = upload(client, SMALL_LOG).json()["id"]

    response = client.get(f"/v1/datasets/{dataset_id}/profile", params={"variant": "shannon"})

    assert response.status_code == 422
    assert "variant" in response.json()["detail"]


def test_upload_over_size_limit_is_413(service_env, monkeypatch, storage_files):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.runtime import reset_cached_state

    monkeypatch.setenv("PERFLAW_MAX_UPLOAD_MB", "0.001")
    reset_cached_state()
    with TestClient(create_app()) as small_client:
        response = upload(small_client, b"user,item\n" + b"u1,a\n" * 1000)

    assert response.status_code == 413
    assert response.json()["limit"] == "max_upload_mb"
    assert count_rows(Dataset) == 0
    assert storage_files() == []
