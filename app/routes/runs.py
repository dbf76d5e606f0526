"""Measured runs: import, list and get. Verified runs are written by the worker."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from app.dataset_service import data_term_for
from app.deps import OwnedRun, SessionDep, TenantDep
from app.errors import ProblemError, not_found
from app.models import Dataset, Run
from app.pagination import MAX_PAGE_SIZE, MAX_RESOURCE_ID, paginate
from app.schemas import PRINTABLE_TEXT, Arch, Protocol, RunCreate, RunImport, RunList, RunPublic
from app.storage import get_storage

router = APIRouter(prefix="/v1/runs", tags=["runs"])


def _data_term(session, tenant_id: int, run: RunCreate) -> tuple[float | None, float | None, float, str, int | None]:
    """Return tokens, apen, d_prime, dataset name and dataset id for an imported run."""
    dataset = None
    if run.dataset_id is not None:
        dataset = session.get(Dataset, run.dataset_id)
        if dataset is None or dataset.tenant_id != tenant_id:
            raise not_found("dataset", run.dataset_id)
    name = run.dataset or (dataset.name if dataset else None)
    if name is None:
        raise ProblemError(422, "a run needs `dataset` (a name) or `dataset_id`")

    if run.d_prime is not None:
        return run.tokens, run.apen, run.d_prime, name, run.dataset_id
    if run.tokens is not None and run.apen is not None:
        return run.tokens, run.apen, run.tokens * run.apen, name, run.dataset_id
    if dataset is not None:
        tokens, apen, d_prime = data_term_for(session, get_storage(), dataset, run.max_len)
        return tokens, apen, d_prime, name, dataset.id
    raise ProblemError(422, f"run for dataset {name!r} needs d_prime, or tokens and apen, or a dataset_id to profile")


@router.post("", status_code=201, response_model=RunList)
def import_runs(body: RunImport, session: SessionDep, tenant: TenantDep) -> RunList:
    """Import measured runs (source `imported`); all are stored or, on any error, none."""
    rows = []
    for run in body.runs:
        tokens, apen, d_prime, name, dataset_id = _data_term(session, tenant.id, run)
        row = Run(
            tenant_id=tenant.id, dataset_id=dataset_id, dataset_name=name, source="imported",
            arch=run.arch, n_layers=run.n_layers, d_model=run.d_model, n_heads=run.n_heads,
            max_len=run.max_len, tokens=tokens, apen=apen, d_prime=d_prime, protocol=run.protocol,
            metrics=dict(run.metrics), seed=run.seed, train_time_s=run.train_time_s,
        )
        session.add(row)
        rows.append(row)
    session.flush()
    return RunList(items=[RunPublic.model_validate(row) for row in rows], next_cursor=None)


@router.get("", response_model=RunList)
def list_runs(
    session: SessionDep,
    tenant: TenantDep,
    dataset_id: Annotated[int | None, Query(ge=1, le=MAX_RESOURCE_ID)] = None,
    dataset: Annotated[str | None, Query(max_length=255, pattern=PRINTABLE_TEXT)] = None,
    protocol: Protocol | None = None,
    arch: Arch | None = None,
    source: Annotated[str | None, Query(pattern="^(verified|imported)$")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> RunList:
    """List the tenant's runs, newest first, filtered by any of the given fields."""
    query = select(Run).where(Run.tenant_id == tenant.id)
    filters = {
        Run.dataset_id: dataset_id, Run.dataset_name: dataset, Run.protocol: protocol, Run.arch: arch, Run.source: source,
    }
    for column, value in filters.items():
        if value is not None:
            query = query.where(column == value)
    rows, next_cursor = paginate(session, query, Run.id, cursor, limit)
    return RunList(items=[RunPublic.model_validate(row) for row in rows], next_cursor=next_cursor)


@router.get("/{run_id}", response_model=RunPublic)
def get_run(run: OwnedRun) -> Run:
    return run
