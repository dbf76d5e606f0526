"""Bad input through the API and the command line, on real SQLite and PostgreSQL databases.

Every case must fail the way a user can act on: a 4xx problem-details response (never a
500) whose detail names what is wrong, or `perflaw` exit code 2 with the message on stderr.
Limits are lowered through the PERFLAW_MAX_* settings, and a 413 names the setting. After a
failed upload no dataset row and no file under storage remains, not even a scratch file.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import lzma
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from app.cli.main import app as cli_app
from app.db import session_scope
from app.models import Dataset, DatasetProfile, Job, Law, Prediction, Run
from app.runtime import reset_cached_state

LOG = b"user,item,timestamp\nu1,a,3\nu1,b,1\nu2,a,5\nu2,c,6\nu2,a,7\nu1,c,2\n"
CYCLE_LOG = b"".join(f"u{user} {1 + (user + step) % 12}\n".encode() for user in range(40) for step in range(8))
MIB = 1 << 20

# Low limits, so that every limit can be crossed with a small input.
BOUNDED_SETTINGS = {
    "PERFLAW_MAX_UPLOAD_MB": "1",
    "PERFLAW_MAX_DECOMPRESSED_MB": "4",
    "PERFLAW_MAX_COMPRESSION_RATIO": "5000",
    "PERFLAW_MAX_LINE_BYTES": "4096",
    "PERFLAW_MAX_USERS": "100",
    "PERFLAW_MAX_ITEMS": "100",
    "PERFLAW_MAX_INTERACTIONS": "1000",
    "PERFLAW_MAX_JSON_BODY_KB": "64",
    "PERFLAW_MAX_TRAIN_EPOCHS": "50",
    "PERFLAW_MAX_TRAIN_LAYERS": "4",
    "PERFLAW_MAX_TRAIN_D_MODEL": "256",
}


# One row of zeros: a bomb made of short valid rows reaches the size limits, not the line limit.
ZERO_ROWS_MIB = b"0,0\n" * (MIB // 4)


@functools.cache
def gzip_of_zeros(n_bytes: int) -> bytes:
    """Return a gzip stream of n_bytes of "0,0" rows, compressed 1 MiB at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = ZERO_ROWS_MIB
    parts = [compressor.compress(chunk) for _ in range(n_bytes // MIB)]
    return b"".join(parts) + compressor.flush()


@functools.cache
def bz2_of_zeros(n_bytes: int) -> bytes:
    """Return a bz2 stream of n_bytes of "0,0" rows."""
    return bz2.compress(ZERO_ROWS_MIB * (n_bytes // MIB))


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def encrypted_zip() -> bytes:
    """Return a one-member zip whose flag bits mark the member as encrypted."""
    archive = bytearray(zip_of({"log.csv": LOG}, zipfile.ZIP_STORED))
    archive[6] |= 1  # the local file header's flag bits
    central = archive.find(b"PK\x01\x02")
    archive[central + 8] |= 1  # the central directory's flag bits
    return bytes(archive)


def corrupt_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 8]) + data[middle + 8:]


GZIP_LOG = gzip.compress(LOG)
BZ2_LOG = bz2.compress(LOG)
XZ_LOG = lzma.compress(LOG)
ZIP_LOG = zip_of({"log.csv": LOG})


@dataclass(frozen=True)
class UploadCase:
    """One bad upload and the response it must get."""

    content: bytes | Callable[[], bytes]
    detail: str  # a fragment of the problem's detail
    status: int = 422
    filename: str = "log.csv"
    params: dict = field(default_factory=dict)
    limit: str | None = None  # the setting a 413 must name

    def body(self) -> bytes:
        return self.content() if callable(self.content) else self.content


UPLOAD_CASES = {
    # Compressed input that is cut short or damaged.
    "gzip-truncated": UploadCase(GZIP_LOG[:-12], "corrupt or truncated gzip", filename="log.csv.gz"),
    "gzip-header-only": UploadCase(GZIP_LOG[:10], "corrupt or truncated gzip", filename="log.csv.gz"),
    "gzip-corrupt": UploadCase(corrupt_middle(GZIP_LOG), "gzip", filename="log.csv.gz"),
    "gzip-bad-crc": UploadCase(GZIP_LOG[:-8] + b"\0\0\0\0" + GZIP_LOG[-4:], "CRC check failed", filename="log.csv.gz"),
    "bz2-truncated": UploadCase(BZ2_LOG[:-10], "corrupt or truncated bz2", filename="log.csv.bz2"),
    "bz2-corrupt": UploadCase(b"BZh9" + bytes(60), "corrupt or truncated bz2", filename="log.csv.bz2"),
    "xz-truncated": UploadCase(XZ_LOG[:-10], "corrupt or truncated xz", filename="log.csv.xz"),
    "xz-corrupt": UploadCase(corrupt_middle(XZ_LOG), "xz", filename="log.csv.xz"),
    "zip-truncated": UploadCase(ZIP_LOG[:-30], "zip", filename="log.zip"),
    "zip-corrupt": UploadCase(b"PK\x03\x04" + bytes(60), "zip", filename="log.zip"),
    "zip-two-members": UploadCase(zip_of({"a.csv": LOG, "b.csv": LOG}), "exactly one file", filename="logs.zip"),
    "zip-empty": UploadCase(zip_of({}), "exactly one file", filename="logs.zip"),
    "zip-encrypted": UploadCase(encrypted_zip(), "encrypted", filename="log.zip"),
    "zstandard": UploadCase(b"\x28\xb5\x2f\xfd" + bytes(30), "Zstandard", filename="log.csv.zst"),
    "parquet-garbage": UploadCase(b"PAR1" + bytes(100), "Parquet", filename="log.parquet"),
    # Bytes that are not UTF-8 text.
    "binary": UploadCase(bytes(range(256)) * 8, "binary data", filename="log.bin"),
    "nul-byte-in-row": UploadCase(b"user,item\nu1,a\x00\nu2,b\n", "NUL byte"),
    "latin-1": UploadCase("user,item\nJosé,café\nJosé,thé\n".encode("latin-1"), "not valid UTF-8"),
    "utf-16-with-bom": UploadCase("user,item\nu1,a\nu2,b\n".encode("utf-16"), "UTF-16"),
    "utf-16-without-bom": UploadCase("user,item\nu1,a\nu2,b\n".encode("utf-16-le"), "NUL byte"),
    "lone-carriage-return": UploadCase(b"user,item\ru1,a\ru2,b\r", "carriage return"),
    # Text whose shape is wrong.
    "blank-lines-only": UploadCase(b"\n \n\t\n", "empty"),
    "header-only": UploadCase(b"user,item,timestamp\n", "header line but no data rows"),
    "header-only-gzip": UploadCase(gzip.compress(b"user,item\n"), "no data rows", filename="log.csv.gz"),
    "one-column": UploadCase(b"abc\ndef\nghi\n", "cannot detect the separator"),
    "ragged-short-row": UploadCase(b"user,item,timestamp\nu1,a,1\nu2,b\nu3,c,3\n", "line 3: expected 3 fields"),
    "ragged-long-row": UploadCase(b"user,item,timestamp\nu1,a,1\nu2,b,2,9\nu3,c,3\n", "line 3: expected 3 fields"),
    "unterminated-quote": UploadCase(b'user,item\n"u1,a\nu2,b\n', "line 2"),
    "empty-item": UploadCase(b"user,item\nu1,a\nu2,\n", "line 3"),
    "empty-user": UploadCase(b"user,item\nu1,a\n,b\n", "line 3"),
    "timestamp-text": UploadCase(b"user,item,timestamp\nu1,a,yesterday\nu2,b,3\n", "value 'yesterday'"),
    "timestamp-nan": UploadCase(b"user,item,timestamp\nu1,a,nan\nu2,b,3\n", "not a finite number"),
    "timestamp-overflow": UploadCase(b"user,item,timestamp\nu1,a,1e400\nu2,b,3\n", "not a finite number"),
    # Read options that do not fit the file.
    "unknown-format": UploadCase(LOG, "unknown format 'excel'", params={"format": "excel"}),
    "separator-newline": UploadCase(LOG, "invalid separator", params={"separator": "\n"}),
    "separator-two-chars": UploadCase(LOG, "invalid separator", params={"separator": "ab"}),
    "missing-user-column": UploadCase(LOG, "user column 'customer' not found", params={"user_column": "customer"}),
    "user-is-item-column": UploadCase(LOG, "same column", params={"user_column": "item"}),
    "column-out-of-range": UploadCase(b"1,2\n1,3\n", "out of range", params={"header": "false", "item_column": "7"}),
    "name-without-header": UploadCase(b"1,2\n1,3\n", "has no header", params={"header": "false", "user_column": "user"}),
    "sasrec-timestamp": UploadCase(b"1 2\n1 3\n", "no timestamp column", params={"format": "sasrec", "timestamp_column": "2"}),
    "unknown-parameter": UploadCase(LOG, "colour", params={"colour": "blue"}),
    "name-with-nul": UploadCase(LOG, "query.name", params={"name": "a\x00b"}),
    "name-too-long": UploadCase(LOG, "query.name", params={"name": "n" * 300}),
    # Limits, each named by its setting.
    "over-upload-size": UploadCase(b"user,item\n" + b"u1,a\n" * 250_000, "PERFLAW_MAX_UPLOAD_MB", 413, limit="max_upload_mb"),
    "gzip-bomb-200mb": UploadCase(lambda: gzip_of_zeros(200 * MIB), "max_decompressed", 413, "zeros.gz", limit="max_decompressed_mb"),
    "bz2-bomb": UploadCase(lambda: bz2_of_zeros(5 * MIB), "max_decompressed", 413, "zeros.bz2", limit="max_decompressed_mb"),
    "zip-bomb": UploadCase(lambda: zip_of({"zeros.csv": bytes(16 * MIB)}), "declares", 413, "zeros.zip", limit="max_decompressed_mb"),
    "huge-line": UploadCase(b"user,item\nu1," + b"a" * 10_000 + b"\n", "line 2 is", 413, limit="max_line_bytes"),
    "too-many-users": UploadCase(b"user,item\n" + b"".join(b"u%d,a\n" % i for i in range(150)), "users", 413, limit="max_users"),
    "too-many-items": UploadCase(b"user,item\n" + b"".join(b"u1,i%d\n" % i for i in range(150)), "items", 413, limit="max_items"),
    "too-many-interactions": UploadCase(b"user,item\n" + b"u1,a\n" * 1500, "interactions", 413, limit="max_interactions"),
    "gzip-too-many-interactions": UploadCase(
        gzip.compress(b"user,item\n" + b"u1,a\n" * 1500), "interactions", 413, "log.csv.gz", limit="max_interactions"
    ),
}


def count_rows(model) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def client_with(service_env, monkeypatch) -> Iterator[Callable[..., TestClient]]:
    """Return a function that builds a TestClient under BOUNDED_SETTINGS plus any overrides."""
    from app.main import create_app

    with ExitStack() as stack:

        def build(**overrides: str) -> TestClient:
            for name, value in {**BOUNDED_SETTINGS, **overrides}.items():
                monkeypatch.setenv(name, value)
            reset_cached_state()
            return stack.enter_context(TestClient(create_app()))

        yield build


@pytest.fixture
def bounded_client(client_with) -> TestClient:
    return client_with()


def assert_problem(response, status: int, detail: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert detail in problem["detail"], problem["detail"]
    return problem


@pytest.mark.parametrize("case", UPLOAD_CASES.values(), ids=UPLOAD_CASES.keys())
def test_bad_upload_is_4xx_and_leaves_nothing(bounded_client, storage_files, case):
    response = bounded_client.post(
        "/v1/datasets", params=case.params, files={"file": (case.filename, case.body(), "application/octet-stream")}
    )

    problem = assert_problem(response, case.status, case.detail)
    if case.limit:
        assert problem["limit"] == case.limit
    assert count_rows(Dataset) == 0
    assert storage_files() == []


def test_compression_ratio_limit_names_setting(client_with, storage_files):
    client = client_with(PERFLAW_MAX_DECOMPRESSED_MB="1000", PERFLAW_MAX_COMPRESSION_RATIO="20")

    response = client.post("/v1/datasets", files={"file": ("zeros.gz", gzip_of_zeros(64 * MIB))})

    problem = assert_problem(response, 413, "PERFLAW_MAX_COMPRESSION_RATIO")
    assert problem["limit"] == "max_compression_ratio"
    assert count_rows(Dataset) == 0
    assert storage_files() == []


def test_chunked_upload_over_limit_is_413(bounded_client, storage_files):
    # A generator body is sent without Content-Length, so only the streamed count can stop it.
    def chunks():
        yield b"user,item\n"
        for _ in range(300):
            yield b"u1,a\n" * 1000

    response = bounded_client.post("/v1/datasets", content=chunks(), headers={"content-type": "application/octet-stream"})

    problem = assert_problem(response, 413, "PERFLAW_MAX_UPLOAD_MB")
    assert problem["limit"] == "max_upload_mb"
    assert count_rows(Dataset) == 0
    assert storage_files() == []


@pytest.mark.parametrize(
    ("content_type", "body", "status", "detail"),
    [
        ("multipart/form-data", b"--x\r\n", 400, "boundary"),
        ("multipart/form-data; boundary=abc", b"garbage without parts", 400, "multipart"),
        ("application/json", b'{"user": "u1", "item": "a"}', 415, "multipart/form-data"),
        ("application/problem+json", b"{}", 415, "application/octet-stream"),
        ("application/octet-stream", b"", 422, "empty"),
    ],
    ids=["no-boundary", "garbage-parts", "json", "json-suffix", "empty-raw-body"],
)
def test_upload_wrong_body_type_is_4xx(bounded_client, storage_files, content_type, body, status, detail):
    response = bounded_client.post("/v1/datasets", content=body, headers={"content-type": content_type})

    assert_problem(response, status, detail)
    assert count_rows(Dataset) == 0
    assert storage_files() == []


def test_multipart_without_file_field_is_422(bounded_client, storage_files):
    response = bounded_client.post("/v1/datasets", files={"upload": ("log.csv", LOG)})

    assert_problem(response, 422, "field named 'file'")
    assert storage_files() == []


def test_multipart_with_two_files_is_400(bounded_client, storage_files):
    response = bounded_client.post("/v1/datasets", files=[("file", ("a.csv", LOG)), ("file", ("b.csv", LOG))])

    assert_problem(response, 400, "files")
    assert count_rows(Dataset) == 0
    assert storage_files() == []


@pytest.mark.parametrize(
    ("filename", "stored_name"),
    [
        ("../../etc/passwd", "passwd"),
        ("/absolute/path/log.csv", "log.csv"),
        ("..\\..\\windows\\log.csv", "log.csv"),
        ("..", None),
        ("./", None),
    ],
    ids=["parent-dirs", "absolute", "backslashes", "dot-dot", "dot-slash"],
)
def test_client_file_name_never_reaches_storage(bounded_client, service_env, filename, stored_name):
    response = bounded_client.post("/v1/datasets", files={"file": (filename, LOG)})

    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["name"] == (stored_name or f"upload-{dataset['content_sha256'][:12]}")
    data_dir = Path(service_env["PERFLAW_DATA_DIR"]).resolve()
    stored = [path for path in data_dir.rglob("*") if path.is_file() and path.suffix == ".npz"]
    assert len(stored) == 1
    assert stored[0].is_relative_to(data_dir / "storage" / "datasets")


def test_control_characters_leave_file_name(bounded_client):
    # httpx percent-encodes control characters in file names, so this body is written by hand.
    body = (
        b'--boundary\r\nContent-Disposition: form-data; name="file"; filename="tab\there\x7f.csv"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + LOG + b"\r\n--boundary--\r\n"
    )

    response = bounded_client.post(
        "/v1/datasets", content=body, headers={"content-type": "multipart/form-data; boundary=boundary"}
    )

    assert response.status_code == 201, response.text
    assert response.json()["name"] == "tabhere.csv"


def test_zip_member_name_with_parent_dirs_is_only_read(bounded_client, service_env):
    response = bounded_client.post("/v1/datasets", files={"file": ("log.zip", zip_of({"../../evil.csv": LOG}))})

    assert response.status_code == 201, response.text
    assert response.json()["n_interactions"] == 6
    assert not (Path(service_env["PERFLAW_DATA_DIR"]).parent / "evil.csv").exists()


def test_ids_with_separators_and_quotes_are_kept_whole(bounded_client):
    log = b'user,item\n"u,1","a ""quoted"" item"\n"u,1",b\n"u;2",b\n'

    response = bounded_client.post("/v1/datasets", params={"format": "delimited"}, files={"file": ("log.csv", log)})

    assert response.status_code == 201, response.text
    assert response.json()["n_users"] == 2
    assert response.json()["n_items"] == 2
    assert response.json()["n_interactions"] == 3


@pytest.fixture
def dataset_id(bounded_client) -> int:
    response = bounded_client.post("/v1/datasets", params={"format": "sasrec"}, files={"file": ("cycle.txt", CYCLE_LOG)})
    assert response.status_code == 201, response.text
    return response.json()["id"]


RUN = {"dataset": "x", "n_layers": 2, "d_model": 64, "protocol": "full", "d_prime": 1000.0, "metrics": {"hr@10": 0.2}}
TRAIN = {"configs": [{"n_layers": 1, "d_model": 16}], "train": {"epochs": 2}}

# (method, path with {dataset} for the dataset id, raw body or JSON document, status, detail fragment)
JSON_CASES = {
    "oversized-json": ("POST", "/v1/runs", {"runs": [{**RUN, "dataset": "d" * 250}] * 400}, 413, "PERFLAW_MAX_JSON_BODY_KB"),
    "nan-metric": ("POST", "/v1/runs", b'{"runs": [{"dataset": "x", "n_layers": 2, "d_model": 64, "protocol": "full", '
                   b'"d_prime": 1000, "metrics": {"hr@10": NaN}}]}', 422, "finite number"),
    "infinite-d-prime": ("POST", "/v1/runs", b'{"runs": [{"dataset": "x", "n_layers": 2, "d_model": 64, "protocol": "full", '
                         b'"d_prime": Infinity, "metrics": {"hr@10": 0.2}}]}', 422, "finite number"),
    "overflowing-number": ("POST", "/v1/predictions", b'{"d_prime": 1e400, "layers": [2], "d_models": [64]}', 422, "finite number"),
    "percent-metric": ("POST", "/v1/runs", {"runs": [{**RUN, "metrics": {"hr@10": 28.1}}]}, 422, "hr@10"),
    "unknown-metric": ("POST", "/v1/runs", {"runs": [{**RUN, "metrics": {"recall@10": 0.2}}]}, 422, "recall@10"),
    "negative-layers": ("POST", "/v1/predictions", {"d_prime": 1000, "layers": [-2], "d_models": [64]}, 422, "greater than or equal to 1"),
    "absurd-width": ("POST", "/v1/predictions", {"d_prime": 1000, "layers": [2], "d_models": [10**9]}, 422, "less than or equal to"),
    "zero-d-prime": ("POST", "/v1/predictions", {"d_prime": 0, "layers": [2], "d_models": [64]}, 422, "greater than 0"),
    "unknown-field": ("POST", "/v1/predictions", {"d_prime": 1000, "layers": [2], "d_models": [64], "colour": "red"}, 422, "colour"),
    "no-sizes": ("POST", "/v1/predictions", {"d_prime": 1000}, 422, "configs"),
    "huge-id-in-body": ("POST", "/v1/predictions", {"law": 2**70, "d_prime": 1000, "layers": [2], "d_models": [64]}, 422, "law"),
    "name-with-nul": ("POST", "/v1/runs", {"runs": [{**RUN, "dataset": "a\x00b"}]}, 422, "dataset"),
    "malformed-json": ("POST", "/v1/runs", b'{"runs": [', 422, "invalid JSON"),
    "json-array-body": ("POST", "/v1/laws", [1, 2, 3], 422, "body"),
    "empty-run-list": ("POST", "/v1/runs", {"runs": []}, 422, "runs"),
    "train-too-many-epochs": ("POST", "/v1/datasets/{dataset}/verification-runs",
                              {**TRAIN, "train": {"epochs": 51}}, 422, "PERFLAW_MAX_TRAIN_EPOCHS"),
    "train-too-deep": ("POST", "/v1/datasets/{dataset}/verification-runs",
                       {**TRAIN, "configs": [{"n_layers": 5, "d_model": 16}]}, 422, "PERFLAW_MAX_TRAIN_LAYERS"),
    "train-too-wide": ("POST", "/v1/datasets/{dataset}/verification-runs",
                       {**TRAIN, "configs": [{"n_layers": 1, "d_model": 512}]}, 422, "PERFLAW_MAX_TRAIN_D_MODEL"),
    "train-zero-epochs": ("POST", "/v1/datasets/{dataset}/verification-runs", {**TRAIN, "train": {"epochs": 0}}, 422, "epochs"),
    "train-uneven-heads": ("POST", "/v1/datasets/{dataset}/verification-runs",
                           {**TRAIN, "configs": [{"n_layers": 1, "d_model": 10, "n_heads": 3}]}, 422, "n_heads"),
    "train-no-configs": ("POST", "/v1/datasets/{dataset}/verification-runs", {"configs": []}, 422, "configs"),
    "profile-m-zero": ("GET", "/v1/datasets/{dataset}/profile?m=0", None, 422, "query.m"),
    "profile-variant": ("GET", "/v1/datasets/{dataset}/profile?variant=shannon", None, 422, "variant"),
    "invalid-cursor": ("GET", "/v1/runs?cursor=bm90LWEtY3Vyc29y", None, 400, "invalid cursor"),
    "cursor-past-64-bits": ("GET", "/v1/datasets?cursor=aWQ6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5", None, 400, "invalid cursor"),
    "page-size-too-big": ("GET", "/v1/jobs?limit=100000", None, 422, "limit"),
    "job-status-unknown": ("GET", "/v1/jobs?status=sleeping", None, 422, "status"),
}


def write_counts() -> dict[str, int]:
    return {model.__tablename__: count_rows(model) for model in (Dataset, DatasetProfile, Run, Law, Prediction, Job)}


@pytest.mark.parametrize("case", JSON_CASES.values(), ids=JSON_CASES.keys())
def test_bad_request_is_4xx_and_writes_nothing(bounded_client, dataset_id, case):
    method, path, body, status, detail = case
    counts_before = write_counts()
    arguments = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    if body is None:
        arguments = {}

    response = bounded_client.request(method, path.format(dataset=dataset_id), **arguments)

    assert_problem(response, status, detail)
    assert write_counts() == counts_before


def test_chunked_json_over_limit_is_413(bounded_client):
    document = b'{"runs": [' + b",".join([b'{"dataset": "' + b"d" * 200 + b'"}'] * 400) + b"]}"

    response = bounded_client.post(
        "/v1/runs", content=(document[start:start + 4096] for start in range(0, len(document), 4096)),
        headers={"content-type": "application/json"},
    )

    problem = assert_problem(response, 413, "PERFLAW_MAX_JSON_BODY_KB")
    assert problem["limit"] == "max_json_body_kb"
    assert count_rows(Run) == 0


@pytest.fixture
def law_id(bounded_client) -> int:
    runs = [
        {**RUN, "n_layers": layers, "d_model": width, "metrics": {"ndcg@10": 0.05 + 0.002 * layers + 0.0001 * width}}
        for layers in (1, 2, 4, 8) for width in (16, 64)
    ]
    assert bounded_client.post("/v1/runs", json={"runs": runs}).status_code == 201
    response = bounded_client.post("/v1/laws", json={"metric": "ndcg@10", "n_bootstrap": 0})
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.mark.parametrize(
    ("budget", "detail"),
    [("lots", "invalid budget"), ("-5M", "invalid budget"), (-5, "budget"), (0, "budget"), ("1e400", "budget")],
    ids=["text", "negative-text", "negative", "zero", "overflowing-text"],
)
def test_bad_budget_is_422(bounded_client, law_id, budget, detail):
    counts_before = write_counts()

    response = bounded_client.post("/v1/plans", json={"law": law_id, "d_prime": 1000, "n_items": 100, "budget": budget})

    assert_problem(response, 422, detail)
    assert write_counts() == counts_before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_json_route_with_other_content_type_is_415(bounded_client, content_type):
    response = bounded_client.post(
        "/v1/predictions", content=b'{"d_prime": 1000, "layers": [2], "d_models": [64]}', headers={"content-type": content_type}
    )

    assert_problem(response, 415, "application/json")


# Command-line cases: (file name, file content, a function that makes it, or None for no file,
# extra arguments, stderr fragment).
CLI_CASES = {
    "gzip-truncated": ("log.csv.gz", GZIP_LOG[:-12], [], "corrupt or truncated gzip"),
    "bz2-corrupt": ("log.csv.bz2", b"BZh9" + bytes(60), [], "corrupt or truncated bz2"),
    "xz-truncated": ("log.csv.xz", XZ_LOG[:-10], [], "corrupt or truncated xz"),
    "zip-two-members": ("logs.zip", zip_of({"a.csv": LOG, "b.csv": LOG}), [], "exactly one file"),
    "binary": ("log.bin", bytes(range(256)), [], "binary data"),
    "latin-1": ("log.csv", "user,item\nJosé,café\n".encode("latin-1"), [], "not valid UTF-8"),
    "utf-16": ("log.csv", "user,item\nu1,a\n".encode("utf-16"), [], "UTF-16"),
    "empty-file": ("log.csv", b"", [], "empty"),
    "header-only": ("log.csv", b"user,item\n", [], "no data rows"),
    "ragged-row": ("log.csv", b"user,item,timestamp\nu1,a,1\nu2,b\n", [], "line 3"),
    "timestamp-text": ("log.csv", b"user,item,timestamp\nu1,a,noon\n", [], "noon"),
    "gzip-bomb": ("zeros.gz", lambda: gzip_of_zeros(64 * MIB), [], "max_decompressed_bytes"),
    "huge-line": ("log.csv", b"user,item\nu1," + b"a" * 10_000 + b"\n", [], "max_line_bytes"),
    "too-many-users": ("log.csv", b"user,item\n" + b"".join(b"u%d,a\n" % i for i in range(150)), [], "max_users"),
    "missing-file": ("absent.csv", None, [], "file not found"),
    "unknown-format": ("log.csv", LOG, ["--format", "excel"], "unknown format"),
    "bad-separator": ("log.csv", LOG, ["--separator", "ab"], "invalid separator"),
    "unknown-variant": ("log.csv", LOG, ["--variant", "shannon"], "variant"),
    "m-zero": ("log.csv", LOG, ["--m", "0"], "m must be"),
    "r-on-labels": ("log.csv", LOG, ["--r", "2"], "r >= 1"),
}


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    """Bounded limits for the CLI, and a scratch data folder that must stay empty."""
    for name, value in BOUNDED_SETTINGS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PERFLAW_DATA_DIR", str(tmp_path / "service-data"))
    reset_cached_state()
    yield tmp_path
    reset_cached_state()


@pytest.mark.parametrize("case", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_cli_profile_bad_input_exits_2(cli_env, case):
    filename, content, arguments, message = case
    path = cli_env / filename
    if content is not None:
        path.write_bytes(content() if callable(content) else content)

    result = CliRunner().invoke(cli_app, ["profile", str(path), "--json", *arguments])

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error:")
    assert message in result.stderr
    assert not (cli_env / "service-data").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["predict", "{log}", "--layers", "two"], "--layers must be"),
        (["predict", "{log}", "--d-model", "0"], "--d-model must"),
        (["predict", "{log}", "--level", "1.5"], "--level"),
        (["plan", "{log}"], "give exactly one budget"),
        (["plan", "{log}", "--max-params", "lots"], "invalid budget"),
        (["fit", "{runs}"], "d_model"),
        (["predict", "--dataset", "3"], "--server"),
    ],
    ids=["layers-text", "width-zero", "level-over-one", "no-budget", "budget-text", "runs-file-column", "dataset-offline"],
)
def test_cli_bad_arguments_exit_2(cli_env, arguments, message):
    (cli_env / "log.csv").write_bytes(LOG)
    (cli_env / "runs.csv").write_bytes(b"dataset,n_layers\nx,2\n")
    paths = {"log": str(cli_env / "log.csv"), "runs": str(cli_env / "runs.csv")}

    result = CliRunner().invoke(cli_app, [argument.format(**paths) for argument in arguments])

    assert result.exit_code == 2, result.output
    assert message in result.stderr
