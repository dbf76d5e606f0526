"""Background jobs: verification runs, and reading or cancelling any job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from app.deps import OwnedDataset, OwnedJob, SessionDep, TenantDep
from app.errors import ProblemError
from app.job_queue import enqueue_job, request_cancel
from app.models import Job
from app.pagination import MAX_PAGE_SIZE, paginate
from app.schemas import JobList, JobPublic, VerificationRequest
from app.settings import get_settings

router = APIRouter(tags=["jobs"])


def _check_training_limits(body: VerificationRequest) -> None:
    settings = get_settings()
    # field name: (requested value, Settings field that bounds it)
    limits = {"train.epochs": (body.train.epochs, "max_train_epochs")}
    for index, config in enumerate(body.configs):
        limits[f"configs[{index}].n_layers"] = (config.n_layers, "max_train_layers")
        limits[f"configs[{index}].d_model"] = (config.d_model, "max_train_d_model")
        if config.d_model % config.n_heads:
            raise ProblemError(422, f"configs[{index}]: d_model {config.d_model} is not a multiple of n_heads {config.n_heads}")
    for name, (value, setting) in limits.items():
        maximum = getattr(settings, setting)
        if value > maximum:
            raise ProblemError(
                422, f"{name} = {value} exceeds this service's limit of {maximum} (server setting PERFLAW_{setting.upper()})",
                limit=setting, limit_value=maximum,
            )


@router.post("/v1/datasets/{dataset_id}/verification-runs", status_code=202, response_model=JobList)
def request_verification_runs(body: VerificationRequest, dataset: OwnedDataset, session: SessionDep) -> JobList:
    """Queue one training job per config; each stores a `verified` run when it finishes.

    Poll GET /v1/jobs/{id} for progress (epoch, validation metric) and the result, which
    compares the measured metric with any stored prediction for that size.
    """
    _check_training_limits(body)
    jobs = [
        enqueue_job(
            session, tenant_id=dataset.tenant_id, kind="train_run",
            payload={"dataset_id": dataset.id, "model": config.model_dump(), "train": body.train.model_dump()},
        )
        for config in body.configs
    ]
    return JobList(items=[JobPublic.model_validate(job) for job in jobs], next_cursor=None)


@router.get("/v1/jobs", response_model=JobList)
def list_jobs(
    session: SessionDep,
    tenant: TenantDep,
    status: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|cancelled)$")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> JobList:
    query = select(Job).where(Job.tenant_id == tenant.id)
    if status:
        query = query.where(Job.status == status)
    rows, next_cursor = paginate(session, query, Job.id, cursor, limit)
    return JobList(items=[JobPublic.model_validate(row) for row in rows], next_cursor=next_cursor)


@router.get("/v1/jobs/{job_id}", response_model=JobPublic)
def get_job(job: OwnedJob) -> Job:
    return job


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job: OwnedJob, session: SessionDep) -> Job:
    """Cancel a job: a queued one at once, a running one at its next step (a training epoch)."""
    request_cancel(session, job.id)
    session.flush()
    session.refresh(job)
    return job
