"""Choosing a model size with a fitted law: best config under a budget, and CI checks.

A plan evaluates every (n_layers, d_model) pair of a grid. It predicts the metric with the
law at the dataset's D' and measures each config in the budget's unit. It returns the best
config within the budget and the Pareto frontier of size against predicted metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from core.fitting import FittedLaw
from core.sizing import SizingError, count_parameters, format_size, training_flops_per_token

BudgetKind = Literal["params", "non_embedding_params", "flops"]
BUDGET_KINDS = ("params", "non_embedding_params", "flops")

DEFAULT_LAYER_GRID = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
DEFAULT_WIDTH_GRID = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
INTERVAL_LEVEL = 0.9
"""Level of the prediction intervals reported for candidates."""

_TIE = 1e-12  # predictions closer than this count as equal


class PlanningError(ValueError):
    """A planning or check request is invalid, or no config fits the budget."""


@dataclass(frozen=True)
class SizeConfig:
    """The size-determining part of a model config."""

    n_layers: int
    d_model: int
    n_heads: int = 1
    arch: str = "sasrec"
    max_len: int = 50


@dataclass(frozen=True)
class Candidate:
    """One config of a plan with its size and predicted metric.

    Attributes:
        size: the config measured in the plan's budget kind: total parameters,
            non-embedding parameters, or training FLOPs (per token, or for train_tokens
            tokens when the plan was given them).
        predicted: the law's metric at this config and the plan's D'.
        interval: (low, high) 90% bootstrap prediction interval, or None when the law has
            no bootstrap replicates.
        extrapolated: inputs whose value lies outside the law's fitted range.
        within_budget: size <= budget.
    """

    n_layers: int
    d_model: int
    n_heads: int
    params: int
    non_embedding_params: int
    flops_per_token: int
    size: float
    predicted: float
    interval: tuple[float, float] | None
    extrapolated: tuple[str, ...]
    within_budget: bool

    def to_dict(self) -> dict[str, Any]:
        """Return the candidate as JSON-ready data."""
        data = asdict(self)
        data["interval"] = None if self.interval is None else list(self.interval)
        data["extrapolated"] = list(self.extrapolated)
        return data


@dataclass(frozen=True)
class Plan:
    """The result of plan_sizes.

    Attributes:
        best: highest predicted metric within the budget; among equal predictions, the
            smallest size, then the fewest parameters.
        frontier: candidates no smaller candidate beats, by increasing size: each predicts
            more than every candidate of smaller or equal size. It covers the whole grid,
            so it also shows what a larger budget would buy.
        candidates: every config of the grid, by n_layers then d_model.
        warnings: sentences about extrapolation, grid edges and folded inputs.
    """

    metric: str
    budget_kind: str
    budget: float
    d_prime: float
    arch: str
    n_items: int
    max_len: int
    best: Candidate
    frontier: tuple[Candidate, ...]
    candidates: tuple[Candidate, ...]
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-ready data."""
        return {
            "metric": self.metric,
            "budget_kind": self.budget_kind,
            "budget": self.budget,
            "d_prime": self.d_prime,
            "arch": self.arch,
            "n_items": self.n_items,
            "max_len": self.max_len,
            "best": self.best.to_dict(),
            "frontier": [candidate.to_dict() for candidate in self.frontier],
            "candidates": [candidate.to_dict() for candidate in self.candidates],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class CheckResult:
    """The verdict of check_config.

    Attributes:
        passed: every criterion given holds.
        reasons: one sentence per criterion, with the numbers compared; failures first.
        numbers: the values behind the verdict (predicted metric, interval, sizes, budget,
            best config and gap); absent values are None.
        warnings: sentences about extrapolation that do not change the verdict.
    """

    passed: bool
    reasons: list[str]
    numbers: dict[str, Any]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class _Sizing:
    """Sizing inputs of candidates: the dataset's item count and the budget's unit."""

    n_items: int
    budget_kind: str
    n_negatives: int | None
    train_tokens: float | None

    @property
    def label(self) -> str:
        """The unit of a size, for sentences."""
        if self.budget_kind == "params":
            return "parameters"
        if self.budget_kind == "non_embedding_params":
            return "non-embedding parameters"
        return "training FLOPs" if self.train_tokens else "training FLOPs per token"


def _positive_float(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PlanningError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise PlanningError(f"{name} must be positive and finite, got {value!r}")
    return number


def _check_plan_arguments(law: FittedLaw, d_prime: float, budget_kind: str,
                          budget: float | None, train_tokens: float | None) -> None:
    if not isinstance(law, FittedLaw):
        raise PlanningError(f"law must be a FittedLaw, got {type(law).__name__}")
    _positive_float(d_prime, "d_prime")
    if budget_kind not in BUDGET_KINDS:
        raise PlanningError(f"budget_kind must be one of {BUDGET_KINDS}, got {budget_kind!r}")
    if budget is not None:
        _positive_float(budget, "budget")
    if train_tokens is not None:
        _positive_float(train_tokens, "train_tokens")


def _grid_configs(layer_grid: Sequence[int], width_grid: Sequence[int], n_heads: int,
                  arch: str, max_len: int) -> list[SizeConfig]:
    """Return the valid configs of the grid: widths a multiple of n_heads (and, for llama,
    an even head width), in n_layers then d_model order."""
    if not layer_grid or not width_grid:
        raise PlanningError("layer_grid and width_grid must not be empty")
    if isinstance(n_heads, bool) or not isinstance(n_heads, int) or n_heads < 1:
        raise PlanningError(f"n_heads must be a positive integer, got {n_heads!r}")
    configs = []
    for n_layers in sorted(set(layer_grid)):
        for d_model in sorted(set(width_grid)):
            head_width, remainder = divmod(d_model, n_heads)
            if remainder or (arch == "llama" and head_width % 2):
                continue
            configs.append(SizeConfig(n_layers, d_model, n_heads, arch, max_len))
    if not configs:
        raise PlanningError(f"no width in {sorted(set(width_grid))} is a valid multiple of "
                            f"n_heads = {n_heads} for {arch}")
    return configs


def _evaluate(law: FittedLaw, d_prime: float, configs: Sequence[SizeConfig], sizing: _Sizing,
              budget: float) -> list[Candidate]:
    """Return one candidate per config, sized, predicted and flagged."""
    sizes = []
    for config in configs:
        try:
            count = count_parameters(config.arch, config.n_layers, config.d_model,
                                     config.n_heads, sizing.n_items, config.max_len)
            flops = training_flops_per_token(config.arch, config.n_layers, config.d_model,
                                             config.n_heads, sizing.n_items, config.max_len,
                                             n_negatives=sizing.n_negatives)
        except SizingError as error:
            raise PlanningError(str(error)) from error
        sizes.append((count, flops))

    n_layers = np.array([config.n_layers for config in configs], dtype=float)
    d_model = np.array([config.d_model for config in configs], dtype=float)
    predicted = law.predict(n_layers, d_model, d_prime)
    intervals = None
    if len(law.bootstrap_params):
        intervals = law.predict_interval(n_layers, d_model, d_prime, INTERVAL_LEVEL)
    flags = law.extrapolation_flags(n_layers, d_model, d_prime)

    candidates = []
    for index, (config, (count, flops)) in enumerate(zip(configs, sizes)):
        size = {"params": count.total, "non_embedding_params": count.non_embedding,
                "flops": flops * (sizing.train_tokens or 1)}[sizing.budget_kind]
        candidates.append(Candidate(
            n_layers=config.n_layers,
            d_model=config.d_model,
            n_heads=config.n_heads,
            params=count.total,
            non_embedding_params=count.non_embedding,
            flops_per_token=flops,
            size=float(size),
            predicted=float(predicted[index]),
            interval=None if intervals is None else (float(intervals[0][index]),
                                                     float(intervals[1][index])),
            extrapolated=tuple(name for name, flagged in flags.items() if flagged[index]),
            within_budget=bool(size <= budget),
        ))
    return candidates


def _best(candidates: Sequence[Candidate]) -> Candidate:
    """Return the highest prediction; among ties, the smallest size, then fewest params.

    Raises:
        PlanningError: no candidate has a finite prediction.
    """
    finite = [candidate for candidate in candidates if math.isfinite(candidate.predicted)]
    if not finite:
        raise PlanningError("the law gives no finite prediction for any config of the grid")
    top = max(candidate.predicted for candidate in finite)
    tied = [candidate for candidate in finite if candidate.predicted >= top - _TIE]
    return min(tied, key=lambda candidate: (candidate.size, candidate.params))


def _best_within(law: FittedLaw, d_prime: float, configs: Sequence[SizeConfig],
                 sizing: _Sizing, limit: float, own: Candidate) -> Candidate:
    """Return the best of own and the configs whose size is at most limit."""
    rivals = _evaluate(law, d_prime, configs, sizing, limit)
    return _best([candidate for candidate in rivals if candidate.within_budget] + [own])


def _frontier(candidates: Sequence[Candidate]) -> list[Candidate]:
    finite = [candidate for candidate in candidates if math.isfinite(candidate.predicted)]
    ordered = sorted(finite, key=lambda candidate: (candidate.size, -candidate.predicted,
                                                        candidate.params))
    frontier: list[Candidate] = []
    for candidate in ordered:
        if not frontier or candidate.predicted > frontier[-1].predicted + _TIE:
            frontier.append(candidate)
    return frontier


def _extrapolation_warning(law: FittedLaw, candidate: Candidate, d_prime: float,
                           subject: str) -> str | None:
    """Return a sentence naming each input of candidate outside the law's fitted range."""
    if not candidate.extrapolated:
        return None
    values = {"n_layers": candidate.n_layers, "d_model": candidate.d_model, "d_prime": d_prime}
    parts = []
    for name in candidate.extrapolated:
        low, high = law.input_ranges[name]
        if name in law.folded_inputs:
            parts.append(f"{name} = {values[name]:g} differs from the one value {low:g} the "
                         f"law was fitted at, and the law ignores {name}")
        else:
            parts.append(f"{name} = {values[name]:g} is outside the fitted range "
                         f"[{low:g}, {high:g}]")
    return f"the prediction for {subject} is an extrapolation: {'; '.join(parts)}"


def plan_sizes(
    law: FittedLaw,
    d_prime: float,
    *,
    budget: float,
    budget_kind: BudgetKind = "params",
    n_items: int,
    arch: str = "sasrec",
    max_len: int = 50,
    n_heads: int = 1,
    layer_grid: Sequence[int] = DEFAULT_LAYER_GRID,
    width_grid: Sequence[int] = DEFAULT_WIDTH_GRID,
    n_negatives: int | None = 1,
    train_tokens: float | None = None,
) -> Plan:
    """Find the config with the highest predicted metric within a budget.

    Args:
        law: the fitted law of the metric to maximise.
        d_prime: the dataset's D' = tokens x ApEn, computed with the law's ApEn settings.
        budget: the largest allowed size, in the unit of budget_kind.
        budget_kind: "params" (total parameters), "non_embedding_params", or "flops"
            (training FLOPs per token from core.sizing.training_flops_per_token, or total
            training FLOPs when train_tokens is given).
        n_items: items in the dataset; sets the embedding size.
        arch, max_len, n_heads: fixed parts of every config.
        layer_grid, width_grid: the n_layers and d_model values searched. Widths that are
            not a multiple of n_heads (or give llama an odd head width) are skipped.
        n_negatives: sampled negatives per position in the FLOPs estimate (None: all items).
        train_tokens: tokens processed in training (tokens x epochs) for a total-FLOPs
            budget.

    Raises:
        PlanningError: an argument is invalid, or no config of the grid fits the budget.
    """
    _check_plan_arguments(law, d_prime, budget_kind, budget, train_tokens)
    configs = _grid_configs(layer_grid, width_grid, n_heads, arch, max_len)
    sizing = _Sizing(n_items, budget_kind, n_negatives, train_tokens)
    candidates = _evaluate(law, float(d_prime), configs, sizing, float(budget))
    label = sizing.label
    affordable = [candidate for candidate in candidates if candidate.within_budget]
    if not affordable:
        smallest = min(candidates, key=lambda candidate: candidate.size)
        raise PlanningError(
            f"no config of the grid fits the budget of {format_size(budget)} {label}; the "
            f"smallest, {smallest.n_layers} layers x d_model {smallest.d_model}, has "
            f"{format_size(smallest.size)}"
        )
    best = _best(affordable)

    warnings = []
    extrapolation = _extrapolation_warning(law, best, float(d_prime), "the best config")
    if extrapolation:
        warnings.append(extrapolation)
    if best.n_layers == max(layer_grid) or best.d_model == max(width_grid):
        warnings.append(
            f"the best config ({best.n_layers} layers x d_model {best.d_model}) lies on the "
            "largest edge of the grid; a larger grid may hold a better config"
        )
    return Plan(law.metric, budget_kind, float(budget), float(d_prime), arch, n_items, max_len,
                best, tuple(_frontier(candidates)), tuple(candidates), tuple(warnings))


def check_config(
    law: FittedLaw,
    d_prime: float,
    config: SizeConfig,
    *,
    n_items: int,
    min_metric: float | None = None,
    max_gap: float | None = None,
    budget: float | None = None,
    budget_kind: BudgetKind = "params",
    layer_grid: Sequence[int] = DEFAULT_LAYER_GRID,
    width_grid: Sequence[int] = DEFAULT_WIDTH_GRID,
    n_negatives: int | None = 1,
    train_tokens: float | None = None,
) -> CheckResult:
    """Check a planned config against a minimum metric, a gap to the best, and a budget.

    Criteria, each applied only when given:
        min_metric: the config's predicted metric must be at least this.
        budget: the config's size (in budget_kind units) must not exceed it.
        max_gap: the config's prediction may fall short of the best config within the
            budget by at most this (in metric units). The budget defaults to the config's
            own size. The best is searched over the grid with the config's arch, n_heads and
            max_len, and the config itself always competes.

    Returns:
        A CheckResult; with no criterion given it passes and reports the numbers.

    Raises:
        PlanningError: an argument is invalid.
    """
    _check_plan_arguments(law, d_prime, budget_kind, budget, train_tokens)
    if min_metric is not None and not math.isfinite(min_metric):
        raise PlanningError(f"min_metric must be finite, got {min_metric!r}")
    if max_gap is not None and not (math.isfinite(max_gap) and max_gap >= 0):
        raise PlanningError(f"max_gap must be non-negative and finite, got {max_gap!r}")

    sizing = _Sizing(n_items, budget_kind, n_negatives, train_tokens)
    label = sizing.label
    own = _evaluate(law, float(d_prime), [config], sizing,
                    math.inf if budget is None else float(budget))[0]
    numbers: dict[str, Any] = {
        "predicted": own.predicted,
        "interval_low": None if own.interval is None else own.interval[0],
        "interval_high": None if own.interval is None else own.interval[1],
        "params": own.params,
        "non_embedding_params": own.non_embedding_params,
        "flops_per_token": own.flops_per_token,
        "size": own.size,
        "budget_kind": budget_kind,
        "budget": budget,
        "min_metric": min_metric,
        "max_gap": max_gap,
        "best_predicted": None,
        "best_n_layers": None,
        "best_d_model": None,
        "gap": None,
    }
    failures: list[str] = []
    passes: list[str] = []
    metric = law.metric

    if min_metric is not None:
        if own.predicted < min_metric:
            failures.append(f"predicted {metric} {own.predicted:.3f} is below the minimum "
                            f"{min_metric:.3f}")
        else:
            passes.append(f"predicted {metric} {own.predicted:.3f} meets the minimum "
                          f"{min_metric:.3f}")
    if budget is not None:
        if own.size > budget:
            failures.append(f"the config has {format_size(own.size)} {label}, above the "
                            f"budget of {format_size(budget)}")
        else:
            passes.append(f"the config has {format_size(own.size)} {label}, within the "
                          f"budget of {format_size(budget)}")
    if max_gap is not None:
        limit = own.size if budget is None else float(budget)
        configs = _grid_configs(layer_grid, width_grid, config.n_heads, config.arch,
                                config.max_len)
        best = _best_within(law, float(d_prime), configs, sizing, limit, own)
        gap = best.predicted - own.predicted
        numbers.update(best_predicted=best.predicted, best_n_layers=best.n_layers,
                       best_d_model=best.d_model, gap=gap)
        rival = (f"the best config within {format_size(limit)} {label} ({best.n_layers} "
                 f"layers x d_model {best.d_model}, predicted {best.predicted:.3f})")
        sentence = (f"predicted {metric} {own.predicted:.3f} is {gap:.3f} below {rival}")
        if gap > max_gap:
            failures.append(f"{sentence}; the allowed gap is {max_gap:.3f}")
        else:
            passes.append(f"{sentence}, within the allowed gap of {max_gap:.3f}")
    if not failures and not passes:
        passes.append(f"predicted {metric} is {own.predicted:.3f}; no criterion was given "
                      "(minimum, maximum gap or budget), so the check passes")

    warnings = []
    extrapolation = _extrapolation_warning(law, own, float(d_prime), "the config")
    if extrapolation:
        warnings.append(extrapolation)
    return CheckResult(not failures, failures + passes, numbers, warnings)
