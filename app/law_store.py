"""Law rows, and choosing the law and D' that a prediction, plan or check uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.dataset_service import data_term_for
from app.errors import ProblemError, not_found
from app.law_service import LawRequestError, fit_from_records, law_profile_params, law_summary, load_reference_law
from app.models import Dataset, Law, Run, Tenant
from app.schemas import DataTermRequest
from app.storage import get_storage
from core.fitting import FittedLaw
from core.runs_file import RunRecord

# A law fitted on a dataset's own runs needs more runs than parameters; below this many,
# the reference law is used instead.
MIN_OWN_RUNS = 8


def record_of(run: Run) -> RunRecord:
    return RunRecord(
        dataset=run.dataset_name, n_layers=run.n_layers, d_model=run.d_model, n_heads=run.n_heads,
        max_len=run.max_len, d_prime=run.d_prime, protocol=run.protocol, metrics=run.metrics,
        tokens=int(run.tokens) if run.tokens is not None else None, apen=run.apen, arch=run.arch,
        seed=run.seed, train_time_s=run.train_time_s,
    )


class BoundedCache(dict):
    """A dict that evicts its oldest entry once it contains max_entries."""

    def __init__(self, max_entries: int) -> None:
        super().__init__()
        self.max_entries = max_entries

    def __setitem__(self, key, value) -> None:
        if key not in self and len(self) >= self.max_entries:
            self.pop(next(iter(self)))
        super().__setitem__(key, value)


# Stored laws never change, so a rebuilt law is kept by id (or by the exact runs it fits).
_STORED_LAWS: BoundedCache = BoundedCache(256)
_OWN_RUN_LAWS: BoundedCache = BoundedCache(64)


def law_from_row(row: Law) -> FittedLaw:
    """Rebuild a stored law, from the cache when it was rebuilt before.

    The cache key includes the creation time, because a test database (or a restored
    backup) can give a new law the id of an old one.
    """
    key = (row.id, row.created_at.isoformat(), row.form, row.metric)
    law = _STORED_LAWS.get(key)
    if law is None:
        law = FittedLaw.from_dict(row.fit)
        _STORED_LAWS[key] = law
    return law


def clear_law_caches() -> None:
    """Forget every rebuilt law; for tests and after the database changes under the process."""
    _STORED_LAWS.clear()
    _OWN_RUN_LAWS.clear()


@dataclass
class DataContext:
    """The data side of a request: D' and the catalogue size, with where they came from."""

    d_prime: float
    n_items: int | None
    dataset: Dataset | None
    details: dict[str, Any]


def resolve_data(session: Session, tenant: Tenant, request: DataTermRequest) -> DataContext:
    """Return D' from the uploaded dataset (profiled once and stored) or as given."""
    if request.dataset_id is None:
        if request.d_prime is None:
            raise ProblemError(422, "give `dataset_id` (an uploaded dataset) or `d_prime`")
        return DataContext(request.d_prime, request.n_items, None, {"d_prime": request.d_prime, "source": "request"})

    dataset = session.get(Dataset, request.dataset_id)
    if dataset is None or dataset.tenant_id != tenant.id:
        raise not_found("dataset", request.dataset_id)
    params = law_profile_params(request.max_len)
    tokens, apen, d_prime = data_term_for(session, get_storage(), dataset, request.max_len)
    if d_prime <= 0:
        raise ProblemError(422, f"dataset {dataset.id} has D' = {d_prime:g}; the law needs D' > 0 (more sequences of length >= 3)")
    details = {
        "dataset_id": dataset.id, "dataset": dataset.name, "tokens": tokens, "apen": apen, "d_prime": d_prime,
        "apen_variant": params.variant, "m": params.m, "r": params.r, "max_len": params.max_len,
    }
    return DataContext(d_prime, request.n_items or dataset.n_items, dataset, details)


def resolve_law(session: Session, tenant: Tenant, request: DataTermRequest, data: DataContext) -> tuple[FittedLaw, dict]:
    """Return the law for a request and a description of it for the response.

    An explicit law id or `reference` is used as given. Otherwise a law is fitted on the
    dataset's own runs of the metric when there are at least MIN_OWN_RUNS of one protocol,
    and the reference law is used when there are not.
    """
    if isinstance(request.law, int):
        row = session.get(Law, request.law)
        if row is None or row.tenant_id != tenant.id:
            raise not_found("law", request.law)
        law = law_from_row(row)
        if law.metric != request.metric.lower():
            raise ProblemError(422, f"law {row.id} predicts {law.metric}, not {request.metric}; pass metric={law.metric!r}")
        return law, {"source": "law", "id": row.id, "protocol": row.protocol, **law_summary(law)}

    if request.law is None and data.dataset is not None:
        own = _fit_on_own_runs(session, tenant, data.dataset, request)
        if own is not None:
            return own
    return _reference(request.metric)


def _fit_on_own_runs(session, tenant, dataset, request):
    query = select(Run).where(Run.tenant_id == tenant.id, Run.dataset_id == dataset.id)
    if request.protocol:
        query = query.where(Run.protocol == request.protocol)
    runs = [run for run in session.scalars(query.order_by(Run.id)) if request.metric.lower() in run.metrics]
    protocols = {run.protocol for run in runs}
    if len(runs) < MIN_OWN_RUNS or len(protocols) != 1:
        return None
    key = (tenant.id, dataset.id, request.metric.lower(), tuple(run.id for run in runs))
    law = _OWN_RUN_LAWS.get(key)
    if law is None:
        try:
            law = fit_from_records([record_of(run) for run in runs], request.metric)
        except LawRequestError:
            return None
        _OWN_RUN_LAWS[key] = law
    return law, {"source": "dataset-runs", "run_ids": [run.id for run in runs], "protocol": runs[0].protocol, **law_summary(law)}


def _reference(metric: str) -> tuple[FittedLaw, dict]:
    reference = load_reference_law(metric.lower())
    if reference is None:
        raise ProblemError(
            422,
            f"no law for {metric}: the dataset has too few runs of its own and no reference law is shipped for "
            f"this metric; import runs (POST /v1/runs), fit a law (POST /v1/laws) and pass its id as `law`",
        )
    description = {
        "source": "reference", "protocol": reference.protocol, "arch": reference.arch,
        "published_error": reference.published_error, **law_summary(reference.law),
    }
    return reference.law, description
