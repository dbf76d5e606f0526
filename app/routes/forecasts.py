"""Predictions, plans and checks: a law evaluated for a dataset at planned sizes."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import SessionDep, TenantDep
from app.errors import ProblemError
from app.law_service import LawRequestError, evaluate_grid, prediction_warnings
from app.law_store import resolve_data, resolve_law
from app.models import Prediction
from app.schemas import CheckRequest, CheckResponse, PlanRequest, PlanResponse, PredictionRequest, PredictionResponse
from core.planning import PlanningError, SizeConfig, check_config, plan_sizes
from core.sizing import SizingError, parse_size

router = APIRouter(prefix="/v1", tags=["forecasts"])


def _configs(body: PredictionRequest) -> list[tuple[int, int]]:
    if body.configs is not None:
        if body.layers is not None or body.d_models is not None:
            raise ProblemError(422, "give either `configs` or `layers` with `d_models`, not both")
        return [(config.n_layers, config.d_model) for config in body.configs]
    if body.layers is None or body.d_models is None:
        raise ProblemError(422, "give `configs`, or both `layers` and `d_models` (every combination is predicted)")
    return [(layers, width) for layers in body.layers for width in body.d_models]


@router.post("/predictions", response_model=PredictionResponse)
def predict(body: PredictionRequest, session: SessionDep, tenant: TenantDep) -> PredictionResponse:
    """Predict the metric at each planned size, with a bootstrap interval and extrapolation flags.

    When the request names an uploaded dataset, the predictions are stored, so that a later
    verification run of the same size can be compared with them.
    """
    configs = _configs(body)
    data = resolve_data(session, tenant, body)
    law, law_description = resolve_law(session, tenant, body, data)
    try:
        rows = evaluate_grid(law, data.d_prime, configs, body.level)
    except LawRequestError as error:
        raise ProblemError(422, str(error)) from None

    if data.dataset is not None:
        law_ref = str(law_description.get("id", law_description["source"]))
        for row in rows:
            session.add(Prediction(
                tenant_id=tenant.id, dataset_id=data.dataset.id, law_ref=law_ref, metric=law.metric,
                protocol=law_description.get("protocol"), n_layers=row["n_layers"], d_model=row["d_model"],
                d_prime=data.d_prime, predicted=row["predicted"], low=row["low"], high=row["high"],
            ))
    warnings = list(law_description.get("warnings", [])) + prediction_warnings(rows)
    return PredictionResponse(law=law_description, data=data.details, predictions=rows, warnings=warnings)


def _budget(value: float | str | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    try:
        return float(parse_size(value))
    except (SizingError, ValueError) as error:
        raise ProblemError(422, f"invalid budget {value!r}: {error}") from None


def _require_items(data) -> int:
    if data.n_items is None:
        raise ProblemError(422, "give `n_items` (catalogue size) or a `dataset_id`: embedding sizes count toward budgets")
    return data.n_items


@router.post("/plans", response_model=PlanResponse)
def plan(body: PlanRequest, session: SessionDep, tenant: TenantDep) -> PlanResponse:
    """Return the best size within the budget and the frontier of size against predicted metric."""
    data = resolve_data(session, tenant, body)
    law, law_description = resolve_law(session, tenant, body, data)
    grids = {key: value for key, value in (("layer_grid", body.layer_grid), ("width_grid", body.width_grid)) if value}
    try:
        result = plan_sizes(
            law, data.d_prime, budget=_budget(body.budget), budget_kind=body.budget_kind, n_items=_require_items(data),
            arch=body.arch, max_len=body.max_len, n_heads=body.n_heads, train_tokens=body.train_tokens, **grids,
        )
    except (PlanningError, SizingError) as error:
        raise ProblemError(422, str(error)) from None
    return PlanResponse(law=law_description, data=data.details, plan=result.to_dict())


@router.post("/checks", response_model=CheckResponse)
def check(body: CheckRequest, session: SessionDep, tenant: TenantDep) -> CheckResponse:
    """Pass or fail one planned size against a minimum metric, a budget and a gap to the best."""
    body.max_len = body.config.max_len
    data = resolve_data(session, tenant, body)
    law, law_description = resolve_law(session, tenant, body, data)
    config = SizeConfig(
        n_layers=body.config.n_layers, d_model=body.config.d_model, n_heads=body.config.n_heads,
        arch=body.config.arch, max_len=body.config.max_len,
    )
    grids = {key: value for key, value in (("layer_grid", body.layer_grid), ("width_grid", body.width_grid)) if value}
    try:
        result = check_config(
            law, data.d_prime, config, n_items=_require_items(data), min_metric=body.min_metric,
            max_gap=body.max_gap, budget=_budget(body.budget), budget_kind=body.budget_kind, **grids,
        )
    except (PlanningError, SizingError) as error:
        raise ProblemError(422, str(error)) from None
    return CheckResponse(**result.to_dict(), law=law_description, data=data.details)
