"""Dependencies shared by the routes: the request's session, its tenant and owned resources."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app import auth
from app.db import get_session_factory
from app.errors import ProblemError, not_found
from app.models import Dataset, Job, Law, Run, Tenant
from app.pagination import MAX_RESOURCE_ID

logger = logging.getLogger(__name__)


def get_session() -> Iterator[Session]:
    """Open one session per request that commits once at the end or rolls back on error.

    Routes that write files register clean-up callables in session.info["on_rollback"], so a
    failed request leaves no file behind, and deferred deletions in session.info["after_commit"].
    """
    session = get_session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        _run_callbacks(session, "on_rollback")
        raise
    else:
        _run_callbacks(session, "after_commit")
    finally:
        session.close()


def _run_callbacks(session: Session, name: str) -> None:
    for callback in session.info.pop(name, []):
        try:
            callback()
        except OSError:
            logger.exception("clean-up step %s failed", name)


SessionDep = Annotated[Session, Depends(get_session)]


def get_tenant(request: Request, session: SessionDep) -> Tenant:
    """Authenticate the request by its bearer key, or as the anonymous tenant where allowed."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() == "bearer" and secret:
        tenant = auth.tenant_for_key(session, secret.strip())
        if tenant is None:
            raise _unauthorized("the API key is invalid or revoked")
        return tenant
    if auth.active_keys_exist(session):
        raise _unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    if not getattr(request.app.state, "allow_anonymous", True):
        raise _unauthorized("anonymous access is disabled on this server; create a key with `perflaw keys create`")
    return auth.get_or_create_tenant(session, auth.ANONYMOUS_TENANT)


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, detail, headers={"WWW-Authenticate": "Bearer"})


TenantDep = Annotated[Tenant, Depends(get_tenant)]


def _get_owned(session: Session, model, kind: str, resource_id: int, tenant: Tenant):
    """Return the row when it exists and belongs to tenant; otherwise 404, never 403."""
    if not 1 <= resource_id <= MAX_RESOURCE_ID:
        # Ids are 64-bit; a larger number names no row, and the database driver would reject it.
        raise not_found(kind, resource_id)
    row = session.get(model, resource_id)
    if row is None or row.tenant_id != tenant.id:
        raise not_found(kind, resource_id)
    return row


def get_owned_dataset(dataset_id: int, session: SessionDep, tenant: TenantDep) -> Dataset:
    return _get_owned(session, Dataset, "dataset", dataset_id, tenant)


def get_owned_run(run_id: int, session: SessionDep, tenant: TenantDep) -> Run:
    return _get_owned(session, Run, "run", run_id, tenant)


def get_owned_law(law_id: int, session: SessionDep, tenant: TenantDep) -> Law:
    return _get_owned(session, Law, "law", law_id, tenant)


def get_owned_job(job_id: int, session: SessionDep, tenant: TenantDep) -> Job:
    return _get_owned(session, Job, "job", job_id, tenant)


OwnedDataset = Annotated[Dataset, Depends(get_owned_dataset)]
OwnedRun = Annotated[Run, Depends(get_owned_run)]
OwnedLaw = Annotated[Law, Depends(get_owned_law)]
OwnedJob = Annotated[Job, Depends(get_owned_job)]
