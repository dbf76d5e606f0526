"""Fitting a law form to measured runs, and the fitted law that predicts from it.

The procedure of ``fit_law``, in order:

1. Fold constant inputs. An input (n_layers, d_model or d_prime) with one distinct value
   makes its term a constant, so the form's fold fixes that term's parameters and the
   intercept absorbs it. The fit's warnings report the fold, and predictions then do not
   change with that input. A form without a fold for that input raises LawFitError instead.
2. Starting points. A seeded Latin hypercube of SCREEN_FACTOR x n_starts points is drawn
   over the form's start ranges (through the form's start_sampler, if it has one). At each
   point the parameters the form declares linear are solved for exactly. The n_starts
   lowest-cost points at least MIN_START_DISTANCE apart become the starting points.
3. Multi-start least squares. From each start, scipy.optimize.least_squares (trust-region
   reflective, bounded, with the form's analytic gradient when it has one) runs to
   convergence, and the lowest cost wins. Each nonlinear parameter is then scanned over
   its start range, and any other minimum of that profile is solved from, which catches a
   neighbouring basin every start missed. With a robust loss, the search is repeated with
   that loss from the linear optimum and every start.
4. Standard errors: cov = s^2 (J^T J)^-1 with s^2 = sum r^2 / (n - p) and J the Jacobian
   at the optimum. They are NaN, with a warning, when J^T J is singular or n = p.
5. Leave-one-out: each observation is left out in turn, the law is refitted from the optimum
   and the left-out metric is predicted; the absolute percentage errors are averaged.
6. Residual bootstrap. Each residual is divided by sqrt(1 - h_i), h_i its leverage (the
   diagonal of the hat matrix J (J^T J)^-1 J^T), which makes its variance that of the
   noise for a linear model, and the results are centred. Each replicate adds resampled
   residuals to the fitted values and refits from the optimum. The replicate parameter
   sets and the rescaled residuals are stored, so intervals need no refitting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.optimize import OptimizeResult, least_squares, lsq_linear
from scipy.stats import qmc

from core.laws import INPUT_NAMES, LawForm, LawFormError, get_form

FORMAT_VERSION = 1
"""Version of the to_dict layout; from_dict rejects any other."""

ROBUST_LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")
"""Loss names that scipy.optimize.least_squares accepts."""

DEFAULT_N_STARTS = 16
DEFAULT_N_BOOTSTRAP = 200
SCREEN_FACTOR = 32
"""Candidate points screened per starting point kept."""
MIN_START_DISTANCE = 0.15
"""Minimum distance between two starting points, in units of the start ranges."""

_TOLERANCE = 1e-10  # ftol, xtol and gtol of every least-squares solve
_SINGULAR_RATIO = 1e-8  # smallest / largest singular value of the column-scaled Jacobian
_INTERVAL_CHUNK = 256  # prediction points per block when forming bootstrap samples
_SHORT_BUDGET = 20  # evaluations per parameter for each start before polishing
_POLISHED = 3  # lowest-cost starts that get the full budget if they need it
_MAX_LEVERAGE = 0.99  # caps 1 / sqrt(1 - h) at 10 for observations the fit nearly interpolates
_SCAN_POINTS = 64  # grid points of each one-parameter scan after the multi-start search
_SCAN_ROUNDS = 3
_SCAN_COST_RATIO = 1.5  # profile minima costlier than this times the best are not tried


class LawFitError(ValueError):
    """Observations cannot be fitted, or a stored law cannot be read."""


class LawInputError(ValueError):
    """An input passed to a fitted law's predict methods is invalid."""


@dataclass(frozen=True, eq=False)
class Observations:
    """Measured runs of one metric, as parallel float arrays.

    Attributes:
        n_layers: number of transformer blocks N, each > 0.
        d_model: hidden width d, each > 0.
        d_prime: data term D' = tokens x ApEn, each > 0.
        y: the measured metric, each in [0, 1]. HR@K, NDCG@K and MRR are fractions, so a
            value above 1 is almost always a percentage and is rejected.
        labels: optional name per observation (e.g. its dataset), used by plots.

    Raises:
        LawFitError: lengths differ, there are no observations, or a value is non-finite or
            outside its range. The message names the array, the index and the value.
    """

    n_layers: np.ndarray
    d_model: np.ndarray
    d_prime: np.ndarray
    y: np.ndarray
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # np.array copies, so freezing the arrays below never freezes the caller's.
        arrays = {name: np.array(getattr(self, name), dtype=float).ravel()
                  for name in (*INPUT_NAMES, "y")}
        lengths = {len(values) for values in arrays.values()}
        if len(lengths) != 1:
            sizes = ", ".join(f"{name} {len(values)}" for name, values in arrays.items())
            raise LawFitError(f"observation arrays must have equal lengths, got {sizes}")
        if lengths == {0}:
            raise LawFitError("there are no observations to fit")

        for name in INPUT_NAMES:
            bad = np.flatnonzero(~(np.isfinite(arrays[name]) & (arrays[name] > 0)))
            if bad.size:
                index = int(bad[0])
                raise LawFitError(
                    f"{name} must be positive and finite, got {name}[{index}] = "
                    f"{float(arrays[name][index])!r}"
                )
        y = arrays["y"]
        not_finite = np.flatnonzero(~np.isfinite(y))
        if not_finite.size:
            index = int(not_finite[0])
            raise LawFitError(
                f"metric values must be finite, got y[{index}] = {float(y[index])!r}")
        outside = np.flatnonzero((y < 0) | (y > 1))
        if outside.size:
            index = int(outside[0])
            raise LawFitError(
                f"metric values must lie in [0, 1], got y[{index}] = {float(y[index])!r}; "
                "give fractions such as 0.281, not percentages such as 28.1"
            )

        for name, values in arrays.items():
            values.setflags(write=False)
            object.__setattr__(self, name, values)
        if self.labels is not None:
            labels = tuple(str(label) for label in self.labels)
            if len(labels) != len(y):
                raise LawFitError(f"labels must have {len(y)} entries, got {len(labels)}")
            object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(self.y)

    def inputs(self) -> dict[str, np.ndarray]:
        """Return the three input arrays keyed by input name."""
        return {name: getattr(self, name) for name in INPUT_NAMES}

    def input_ranges(self) -> dict[str, tuple[float, float]]:
        """Return (min, max) of each input."""
        return {name: (float(values.min()), float(values.max()))
                for name, values in self.inputs().items()}

    def subset(self, mask: np.ndarray) -> Observations:
        """Return the observations where mask (boolean or index array) selects."""
        labels = None if self.labels is None else tuple(np.asarray(self.labels)[mask])
        return Observations(self.n_layers[mask], self.d_model[mask], self.d_prime[mask],
                            self.y[mask], labels)

    def to_dict(self) -> dict[str, Any]:
        """Return the observations as JSON-ready lists."""
        data: dict[str, Any] = {name: getattr(self, name).tolist()
                                for name in (*INPUT_NAMES, "y")}
        data["labels"] = None if self.labels is None else list(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Observations:
        """Rebuild observations from to_dict output; raises LawFitError when malformed."""
        try:
            return cls(*(data[name] for name in (*INPUT_NAMES, "y")), data.get("labels"))
        except (KeyError, TypeError) as error:
            raise LawFitError(f"invalid stored observations: {error!r}") from error


@dataclass(frozen=True)
class FitDiagnostics:
    """Goodness of fit and how the fit was run.

    Attributes:
        n_observations: observations fitted.
        n_free_params: parameters fitted (the form's parameters less the folded ones).
        cost: half the sum of loss-transformed squared residuals at the optimum, as
            scipy.optimize.least_squares reports it.
        r2: 1 - SS_res / SS_tot; NaN when every metric value is equal.
        rmse: root mean squared residual, in metric units.
        mape_percent: mean absolute percentage error over observations with y != 0.
        loo_mape_percent: the same for leave-one-out predictions; NaN when n - 1 is below
            the number of free parameters.
        loo_rmse: root mean squared leave-one-out error, in metric units.
        n_starts: starting points tried.
        n_starts_converged: starting points whose solve met a tolerance.
        robust_loss: the least-squares loss.
        loss_scale: residual scale of the robust loss (f_scale); None for the linear loss.
        seed: seed of the starting points and the bootstrap.
        n_bootstrap: bootstrap replicates kept.
    """

    n_observations: int
    n_free_params: int
    cost: float
    r2: float
    rmse: float
    mape_percent: float
    loo_mape_percent: float
    loo_rmse: float
    n_starts: int
    n_starts_converged: int
    robust_loss: str
    loss_scale: float | None
    seed: int
    n_bootstrap: int


@dataclass(frozen=True)
class _Problem:
    """A form with some parameters fixed, evaluated at fixed inputs."""

    form: LawForm
    settings: Mapping[str, float]
    free: tuple[str, ...]
    fixed: Mapping[str, float]
    n_layers: np.ndarray
    d_model: np.ndarray
    d_prime: np.ndarray

    @classmethod
    def build(cls, form: LawForm, settings: Mapping[str, float], fixed: Mapping[str, float],
              observations: Observations) -> _Problem:
        free = tuple(name for name in form.param_names if name not in fixed)
        return cls(form, settings, free, dict(fixed), observations.n_layers,
                   observations.d_model, observations.d_prime)

    def restrict(self, mask: np.ndarray) -> _Problem:
        return _Problem(self.form, self.settings, self.free, self.fixed, self.n_layers[mask],
                        self.d_model[mask], self.d_prime[mask])

    @property
    def lower(self) -> np.ndarray:
        return np.array([self.form.bounds[name][0] for name in self.free])

    @property
    def upper(self) -> np.ndarray:
        return np.array([self.form.bounds[name][1] for name in self.free])

    def params(self, theta: Sequence[float]) -> dict[str, float]:
        params = dict(self.fixed)
        params.update(zip(self.free, (float(value) for value in theta)))
        return params

    def predict(self, theta: Sequence[float]) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return np.asarray(self.form.function(self.params(theta), self.n_layers,
                                                 self.d_model, self.d_prime, **self.settings),
                              dtype=float)

    def predict_batch(self, points: np.ndarray) -> np.ndarray:
        """Return predictions for each row of points (shape (M, p)), shape (M, n)."""
        params: dict[str, Any] = dict(self.fixed)
        params.update({name: points[:, [index]] for index, name in enumerate(self.free)})
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            values = self.form.function(params, self.n_layers, self.d_model, self.d_prime,
                                        **self.settings)
        shape = (len(points), len(self.n_layers))
        return np.broadcast_to(np.asarray(values, dtype=float), shape)

    def jacobian(self, theta: Sequence[float]) -> np.ndarray:
        """Return d prediction / d free parameter, shape (n, p), from the form's gradient."""
        gradient = self.form.gradient
        if gradient is None:
            raise LawFormError(f"form {self.form.name!r} declares no gradient")
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            partials = gradient(self.params(theta), self.n_layers, self.d_model, self.d_prime,
                                **self.settings)
        shape = self.n_layers.shape
        return np.column_stack([np.broadcast_to(np.asarray(partials[name], dtype=float), shape)
                                for name in self.free])


def _solve(problem: _Problem, theta0: np.ndarray, y: np.ndarray, loss: str,
           loss_scale: float, max_evaluations_per_param: int = 100) -> OptimizeResult | None:
    """Run one bounded least-squares solve, or return None when the start gives non-finite
    residuals.

    The solve stops after max_evaluations_per_param x (p + 1) function evaluations.
    """
    start = np.clip(theta0, problem.lower, problem.upper)
    jacobian = "2-point" if problem.form.gradient is None else problem.jacobian
    try:
        return least_squares(
            lambda theta: problem.predict(theta) - y,
            start,
            jac=jacobian,
            bounds=(problem.lower, problem.upper),
            method="trf",
            x_scale="jac",
            loss=loss,
            f_scale=loss_scale,
            ftol=_TOLERANCE,
            xtol=_TOLERANCE,
            gtol=_TOLERANCE,
            max_nfev=max_evaluations_per_param * (len(start) + 1),
        )
    except ValueError:
        # least_squares raises ValueError when the residuals at the start are not finite.
        return None


def _solve_linear_params(problem: _Problem, points: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Replace the free linear parameters of each row of points (shape (M, p)) by their
    bounded least-squares solution given the row's other parameters.

    All rows are evaluated at once by passing parameter columns of shape (M, 1) to the form.
    Rows whose design matrix is not finite keep their values.
    """
    linear = [problem.free.index(name) for name in problem.form.linear_params
              if name in problem.free]
    if not linear:
        return points
    base_points = points.copy()
    base_points[:, linear] = 0.0
    base = problem.predict_batch(base_points)
    columns = []
    for index in linear:
        unit_points = base_points.copy()
        unit_points[:, index] = 1.0
        columns.append(problem.predict_batch(unit_points) - base)
    design = np.stack(columns, axis=2)  # shape (M, n, number of linear parameters)
    targets = y[None, :] - base
    usable = np.all(np.isfinite(design), axis=(1, 2)) & np.all(np.isfinite(targets), axis=1)

    solved = points.copy()
    solutions = np.einsum("mln,mn->ml", np.linalg.pinv(design[usable]), targets[usable])
    lower, upper = problem.lower[linear], problem.upper[linear]
    for row, solution in zip(np.flatnonzero(usable), solutions):
        if np.any(solution < lower) or np.any(solution > upper):
            solution = lsq_linear(design[row], targets[row], bounds=(lower, upper)).x
        solved[row, linear] = solution
    return solved


def _place_unit_points(problem: _Problem, unit_points: np.ndarray) -> np.ndarray:
    """Map coordinates in [0, 1) (shape (M, p)) to parameter values: through the form's
    start_sampler where it places a parameter, linearly over the start range otherwise."""
    low = np.array([problem.form.start_ranges[name][0] for name in problem.free])
    high = np.array([problem.form.start_ranges[name][1] for name in problem.free])
    points = qmc.scale(unit_points, low, high)
    if problem.form.start_sampler is not None:
        unit = {name: unit_points[:, index] for index, name in enumerate(problem.free)}
        inputs = {"n_layers": problem.n_layers, "d_model": problem.d_model,
                  "d_prime": problem.d_prime}
        placed = problem.form.start_sampler(unit, inputs, **problem.settings)
        for index, name in enumerate(problem.free):
            if name in placed:
                points[:, index] = placed[name]
    return points


def _batch_costs(problem: _Problem, points: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return half the sum of squared residuals of each row of points; inf where not finite."""
    costs = 0.5 * np.sum((problem.predict_batch(points) - y) ** 2, axis=1)
    costs[~np.isfinite(costs)] = np.inf
    return costs


def _nonlinear_indices(problem: _Problem) -> list[int]:
    return [index for index, name in enumerate(problem.free)
            if name not in problem.form.linear_params]


def _starting_points(problem: _Problem, y: np.ndarray, n_starts: int,
                     seed: int) -> np.ndarray:
    """Return n_starts low-cost, mutually distant points of a seeded Latin-hypercube screen.

    Points are taken in order of cost, skipping any closer than MIN_START_DISTANCE (in
    start-range units, over the nonlinear parameters) to one already taken, so that one
    broad basin cannot take every start. When too few points are far enough apart, the
    lowest-cost skipped points fill the remaining starts.
    """
    sampler = qmc.LatinHypercube(d=len(problem.free), rng=np.random.default_rng([seed, 0]))
    unit_points = sampler.random(SCREEN_FACTOR * n_starts)
    candidates = _solve_linear_params(problem, _place_unit_points(problem, unit_points), y)
    costs = _batch_costs(problem, candidates, y)
    finite = np.flatnonzero(np.isfinite(costs))
    order = finite[np.argsort(costs[finite], kind="stable")]

    positions = unit_points[:, _nonlinear_indices(problem)]
    chosen: list[int] = []
    for index in order:
        if len(chosen) == n_starts:
            break
        distances = np.linalg.norm(positions[chosen] - positions[index], axis=1)
        if not chosen or distances.min() >= MIN_START_DISTANCE:
            chosen.append(int(index))
    skipped = [int(index) for index in order if index not in set(chosen)]
    chosen.extend(skipped[:n_starts - len(chosen)])
    return candidates[chosen]


def _scan_minima(problem: _Problem, theta: np.ndarray, index: int,
                 y: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Return the local minima of a one-parameter profile as (cost, point), lowest first.

    The parameter at index is scanned over its start range. The other nonlinear parameters
    stay at theta, and the linear ones are re-solved at every grid point.
    """
    unit_points = np.full((_SCAN_POINTS, len(theta)), 0.5)
    unit_points[:, index] = (np.arange(_SCAN_POINTS) + 0.5) / _SCAN_POINTS
    points = np.tile(theta, (_SCAN_POINTS, 1))
    points[:, index] = _place_unit_points(problem, unit_points)[:, index]
    points = _solve_linear_params(problem, points, y)
    costs = _batch_costs(problem, points, y)
    padded = np.concatenate([[np.inf], costs, [np.inf]])
    is_minimum = (costs <= padded[:-2]) & (costs <= padded[2:]) & np.isfinite(costs)
    rows = np.flatnonzero(is_minimum)
    return sorted(((float(costs[row]), points[row]) for row in rows), key=lambda pair: pair[0])


def _refine_by_scanning(problem: _Problem, best: OptimizeResult,
                        y: np.ndarray) -> OptimizeResult:
    """Look for lower minima next to the best fit, one nonlinear parameter at a time.

    Two close basins of one exponent (the Performance Law's c, with few distinct D'
    values, has them) can trap every start in the worse basin. So each nonlinear parameter
    is scanned (see _scan_minima), and a full solve starts from every profile minimum that
    costs at most _SCAN_COST_RATIO times the best, except the one in the best fit's own
    basin. The lowest result is kept. This repeats while it improves the fit, at most
    _SCAN_ROUNDS times.
    """
    for _ in range(_SCAN_ROUNDS):
        improved = False
        for index in _nonlinear_indices(problem):
            minima = _scan_minima(problem, best.x, index, y)
            if not minima:
                continue
            distances = [abs(point[index] - best.x[index]) for _, point in minima]
            own_basin = int(np.argmin(distances))
            for position, (cost, point) in enumerate(minima):
                if position == own_basin or cost > _SCAN_COST_RATIO * best.cost:
                    continue
                result = _solve(problem, point, y, "linear", 1.0)
                if result is not None and result.cost < best.cost * (1 - 1e-9):
                    best, improved = result, True
        if not improved:
            break
    return best


def draw_starting_points(
    observations: Observations,
    form: str = "performance_law",
    *,
    n_starts: int = DEFAULT_N_STARTS,
    seed: int = 0,
    form_settings: Mapping[str, float] | None = None,
) -> list[dict[str, float]]:
    """Return the starting points fit_law uses for these arguments, as parameter dicts.

    Folded parameters appear at their fixed values. This exists so the starts can be
    inspected or handed to another optimiser for comparison.
    """
    law_form, settings = _resolve_form(form, form_settings)
    fixed, _ = _fold_constant_inputs(law_form, observations)
    problem = _Problem.build(law_form, settings, fixed, observations)
    starts = _starting_points(problem, observations.y, n_starts, seed)
    return [problem.params(theta) for theta in starts]


def _resolve_form(form: str, form_settings: Mapping[str, float] | None,
                  ) -> tuple[LawForm, dict[str, float]]:
    try:
        law_form = get_form(form)
        return law_form, law_form.resolve_settings(form_settings)
    except LawFormError as error:
        raise LawFitError(str(error)) from error


def _fold_constant_inputs(form: LawForm, observations: Observations,
                          ) -> tuple[dict[str, float], list[str]]:
    """Return the parameters fixed by folding and the warnings that explain them."""
    fixed: dict[str, float] = {}
    warnings: list[str] = []
    for name, values in observations.inputs().items():
        distinct = np.unique(values)
        fold = form.folds.get(name)
        if len(distinct) == 1:
            if fold is None:
                raise LawFitError(
                    f"every observation has {name} = {distinct[0]:g}, and form {form.name!r} "
                    f"cannot fold its {name} term into a constant; add runs with other "
                    f"{name} values"
                )
            fixed.update(fold)
            pinned = ", ".join(f"{param} = {value:g}" for param, value in fold.items())
            absorber = f"the intercept {form.intercept}" if form.intercept else "the formula"
            warnings.append(
                f"every observation has {name} = {distinct[0]:g}, so the {name} term is "
                f"constant: it is folded into {absorber} ({pinned} fixed), and predictions "
                f"do not change with {name}"
            )
        elif fold is not None and len(distinct) < len(fold) + 1:
            warnings.append(
                f"{name} takes only {len(distinct)} distinct values, too few to identify the "
                f"{len(fold)} parameters of its term ({', '.join(fold)}) separately; their "
                "standard errors will be large or undefined"
            )
    return fixed, warnings


def _loss_weights(residuals: np.ndarray, loss: str, loss_scale: float) -> np.ndarray:
    """Return the IRLS weights rho'(z), z = (r / loss_scale)^2, of a least_squares loss."""
    z = (residuals / loss_scale) ** 2
    if loss == "soft_l1":
        return 1.0 / np.sqrt(1.0 + z)
    if loss == "huber":
        return np.where(z <= 1.0, 1.0, 1.0 / np.sqrt(np.maximum(z, 1.0)))
    if loss == "cauchy":
        return 1.0 / (1.0 + z)
    if loss == "arctan":
        return 1.0 / (1.0 + z**2)
    return np.ones_like(residuals)


def _jacobian(problem: _Problem, theta: np.ndarray) -> np.ndarray:
    """Return the Jacobian of the predictions, shape (n, p): the form's gradient when it has
    one, central differences otherwise."""
    if problem.form.gradient is not None:
        return problem.jacobian(theta)
    steps = np.cbrt(np.finfo(float).eps) * np.maximum(1.0, np.abs(theta))
    columns = []
    for index, step in enumerate(steps):
        forward, backward = theta.copy(), theta.copy()
        forward[index] += step
        backward[index] -= step
        columns.append((problem.predict(forward) - problem.predict(backward)) / (2 * step))
    return np.column_stack(columns)


def _standard_errors(problem: _Problem, theta: np.ndarray, residuals: np.ndarray, loss: str,
                     loss_scale: float) -> tuple[np.ndarray, list[str]]:
    """Return s^2 (J^T J)^-1 standard errors of the free parameters, and warnings.

    Under a robust loss, J and the residuals are weighted by sqrt(rho'), the iteratively
    reweighted least-squares approximation at convergence.
    """
    n, p = len(residuals), len(theta)
    undefined = np.full(p, np.nan)
    if n <= p:
        return undefined, [
            f"{n} observations for {p} free parameters: the fit passes through every point, "
            "so standard errors are undefined (NaN)"
        ]
    jacobian = _jacobian(problem, theta)
    if not np.all(np.isfinite(jacobian)):
        return undefined, ["the Jacobian at the optimum is not finite; standard errors are NaN"]

    weights = np.sqrt(_loss_weights(residuals, loss, loss_scale))
    jacobian = jacobian * weights[:, None]
    s2 = float(np.sum((residuals * weights) ** 2) / (n - p))
    norms = np.linalg.norm(jacobian, axis=0)
    if np.any(norms == 0):
        flat = [problem.free[i] for i in np.flatnonzero(norms == 0)]
        return undefined, [
            f"the residuals do not depend on {', '.join(flat)} at the optimum, so J^T J is "
            "singular and standard errors are NaN"
        ]

    _, singular_values, right_vectors = np.linalg.svd(jacobian / norms, full_matrices=False)
    if singular_values[-1] < _SINGULAR_RATIO * singular_values[0]:
        null_direction = np.abs(right_vectors[-1])
        involved = [problem.free[i] for i in np.flatnonzero(null_direction > 0.1)]
        return undefined, [
            "J^T J is singular at the optimum (parameters "
            f"{', '.join(involved)} trade off against each other), so standard errors are NaN"
        ]
    scaled_covariance = (right_vectors.T / singular_values**2) @ right_vectors
    covariance = s2 * scaled_covariance / np.outer(norms, norms)
    return np.sqrt(np.diag(covariance)), []


def _bound_warnings(problem: _Problem, theta: np.ndarray) -> list[str]:
    warnings = []
    for name, value, lower, upper in zip(problem.free, theta, problem.lower, problem.upper):
        width = upper - lower
        for side, bound in (("lower", lower), ("upper", upper)):
            if abs(value - bound) <= 1e-6 * width:
                warnings.append(
                    f"parameter {name} = {value:g} is at its {side} bound {bound:g}; the best "
                    "fit may lie beyond it and its standard error is unreliable"
                )
    return warnings


def _percentage_error(y: np.ndarray, predicted: np.ndarray) -> float:
    nonzero = y != 0
    if not np.any(nonzero):
        return math.nan
    return float(100 * np.mean(np.abs(y[nonzero] - predicted[nonzero]) / np.abs(y[nonzero])))


def _r_squared(y: np.ndarray, residuals: np.ndarray) -> float:
    total = float(np.sum((y - y.mean()) ** 2))
    return math.nan if total == 0 else 1.0 - float(np.sum(residuals**2)) / total


def _multi_start(problem: _Problem, starts: np.ndarray, y: np.ndarray, loss: str,
                 loss_scale: float) -> tuple[OptimizeResult | None, int]:
    """Solve from every start; return the lowest-cost result and how many converged.

    Each start first gets a short budget of evaluations, which suffices for all but starts
    that creep along a ridge of near-equivalent parameters (in the Performance Law, a large
    weight with an exponent near 0). Of the _POLISHED lowest-cost solves, those that did not
    converge then continue to the full budget; the others keep their short-budget result.
    """
    results = []
    for start in starts:
        result = _solve(problem, start, y, loss, loss_scale, _SHORT_BUDGET)
        if result is not None and np.isfinite(result.cost):
            results.append(result)
    results.sort(key=lambda result: result.cost)

    for index in range(min(_POLISHED, len(results))):
        if results[index].status > 0:
            continue
        polished = _solve(problem, results[index].x, y, loss, loss_scale)
        if polished is not None and polished.cost <= results[index].cost:
            results[index] = polished
    if not results:
        return None, 0
    converged = sum(int(result.status > 0) for result in results)
    return min(results, key=lambda result: result.cost), converged


def _leave_one_out(problem: _Problem, theta: np.ndarray, y: np.ndarray, loss: str,
                   loss_scale: float) -> np.ndarray:
    """Return each observation's prediction by the law refitted without it."""
    n = len(y)
    predictions = np.full(n, np.nan)
    for index in range(n):
        keep = np.arange(n) != index
        result = _solve(problem.restrict(keep), theta, y[keep], loss, loss_scale)
        if result is not None:
            predictions[index] = problem.restrict(np.array([index])).predict(result.x)[0]
    return predictions


def _rescaled_residuals(problem: _Problem, theta: np.ndarray,
                        residuals: np.ndarray) -> np.ndarray:
    """Return the centred residuals r_i / sqrt(1 - h_i), h_i the leverage of observation i.

    Leverages come from the column-scaled Jacobian, ignoring directions whose singular value
    is below _SINGULAR_RATIO of the largest. Where the Jacobian is not finite, every residual
    is scaled by sqrt(n / (n - p)) instead, the same correction on average.
    """
    n, p = len(residuals), len(theta)
    jacobian = _jacobian(problem, theta)
    norms = np.linalg.norm(jacobian, axis=0)
    if np.all(np.isfinite(jacobian)) and np.all(norms > 0):
        left_vectors, singular_values, _ = np.linalg.svd(jacobian / norms, full_matrices=False)
        kept = singular_values >= _SINGULAR_RATIO * singular_values[0]
        leverage = np.minimum(np.sum(left_vectors[:, kept] ** 2, axis=1), _MAX_LEVERAGE)
        rescaled = residuals / np.sqrt(1.0 - leverage)
    else:
        rescaled = residuals * math.sqrt(n / (n - p))
    return rescaled - rescaled.mean()


def _bootstrap(problem: _Problem, theta: np.ndarray, fitted: np.ndarray,
               rescaled: np.ndarray, n_bootstrap: int, seed: int, loss: str,
               loss_scale: float) -> tuple[np.ndarray, int]:
    """Return replicate parameter vectors (B, p) and the number of failed refits."""
    rng = np.random.default_rng([seed, 1])
    replicates = []
    failures = 0
    for _ in range(n_bootstrap):
        resampled = fitted + rng.choice(rescaled, size=len(rescaled), replace=True)
        result = _solve(problem, theta, resampled, loss, loss_scale)
        if result is None or not np.all(np.isfinite(result.x)):
            failures += 1
            continue
        replicates.append(result.x)
    return np.array(replicates).reshape(-1, len(theta)), failures


def _check_fit_arguments(robust_loss: str, loss_scale: float | None, n_starts: int,
                         n_bootstrap: int) -> None:
    if robust_loss not in ROBUST_LOSSES:
        raise LawFitError(f"robust_loss must be one of {ROBUST_LOSSES}, got {robust_loss!r}")
    if loss_scale is not None and not (math.isfinite(loss_scale) and loss_scale > 0):
        raise LawFitError(f"loss_scale must be positive and finite, got {loss_scale!r}")
    if isinstance(n_starts, bool) or not isinstance(n_starts, int) or n_starts < 1:
        raise LawFitError(f"n_starts must be a positive integer, got {n_starts!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise LawFitError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")


def fit_law(
    observations: Observations,
    form: str = "performance_law",
    *,
    metric: str = "metric",
    robust_loss: str = "linear",
    loss_scale: float | None = None,
    n_starts: int = DEFAULT_N_STARTS,
    seed: int = 0,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    form_settings: Mapping[str, float] | None = None,
    leave_one_out: bool = True,
) -> FittedLaw:
    """Fit a law form to observations by bounded, multi-start nonlinear least squares.

    The steps are listed in this module's docstring. Every random draw comes from ``seed``,
    so equal arguments give an equal law.

    Args:
        observations: the runs to fit, all of one metric, architecture and protocol.
        form: a registered form name (core.laws.list_forms()).
        metric: the metric's name, e.g. "ndcg@10"; used in messages and stored with the law.
        robust_loss: a scipy.optimize.least_squares loss (ROBUST_LOSSES). A robust loss
            down-weights residuals larger than loss_scale.
        loss_scale: residual scale of a robust loss, in metric units. None uses
            1.4826 x the median absolute residual of the linear-loss fit (a consistent
            estimate of the noise standard deviation).
        n_starts: starting points of the multi-start search.
        seed: seed of the starting points and the bootstrap.
        n_bootstrap: bootstrap replicates for predict_interval; 0 skips the bootstrap.
            Each replicate is one refit, so the bootstrap dominates the run time.
        form_settings: overrides of the form's settings, e.g. {"xi": 2.0}.
        leave_one_out: compute the leave-one-out errors (n refits).

    Returns:
        The fitted law.

    Raises:
        LawFitError: the form or a setting is unknown, or an argument is out of range. Also
            when a constant input cannot be folded, when there are fewer observations than
            free parameters, or when no starting point gives finite residuals.
    """
    if not isinstance(observations, Observations):
        raise LawFitError(f"observations must be an Observations instance, got "
                          f"{type(observations).__name__}")
    _check_fit_arguments(robust_loss, loss_scale, n_starts, n_bootstrap)
    law_form, settings = _resolve_form(form, form_settings)
    fixed, warnings = _fold_constant_inputs(law_form, observations)
    problem = _Problem.build(law_form, settings, fixed, observations)
    y = observations.y
    n, p = len(y), len(problem.free)
    if n < p:
        raise LawFitError(
            f"form {form!r} has {p} free parameters ({', '.join(problem.free)}) but only {n} "
            f"observations of {metric}; add at least {p - n} runs"
        )

    search = _search_optimum(problem, y, n_starts, seed, robust_loss, loss_scale)
    warnings += search.warnings
    theta, scale = search.best.x, search.loss_scale

    # Goodness of fit, standard errors and leave-one-out predictions.
    fitted = problem.predict(theta)
    residuals = y - fitted
    stderr, stderr_warnings = _standard_errors(problem, theta, residuals, robust_loss, scale)
    warnings += stderr_warnings + _bound_warnings(problem, theta)
    loo_predictions = np.full(n, np.nan)
    if leave_one_out and n - 1 >= p:
        loo_predictions = _leave_one_out(problem, theta, y, robust_loss, scale)
        failed = int(np.sum(np.isnan(loo_predictions)))
        if failed:
            warnings.append(f"{failed} leave-one-out refits failed and are left out of the "
                            "leave-one-out errors")
    elif leave_one_out:
        warnings.append(f"leave-one-out needs at least {p + 1} observations; it was skipped")

    # Residual bootstrap.
    replicates, rescaled = np.empty((0, p)), np.empty(0)
    if n_bootstrap and n > p:
        rescaled = _rescaled_residuals(problem, theta, residuals)
        replicates, failures = _bootstrap(problem, theta, fitted, rescaled, n_bootstrap, seed,
                                          robust_loss, scale)
        if failures:
            warnings.append(f"{failures} of {n_bootstrap} bootstrap refits failed and were "
                            "left out")
    elif n_bootstrap:
        warnings.append(f"the bootstrap needs more observations than the {p} free parameters;"
                        " it was skipped, so the law has no prediction intervals")

    finite_loo = np.isfinite(loo_predictions)
    fitted_params = problem.params(theta)
    diagnostics = FitDiagnostics(
        n_observations=n,
        n_free_params=p,
        cost=float(search.best.cost),
        r2=_r_squared(y, residuals),
        rmse=float(np.sqrt(np.mean(residuals**2))),
        mape_percent=_percentage_error(y, fitted),
        loo_mape_percent=_percentage_error(y[finite_loo], loo_predictions[finite_loo]),
        loo_rmse=_root_mean_square(y[finite_loo] - loo_predictions[finite_loo]),
        n_starts=search.n_starts,
        n_starts_converged=search.n_converged,
        robust_loss=robust_loss,
        loss_scale=None if robust_loss == "linear" else scale,
        seed=seed,
        n_bootstrap=len(replicates),
    )
    return FittedLaw(
        form=law_form.name,
        settings=settings,
        metric=metric,
        params={name: fitted_params[name] for name in law_form.param_names},
        stderr=dict(zip(problem.free, (float(value) for value in stderr))),
        fixed_params=dict(fixed),
        folded_inputs=tuple(name for name in INPUT_NAMES if name in law_form.folds
                            and len(np.unique(getattr(observations, name))) == 1),
        diagnostics=diagnostics,
        observations=observations,
        warnings=tuple(warnings),
        bootstrap_params=_full_parameter_rows(problem, replicates),
        bootstrap_residuals=rescaled,
    )


@dataclass(frozen=True)
class _SearchResult:
    best: OptimizeResult
    loss_scale: float
    n_starts: int
    n_converged: int
    warnings: list[str]


def _search_optimum(problem: _Problem, y: np.ndarray, n_starts: int, seed: int,
                    robust_loss: str, loss_scale: float | None) -> _SearchResult:
    """Find the lowest-cost parameters: multi-start search and scans with the linear loss,
    then, for a robust loss, a multi-start search with it from the linear optimum."""
    starts = _starting_points(problem, y, n_starts, seed)
    best, converged = _multi_start(problem, starts, y, "linear", 1.0)
    if best is None:
        raise LawFitError(
            f"no starting point of form {problem.form.name!r} gives finite predictions")
    best = _refine_by_scanning(problem, best, y)

    scale = 1.0
    if robust_loss != "linear":
        scale = loss_scale or _noise_scale(best.fun)
        robust_starts = np.vstack([best.x, starts])
        robust_best, converged = _multi_start(problem, robust_starts, y, robust_loss, scale)
        if robust_best is not None:
            best = robust_best
    warnings = []
    if best.status <= 0:
        warnings.append("the best fit stopped at the evaluation limit before converging")
    return _SearchResult(best, scale, len(starts), converged, warnings)


def _full_parameter_rows(problem: _Problem, rows: np.ndarray) -> np.ndarray:
    """Expand free-parameter rows (B, p) to rows of every form parameter, in form order."""
    names = problem.form.param_names
    full = [[problem.params(row)[name] for name in names] for row in rows]
    return np.array(full, dtype=float).reshape(-1, len(names))


def _root_mean_square(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2))) if len(values) else math.nan


def _noise_scale(residuals: np.ndarray) -> float:
    """Return 1.4826 x the median absolute residual, or a tiny positive value if it is 0."""
    scale = 1.4826 * float(np.median(np.abs(residuals)))
    return scale if scale > 0 else 1e-12


def _broadcast_inputs(n_layers: Any, d_model: Any, d_prime: Any) -> list[np.ndarray]:
    arrays = np.broadcast_arrays(*(np.asarray(value, dtype=float)
                                   for value in (n_layers, d_model, d_prime)))
    for name, values in zip(INPUT_NAMES, arrays):
        bad = ~(np.isfinite(values) & (values > 0))
        if np.any(bad):
            raise LawInputError(f"{name} must be positive and finite, got "
                                f"{float(values[bad].ravel()[0])!r}")
    return arrays


def _json_float(value: float | None) -> float | None:
    """Return value, or None for NaN and infinities, which JSON cannot hold."""
    return None if value is None or not math.isfinite(value) else float(value)


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True, eq=False)
class FittedLaw:
    """A law form with fitted parameters, diagnostics and bootstrap replicates.

    Attributes:
        form: name of the registered form.
        settings: the form settings used, e.g. {"xi": 2.0}.
        metric: the metric's name, e.g. "ndcg@10".
        params: every parameter of the form, folded ones at their fixed values.
        stderr: standard error of each free parameter (NaN where undefined).
        fixed_params: the parameters fixed by folding, with their values.
        folded_inputs: inputs whose term was folded into the intercept.
        diagnostics: goodness of fit and fit settings.
        observations: the observations fitted.
        warnings: sentences about folding, identifiability, bounds and skipped steps.
        bootstrap_params: shape (B, len(params)); one row per bootstrap replicate, columns
            in the form's parameter order. B is 0 when the law was fitted without bootstrap.
        bootstrap_residuals: the rescaled, centred residuals that predict_interval adds to
            the replicate curves for a prediction interval.
    """

    form: str
    settings: Mapping[str, float]
    metric: str
    params: Mapping[str, float]
    stderr: Mapping[str, float]
    fixed_params: Mapping[str, float]
    folded_inputs: tuple[str, ...]
    diagnostics: FitDiagnostics
    observations: Observations
    warnings: tuple[str, ...] = ()
    bootstrap_params: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    bootstrap_residuals: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def law_form(self) -> LawForm:
        """The registered form this law evaluates."""
        return get_form(self.form)

    @property
    def input_ranges(self) -> dict[str, tuple[float, float]]:
        """(min, max) of each input over the fitted observations."""
        return self.observations.input_ranges()

    def predict(self, n_layers: Any, d_model: Any, d_prime: Any) -> np.ndarray:
        """Return the law's metric at the inputs, broadcast together with NumPy rules.

        Values are the formula's and are not clipped to [0, 1]; far outside the fitted
        ranges they can leave it. Raises LawInputError for a non-positive or non-finite
        input.
        """
        inputs = _broadcast_inputs(n_layers, d_model, d_prime)
        form = self.law_form
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return np.asarray(form.function(self.params, *inputs, **self.settings), dtype=float)

    def predict_interval(
        self,
        n_layers: Any,
        d_model: Any,
        d_prime: Any,
        level: float = 0.9,
        *,
        kind: Literal["prediction", "confidence"] = "prediction",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (low, high) bootstrap percentile bounds at the inputs.

        kind="confidence" bounds the law's curve: the (1 - level)/2 and (1 + level)/2
        quantiles of the curves of the B bootstrap replicates. kind="prediction" bounds the
        metric a new run would measure: quantiles of the B x n sums of a replicate curve and
        a rescaled residual, so it includes run-to-run noise. Replicates were computed at fit
        time, so this needs no refitting.

        Raises:
            LawFitError: the law was fitted without bootstrap.
            LawInputError: level, kind or an input is invalid.
        """
        if not 0 < level < 1:
            raise LawInputError(f"level must lie strictly between 0 and 1, got {level!r}")
        if kind not in ("prediction", "confidence"):
            raise LawInputError(f"kind must be 'prediction' or 'confidence', got {kind!r}")
        if len(self.bootstrap_params) == 0:
            raise LawFitError(
                f"the {self.metric} law has no bootstrap replicates; refit it with "
                "n_bootstrap > 0 to get intervals"
            )
        inputs = _broadcast_inputs(n_layers, d_model, d_prime)
        shape = inputs[0].shape
        flat = [values.ravel()[None, :] for values in inputs]
        params = {name: self.bootstrap_params[:, [index]]
                  for index, name in enumerate(self.law_form.param_names)}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            curves = np.asarray(self.law_form.function(params, *flat, **self.settings))
        curves = np.broadcast_to(curves, (len(self.bootstrap_params), flat[0].shape[1]))
        quantiles = [(1 - level) / 2, (1 + level) / 2]

        if kind == "confidence":
            low, high = np.quantile(curves, quantiles, axis=0)
            return low.reshape(shape), high.reshape(shape)
        bounds = np.empty((2, curves.shape[1]))
        for start in range(0, curves.shape[1], _INTERVAL_CHUNK):
            block = curves[:, start:start + _INTERVAL_CHUNK]
            samples = block[:, None, :] + self.bootstrap_residuals[None, :, None]
            bounds[:, start:start + _INTERVAL_CHUNK] = np.quantile(
                samples.reshape(-1, block.shape[1]), quantiles, axis=0)
        return bounds[0].reshape(shape), bounds[1].reshape(shape)

    def parameter_intervals(self, level: float = 0.9) -> dict[str, tuple[float, float]]:
        """Return bootstrap percentile intervals of the free parameters.

        Unlike the standard errors, these follow a curved cost valley, so they are the better
        guide when parameters trade off against each other.

        Raises:
            LawFitError: the law was fitted without bootstrap.
            LawInputError: level is not strictly between 0 and 1.
        """
        if not 0 < level < 1:
            raise LawInputError(f"level must lie strictly between 0 and 1, got {level!r}")
        if len(self.bootstrap_params) == 0:
            raise LawFitError(
                f"the {self.metric} law has no bootstrap replicates; refit it with "
                "n_bootstrap > 0 to get intervals"
            )
        quantiles = [(1 - level) / 2, (1 + level) / 2]
        intervals = {}
        for index, name in enumerate(self.law_form.param_names):
            if name in self.stderr:
                low, high = np.quantile(self.bootstrap_params[:, index], quantiles)
                intervals[name] = (float(low), float(high))
        return intervals

    def extrapolation_flags(self, n_layers: Any, d_model: Any,
                            d_prime: Any) -> dict[str, np.ndarray]:
        """Return, per input name, a boolean array: True where the value lies outside the
        fitted [min, max] of that input (relative tolerance 1e-9). A folded input was fitted
        at one value, so every other value of it is flagged."""
        inputs = _broadcast_inputs(n_layers, d_model, d_prime)
        flags = {}
        for name, values in zip(INPUT_NAMES, inputs):
            low, high = self.input_ranges[name]
            flags[name] = (values < low * (1 - 1e-9)) | (values > high * (1 + 1e-9))
        return flags

    def summary(self) -> str:
        """Return a few lines of text: formula, parameters with standard errors, fit quality."""
        form = self.law_form
        lines = [f"{self.form} for {self.metric} on {self.diagnostics.n_observations} "
                 f"observations", f"  {form.formula}"]
        for name in form.param_names:
            if name in self.fixed_params:
                lines.append(f"  {name:>3} = {self.params[name]:.6g} (fixed by folding)")
            else:
                lines.append(f"  {name:>3} = {self.params[name]:.6g} "
                             f"± {self.stderr[name]:.3g}")
        d = self.diagnostics
        lines.append(f"  R² {d.r2:.4f}, RMSE {d.rmse:.4g}, MAPE {d.mape_percent:.2f}%, "
                     f"leave-one-out MAPE {d.loo_mape_percent:.2f}%")
        lines.extend(f"  warning: {text}" for text in self.warnings)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Return the law as strict JSON data (NaN and infinities become null)."""
        diagnostics = {key: (_json_float(value) if isinstance(value, float) else value)
                       for key, value in vars(self.diagnostics).items()}
        return {
            "format_version": FORMAT_VERSION,
            "form": self.form,
            "settings": dict(self.settings),
            "metric": self.metric,
            "params": {key: _json_float(value) for key, value in self.params.items()},
            "stderr": {key: _json_float(value) for key, value in self.stderr.items()},
            "fixed_params": dict(self.fixed_params),
            "folded_inputs": list(self.folded_inputs),
            "diagnostics": diagnostics,
            "input_ranges": {key: list(value) for key, value in self.input_ranges.items()},
            "observations": self.observations.to_dict(),
            "warnings": list(self.warnings),
            "bootstrap": {
                "params": self.bootstrap_params.tolist(),
                "residuals": self.bootstrap_residuals.tolist(),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FittedLaw:
        """Rebuild a law from to_dict output.

        Raises:
            LawFitError: the data is malformed, has another format_version, or names a form
                that is not registered.
        """
        if not isinstance(data, Mapping):
            raise LawFitError(f"a stored law must be a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise LawFitError(
                f"stored law has format_version {version!r}, but this version of perflaw "
                f"reads only format_version {FORMAT_VERSION}"
            )
        try:
            form = get_form(data["form"])
            names = form.param_names
            bootstrap = np.asarray(data["bootstrap"]["params"], dtype=float)
            bootstrap = bootstrap.reshape(-1, len(names))
            diagnostics = dict(data["diagnostics"])
            for key in ("cost", "r2", "rmse", "mape_percent", "loo_mape_percent", "loo_rmse"):
                diagnostics[key] = _float(diagnostics[key])
            return cls(
                form=form.name,
                settings=form.resolve_settings(data["settings"]),
                metric=str(data["metric"]),
                params={name: _float(data["params"][name]) for name in names},
                stderr={key: _float(value) for key, value in data["stderr"].items()},
                fixed_params={key: float(value) for key, value in data["fixed_params"].items()},
                folded_inputs=tuple(data["folded_inputs"]),
                diagnostics=FitDiagnostics(**diagnostics),
                observations=Observations.from_dict(data["observations"]),
                warnings=tuple(data["warnings"]),
                bootstrap_params=bootstrap,
                bootstrap_residuals=np.asarray(data["bootstrap"]["residuals"], dtype=float),
            )
        except LawFitError:
            raise
        except LawFormError as error:
            raise LawFitError(f"invalid stored law: {error}") from error
        except (KeyError, TypeError, ValueError) as error:
            raise LawFitError(f"invalid stored law: {error!r}") from error
