"""Dataset upload, listing, deletion and data-quality profiles."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.dataset_service import compute_profile_row, dataset_limits, find_profile, profile_params_key
from app.deps import OwnedDataset, SessionDep, TenantDep
from app.errors import ProblemError
from app.job_queue import enqueue_job
from app.models import Dataset, Job
from app.pagination import MAX_PAGE_SIZE, paginate
from app.schemas import PRINTABLE_TEXT, DatasetList, DatasetPublic, JobPublic, ProfilePublic, StrictModel, Variant
from app.settings import get_settings
from app.storage import Storage, get_storage
from core.profile import ProfileParams
from core.readers import (
    InteractionLogError,
    LimitExceededError,
    ReadOptions,
    parse_column_text,
    parse_timestamp_column_text,
    read_interactions,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

UPLOAD_CHUNK_BYTES = 1 << 20
MAX_NAME_CHARS = 255
# The Settings field behind each ReadLimits field, so a 413 names what an operator can change.
LIMIT_SETTINGS = {
    "max_decompressed_bytes": "max_decompressed_mb",
    "max_compression_ratio": "max_compression_ratio",
    "max_line_bytes": "max_line_bytes",
    "max_users": "max_users",
    "max_items": "max_items",
    "max_interactions": "max_interactions",
}

UPLOAD_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "description": "The interaction log, as a multipart form field named `file` or as the raw request body.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class UploadParams(StrictModel):
    """How to read the uploaded log; every field left empty is detected from the content."""

    name: str | None = Field(
        None, max_length=MAX_NAME_CHARS, pattern=PRINTABLE_TEXT, description="Display name; default the file name."
    )
    format: str | None = Field(
        None, description="delimited, inter, sasrec, sequence-lines, item-list-column or parquet."
    )
    separator: str | None = Field(None, max_length=4, description="Field separator, e.g. `,` `\\t` `::` `;`.")
    header: bool | None = Field(None, description="Whether the first line names the columns.")
    user_column: str | None = Field(None, max_length=200, description="Name or 0-based position of the user (or session) column.")
    item_column: str | None = Field(None, max_length=200, description="Name or 0-based position of the item column.")
    timestamp_column: str | None = Field(None, max_length=200, description="Name or 0-based position of the timestamp column, or `none` to keep file order.")
    drop_invalid: bool = Field(False, description="Drop rows with an empty user or item and count them, instead of rejecting the file.")


@dataclass
class ReceivedUpload:
    path: Path
    filename: str | None
    sha256: str
    size_bytes: int


def _read_options(params: UploadParams) -> ReadOptions:
    return ReadOptions(
        format=params.format,
        separator=params.separator,
        header=params.header,
        user_column=parse_column_text(params.user_column),
        item_column=parse_column_text(params.item_column),
        timestamp_column=parse_timestamp_column_text(params.timestamp_column),
        drop_invalid=params.drop_invalid,
    )


def _read_options_key(params: UploadParams) -> str:
    options = params.model_dump(exclude={"name"})
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()


async def _receive_upload(request: Request, storage: Storage) -> ReceivedUpload:
    """Stream the request's file into a scratch file, hashing it on the way."""
    path = storage.temporary_file()
    digest = hashlib.sha256()
    size = 0
    filename = None
    try:
        with open(path, "wb") as scratch:
            async for chunk in _upload_chunks(request):
                if isinstance(chunk, str):
                    filename = chunk
                    continue
                digest.update(chunk)
                size += len(chunk)
                scratch.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise ProblemError(422, "the uploaded file is empty")
    return ReceivedUpload(path=path, filename=filename, sha256=digest.hexdigest(), size_bytes=size)


async def _upload_chunks(request: Request):
    """Yield the file name (a str, when known) and then the file's bytes in chunks."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        raise ProblemError(
            415,
            f"an interaction log cannot be sent as {media_type}: send the file as multipart/form-data "
            "(field `file`) or as the raw body with Content-Type: application/octet-stream",
        )
    if media_type != "multipart/form-data":
        async for chunk in request.stream():
            if chunk:
                yield chunk
        return
    async with request.form(max_files=1, max_fields=20) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ProblemError(422, "the multipart body needs a file field named 'file'")
        if upload.filename:
            yield upload.filename
        while chunk := await upload.read(UPLOAD_CHUNK_BYTES):
            yield chunk


def _display_name(params: UploadParams, upload: ReceivedUpload) -> str:
    # Only the last path component of a client's file name is kept; it is never a storage path.
    candidate = params.name or (upload.filename and Path(upload.filename.replace("\\", "/")).name) or ""
    candidate = "".join(character for character in candidate if character.isprintable())
    if candidate.strip(". ") == "":
        candidate = ""
    return candidate[:MAX_NAME_CHARS] or f"upload-{upload.sha256[:12]}"


def _parse_upload(upload: ReceivedUpload, params: UploadParams):
    """Parse the scratch file; map reader errors to problem details with line, column and value."""
    try:
        return read_interactions(
            upload.path, _read_options(params), filename=upload.filename, limits=dataset_limits(get_settings())
        )
    except LimitExceededError as error:
        setting = LIMIT_SETTINGS.get(error.limit, error.limit)
        raise ProblemError(
            413, f"{error} (server setting PERFLAW_{setting.upper()})", limit=setting, limit_value=error.maximum
        ) from None
    except InteractionLogError as error:
        raise ProblemError(
            422,
            str(error),
            title="Invalid interaction log",
            line=getattr(error, "line", None),
            column=getattr(error, "column", None),
            value=getattr(error, "value", None),
        ) from None
    except ValueError as error:
        raise ProblemError(422, str(error), title="Invalid read options") from None


def _find_duplicate(session, tenant_id: int, sha256: str, options_key: str) -> Dataset | None:
    return session.scalar(
        select(Dataset).where(
            Dataset.tenant_id == tenant_id,
            Dataset.content_sha256 == sha256,
            Dataset.read_options_key == options_key,
        )
    )


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    openapi_extra=UPLOAD_REQUEST_BODY,
    responses={200: {"description": "The same file with the same options was uploaded before; that dataset is returned."}},
)
async def upload_dataset(
    request: Request,
    response: Response,
    session: SessionDep,
    tenant: TenantDep,
    params: Annotated[UploadParams, Query()],
) -> Dataset:
    """Upload an interaction log; it is parsed, re-indexed and stored in compact form.

    Uploading the same bytes with the same read options again returns the existing dataset
    with status 200. A file that fails to parse leaves no dataset row and no stored file.
    """
    storage = get_storage()
    upload = await _receive_upload(request, storage)
    try:
        options_key = _read_options_key(params)
        existing = _find_duplicate(session, tenant.id, upload.sha256, options_key)
        if existing is not None:
            response.status_code = 200
            return existing

        started = time.perf_counter()
        result = await run_in_threadpool(_parse_upload, upload, params)
        dataset = await run_in_threadpool(
            _store_dataset, session, storage, tenant.id, upload, params, options_key, result
        )
    finally:
        upload.path.unlink(missing_ok=True)

    logger.info(
        "stored dataset",
        extra={"dataset_id": dataset.id, "tenant_id": tenant.id, "interactions": dataset.n_interactions,
               "parse_s": round(time.perf_counter() - started, 3)},
    )
    return dataset


def _store_dataset(session, storage: Storage, tenant_id, upload, params, options_key, result) -> Dataset:
    """Write the arrays and insert the row; a failure before commit removes the file again."""
    storage_key = f"datasets/{tenant_id}/{upload.sha256[:32]}-{options_key[:16]}.npz"
    with storage.atomic_write(storage_key) as partial:
        result.dataset.save(partial)
    dataset = Dataset(
        tenant_id=tenant_id,
        name=_display_name(params, upload),
        content_sha256=upload.sha256,
        read_options_key=options_key,
        size_bytes=upload.size_bytes,
        storage_key=storage_key,
        detected=_json_ready(result.detected),
        n_users=result.dataset.n_users,
        n_items=result.dataset.n_items,
        n_interactions=result.dataset.n_interactions,
        rows_dropped=result.rows_dropped,
        warnings=list(result.warnings),
    )
    session.add(dataset)
    try:
        session.flush()
    except IntegrityError:
        # The same file arrived in a concurrent request that committed first.
        session.rollback()
        return _find_duplicate(session, tenant_id, upload.sha256, options_key)
    session.info.setdefault("on_rollback", []).append(lambda: storage.delete(storage_key))
    return dataset


def _json_ready(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values, default=str))


@router.get("", response_model=DatasetList)
def list_datasets(
    session: SessionDep,
    tenant: TenantDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> DatasetList:
    """List the tenant's datasets, newest first."""
    query = select(Dataset).where(Dataset.tenant_id == tenant.id)
    rows, next_cursor = paginate(session, query, Dataset.id, cursor, limit)
    return DatasetList(items=[DatasetPublic.model_validate(row) for row in rows], next_cursor=next_cursor)


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset: OwnedDataset) -> Dataset:
    return dataset


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(dataset: OwnedDataset, session: SessionDep) -> Response:
    """Delete the dataset, its profiles and its stored arrays; runs keep their numbers."""
    storage_key = dataset.storage_key
    session.delete(dataset)
    session.info.setdefault("after_commit", []).append(lambda: get_storage().delete(storage_key))
    return Response(status_code=204)


def _queue_profile_job(session, dataset: Dataset, params: ProfileParams) -> JSONResponse:
    """Queue (or find the queued) analysis job of a large dataset and return it with status 202."""
    payload = {"dataset_id": dataset.id, "params": {"m": params.m, "r": params.r, "max_len": params.max_len, "variant": params.variant}}
    pending = session.scalars(
        select(Job).where(Job.tenant_id == dataset.tenant_id, Job.kind == "analyze_dataset", Job.status.in_(("queued", "running")))
    ).all()
    job = next((job for job in pending if job.payload == payload), None)
    if job is None:
        job = enqueue_job(session, tenant_id=dataset.tenant_id, kind="analyze_dataset", payload=payload)
    return JSONResponse(JobPublic.model_validate(job).model_dump(mode="json"), status_code=202)


@router.get(
    "/{dataset_id}/profile",
    response_model=ProfilePublic,
    responses={202: {"model": JobPublic, "description": "A large dataset is profiled by a job; poll it, then ask again."}},
)
def get_profile(
    dataset: OwnedDataset,
    session: SessionDep,
    m: Annotated[int, Query(ge=1, le=10, description="Template length.")] = 2,
    r: Annotated[float, Query(ge=0, le=1e9, description="Tolerance; r < 1 is exact matching of item ids.")] = 0.0,
    max_len: Annotated[int, Query(ge=0, le=100_000, description="Keep each sequence's last max_len items; 0 keeps whole sequences.")] = 50,
    variant: Variant = "pincus",
) -> ProfilePublic:
    """Return the dataset's data-quality profile, computed once per parameter set and stored."""
    try:
        params = ProfileParams(m=m, r=r, max_len=max_len or None, variant=variant)
    except ValueError as error:
        raise ProblemError(422, str(error)) from None
    stored = find_profile(session, dataset.id, profile_params_key(params))
    cached = stored is not None
    if stored is None and dataset.n_interactions > get_settings().profile_inline_max_interactions:
        return _queue_profile_job(session, dataset, params)
    if stored is None:
        try:
            stored = compute_profile_row(session, get_storage(), dataset, params)
        except ValueError as error:
            raise ProblemError(422, str(error)) from None
    return ProfilePublic(
        dataset_id=dataset.id, params=stored.profile["params"], profile=stored.profile,
        compute_s=stored.compute_s, cached=cached,
    )
