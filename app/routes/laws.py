"""Laws: fit from runs, list, get and plot."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from app.deps import OwnedLaw, SessionDep, TenantDep
from app.errors import ProblemError, not_found
from app.law_service import LawRequestError, fit_from_records, law_summary
from app.law_store import law_from_row, record_of
from app.models import Dataset, Law, Run
from app.pagination import MAX_PAGE_SIZE, paginate
from app.schemas import LawFitRequest, LawList, LawPublic
from core.plotting import plot_law

router = APIRouter(prefix="/v1/laws", tags=["laws"])

PLOT_MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml"}


def _public(row: Law) -> LawPublic:
    return LawPublic(
        id=row.id, form=row.form, metric=row.metric, protocol=row.protocol, arch=row.arch,
        run_ids=row.run_ids, summary=law_summary(law_from_row(row)), created_at=row.created_at,
    )


def _select_runs(session, tenant_id: int, body: LawFitRequest) -> list[Run]:
    if body.dataset_id is not None:
        dataset = session.get(Dataset, body.dataset_id)
        if dataset is None or dataset.tenant_id != tenant_id:
            raise not_found("dataset", body.dataset_id)
    query = select(Run).where(Run.tenant_id == tenant_id)
    if body.run_ids is not None:
        query = query.where(Run.id.in_(body.run_ids))
    if body.dataset_id is not None:
        query = query.where(Run.dataset_id == body.dataset_id)
    if body.dataset is not None:
        query = query.where(Run.dataset_name == body.dataset)
    runs = list(session.scalars(query.order_by(Run.id)))
    if body.run_ids is not None:
        missing = sorted(set(body.run_ids) - {run.id for run in runs})
        if missing:
            raise ProblemError(404, f"runs not found: {', '.join(map(str, missing[:20]))}")
    if not runs:
        raise ProblemError(422, "no runs match the selection; import runs with POST /v1/runs first")
    return runs


@router.post("", status_code=201, response_model=LawPublic)
async def fit_law_from_runs(body: LawFitRequest, session: SessionDep, tenant: TenantDep) -> LawPublic:
    """Fit a law on the tenant's runs of one protocol and architecture, and store it.

    The fit runs a multi-start least-squares search, leave-one-out refits and the
    bootstrap (n_bootstrap refits); on tens of runs it takes seconds.
    """
    runs = _select_runs(session, tenant.id, body)
    records = [record_of(run) for run in runs]
    try:
        law = await run_in_threadpool(
            fit_from_records, records, body.metric, form=body.form, protocol=body.protocol, arch=body.arch,
            seed=body.seed, n_bootstrap=body.n_bootstrap, robust_loss=body.robust_loss,
        )
    except LawRequestError as error:
        raise ProblemError(422, str(error), title="Law cannot be fitted") from None
    used = [run.id for run in runs if (body.protocol is None or run.protocol == body.protocol)
            and (body.arch is None or run.arch == body.arch)]
    row = Law(
        tenant_id=tenant.id, form=law.form, metric=law.metric, protocol=body.protocol or runs[0].protocol,
        arch=body.arch or runs[0].arch, run_ids=used, fit=law.to_dict(),
    )
    session.add(row)
    session.flush()
    return _public(row)


@router.get("", response_model=LawList)
def list_laws(
    session: SessionDep,
    tenant: TenantDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> LawList:
    rows, next_cursor = paginate(session, select(Law).where(Law.tenant_id == tenant.id), Law.id, cursor, limit)
    return LawList(items=[_public(row) for row in rows], next_cursor=next_cursor)


@router.get("/{law_id}", response_model=LawPublic)
def get_law(law: OwnedLaw) -> LawPublic:
    return _public(law)


@router.get(
    "/{law_id}/plot",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}, "description": "Observations and fitted curves."}},
)
async def plot_law_figure(law: OwnedLaw, format: Literal["png", "svg"] = "png") -> Response:
    """Plot the observations and the fitted curve, one panel per input that varies."""
    image = await run_in_threadpool(plot_law, law_from_row(law), format)
    return Response(image, media_type=PLOT_MEDIA_TYPES[format])
