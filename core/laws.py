"""Law forms: formulas that map a model size and a data term to one quality metric.

A form declares its parameter names, the bounds the fitter keeps them in, the ranges its
starting points are drawn from, and a vectorised function

    function(params, n_layers, d_model, d_prime, **settings) -> y

where every entry of ``params`` and every input may be a scalar or an array, and the result
broadcasts them with NumPy rules. The fitter (core.fitting) never looks inside a form, so a
new form is added by calling ``register_form`` or decorating its function with ``law_form``.

Notation follows Shen et al., "Predictive Models in Sequential Recommendations: Bridging
Performance Laws with Data Quality Insights" (arXiv 2412.00430, 2024): N = n_layers,
d = d_model, D' = tokens x Approximate Entropy of the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

INPUT_NAMES = ("n_layers", "d_model", "d_prime")
"""The law inputs, in the order every form function takes them."""

LawFunction = Callable[..., np.ndarray]


class LawFormError(ValueError):
    """A form is unknown, badly declared, or given an invalid setting."""


@dataclass(frozen=True)
class LawForm:
    """A registered law form.

    Attributes:
        name: registry key, e.g. "performance_law".
        formula: the formula in plain text, for docs and API responses.
        param_names: every parameter, in the order fits report them.
        bounds: parameter -> (lower, upper); the fitter never leaves these.
        start_ranges: parameter -> (low, high) inside the bounds; starting points are drawn
            from these ranges.
        function: the vectorised formula, called as
            function(params, n_layers, d_model, d_prime, **settings).
        gradient: optional partial derivatives of the formula, called like function and
            returning {parameter: dy/dparameter}, each broadcastable to the inputs. Without
            it, the fitter uses finite differences, which take about p times as many
            function evaluations.
        start_sampler: optional map from Latin-hypercube coordinates to starting values,
            called as start_sampler(unit, inputs, **settings), where unit maps each free
            parameter to an array of coordinates in [0, 1) and inputs maps each input name
            to its observed values. It returns {parameter: values} for the parameters it
            places; the others are spread linearly over their start ranges.
        folds: input name -> {parameter: value}. When every observation shares one value of
            that input, its term is a constant. The fitter then fixes these parameters at
            these values, which make the term zero or constant, and the intercept absorbs
            it. An input with no entry cannot be folded and must vary.
        linear_params: parameters the formula is affine in. The fitter solves for them by
            linear least squares at every starting point, which makes starts much better.
        intercept: the additive constant that absorbs folded terms, or None.
        default_settings: fixed constants of the form that are not fitted, e.g. xi.
        setting_bounds: setting -> (lower, upper), inclusive.
        description: one paragraph for users.
    """

    name: str
    formula: str
    param_names: tuple[str, ...]
    bounds: Mapping[str, tuple[float, float]]
    start_ranges: Mapping[str, tuple[float, float]]
    function: LawFunction
    gradient: LawFunction | None = None
    start_sampler: Callable[..., Mapping[str, np.ndarray]] | None = None
    folds: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    linear_params: tuple[str, ...] = ()
    intercept: str | None = None
    default_settings: Mapping[str, float] = field(default_factory=dict)
    setting_bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        check_form_declaration(self)
        # Freeze the mappings so a registered form cannot be changed through a reference.
        for name in ("bounds", "start_ranges", "default_settings", "setting_bounds"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        frozen_folds = {key: MappingProxyType(dict(value)) for key, value in self.folds.items()}
        object.__setattr__(self, "folds", MappingProxyType(frozen_folds))

    def resolve_settings(self, overrides: Mapping[str, float] | None = None) -> dict[str, float]:
        """Return the default settings updated with overrides, validated.

        Raises:
            LawFormError: an override names an unknown setting or is out of its bounds.
        """
        settings = dict(self.default_settings)
        for key, value in (overrides or {}).items():
            if key not in settings:
                raise LawFormError(
                    f"form {self.name!r} has no setting {key!r}; "
                    f"its settings are {sorted(settings) or 'none'}"
                )
            value = float(value)
            lower, upper = self.setting_bounds.get(key, (-math.inf, math.inf))
            if not (math.isfinite(value) and lower <= value <= upper):
                raise LawFormError(
                    f"setting {key} of form {self.name!r} must be finite and in "
                    f"[{lower:g}, {upper:g}], got {value!r}"
                )
            settings[key] = value
        return settings

    def evaluate(
        self,
        params: Mapping[str, Any],
        n_layers: Any,
        d_model: Any,
        d_prime: Any,
        settings: Mapping[str, float] | None = None,
    ) -> np.ndarray:
        """Evaluate the formula with NumPy broadcasting over params and inputs.

        Raises:
            LawFormError: a parameter is missing.
        """
        missing = [name for name in self.param_names if name not in params]
        if missing:
            raise LawFormError(f"form {self.name!r} is missing parameters {missing}")
        resolved = self.resolve_settings(settings)
        values = self.function(
            params,
            np.asarray(n_layers, dtype=float),
            np.asarray(d_model, dtype=float),
            np.asarray(d_prime, dtype=float),
            **resolved,
        )
        return np.asarray(values, dtype=float)

    def to_dict(self) -> dict[str, Any]:
        """Describe the form as JSON-ready data (the function itself is not included)."""
        return {
            "name": self.name,
            "formula": self.formula,
            "description": self.description,
            "param_names": list(self.param_names),
            "bounds": {key: list(value) for key, value in self.bounds.items()},
            "start_ranges": {key: list(value) for key, value in self.start_ranges.items()},
            "folds": {key: dict(value) for key, value in self.folds.items()},
            "linear_params": list(self.linear_params),
            "intercept": self.intercept,
            "default_settings": dict(self.default_settings),
        }


def check_form_declaration(form: LawForm) -> None:
    """Raise LawFormError unless the declaration of form is consistent."""
    if not form.name or not form.name.isidentifier():
        raise LawFormError(f"form name must be a Python identifier, got {form.name!r}")
    if not form.param_names or len(set(form.param_names)) != len(form.param_names):
        raise LawFormError(f"form {form.name!r}: param_names must be non-empty and unique")
    known = set(form.param_names)

    for label, ranges in (("bounds", form.bounds), ("start_ranges", form.start_ranges)):
        if set(ranges) != known:
            raise LawFormError(
                f"form {form.name!r}: {label} must cover exactly {sorted(known)}, "
                f"got {sorted(ranges)}"
            )
        for param, (low, high) in ranges.items():
            if not low < high:
                raise LawFormError(f"form {form.name!r}: {label}[{param!r}] = {(low, high)}")
    for param, (low, high) in form.start_ranges.items():
        lower, upper = form.bounds[param]
        if low < lower or high > upper:
            raise LawFormError(
                f"form {form.name!r}: start range of {param!r} {(low, high)} "
                f"is not inside its bounds {(lower, upper)}"
            )

    for input_name, fixed in form.folds.items():
        if input_name not in INPUT_NAMES:
            raise LawFormError(
                f"form {form.name!r}: folds name unknown input {input_name!r}; "
                f"inputs are {INPUT_NAMES}"
            )
        if not set(fixed) <= known:
            raise LawFormError(
                f"form {form.name!r}: fold of {input_name} fixes unknown parameters "
                f"{sorted(set(fixed) - known)}"
            )
    if not set(form.linear_params) <= known:
        raise LawFormError(f"form {form.name!r}: linear_params names unknown parameters "
                           f"{sorted(set(form.linear_params) - known)}")
    if form.intercept is not None and form.intercept not in known:
        raise LawFormError(
            f"form {form.name!r}: intercept {form.intercept!r} is not one of its parameters")
    if set(form.setting_bounds) - set(form.default_settings):
        raise LawFormError(f"form {form.name!r}: setting_bounds names unknown settings "
                           f"{sorted(set(form.setting_bounds) - set(form.default_settings))}")


_REGISTRY: dict[str, LawForm] = {}


def register_form(form: LawForm, *, replace: bool = False) -> LawForm:
    """Add form to the registry and return it.

    Raises:
        LawFormError: a form of that name is registered and replace is False.
    """
    if form.name in _REGISTRY and not replace:
        raise LawFormError(f"a law form named {form.name!r} is already registered")
    _REGISTRY[form.name] = form
    return form


def unregister_form(name: str) -> None:
    """Remove the form called name from the registry.

    Raises:
        LawFormError: no such form is registered.
    """
    get_form(name)
    del _REGISTRY[name]


def law_form(**declaration: Any) -> Callable[[LawFunction], LawFunction]:
    """Register the decorated function as a law form.

    The keyword arguments are the LawForm fields other than ``function``, plus ``replace``
    (see register_form). The function is returned unchanged, so it stays callable alone.
    A gradient is passed as ``gradient=`` and must be defined before the decorator runs.
    """

    replace = bool(declaration.pop("replace", False))

    def decorate(function: LawFunction) -> LawFunction:
        register_form(LawForm(function=function, **declaration), replace=replace)
        return function

    return decorate


def get_form(name: str) -> LawForm:
    """Return the registered form called name.

    Raises:
        LawFormError: no such form is registered.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LawFormError(
            f"unknown law form {name!r}; registered forms are {list_forms()}"
        ) from None


def list_forms() -> list[str]:
    """Return the names of the registered forms, sorted."""
    return sorted(_REGISTRY)


def performance_term(x: np.ndarray, k: Any, xi: float) -> np.ndarray:
    """Compute g(x; k) = -1 / (xi x^k) - k ln x, the building block of the Performance Law.

    For k > 0 and x >= 1, g falls as x grows. For k < 0, g rises until x^(-k) = xi and then
    falls, which is how the law expresses the decline of overly large models.
    """
    return -1.0 / (xi * np.power(x, k)) - k * np.log(x)


def performance_law_gradient(
    params: Mapping[str, Any],
    n_layers: np.ndarray,
    d_model: np.ndarray,
    d_prime: np.ndarray,
    *,
    xi: float = 2.0,
) -> dict[str, np.ndarray]:
    """Return the partial derivatives of the Performance Law.

    With dg/dk (x; k) = ln x (1 / (xi x^k) - 1): dy/dw1 = g(N; a), dy/da = w1 dg/dk (N; a),
    and likewise for w2, b and c; dy/de = 1.
    """

    def term_slope(x: np.ndarray, k: Any) -> np.ndarray:
        return np.log(x) * (1.0 / (xi * np.power(x, k)) - 1.0)

    return {
        "w1": performance_term(n_layers, params["a"], xi),
        "a": params["w1"] * term_slope(n_layers, params["a"]),
        "w2": performance_term(d_model, params["b"], xi),
        "b": params["w2"] * term_slope(d_model, params["b"]),
        "c": term_slope(d_prime, params["c"]),
        "e": np.ones_like(np.asarray(params["e"], dtype=float)),
    }


PEAK_START_SHARE = 0.5
"""Share of Performance Law starts whose exponents put the peak of g near the data."""


def performance_law_starts(
    unit: Mapping[str, np.ndarray],
    inputs: Mapping[str, np.ndarray],
    *,
    xi: float = 2.0,
) -> dict[str, np.ndarray]:
    """Map Latin-hypercube coordinates to starting exponents a, b and c.

    For k < 0, g(x; k) peaks at x* = xi^(-1/k), so the exponents that put the peak inside
    a wide input range form a narrow band (for D' from 1e5 to 1e7 with xi = 2, about
    -0.06 < c < -0.04). Uniform starts over [-1, 1] rarely land there. A coordinate below
    PEAK_START_SHARE therefore sets ln x* uniformly within one unit of the observed range
    of ln x, and k = -ln(xi) / ln x*. The other coordinates spread k uniformly over the
    start range.
    """
    starts = {}
    for param, input_name in (("a", "n_layers"), ("b", "d_model"), ("c", "d_prime")):
        if param not in unit:
            continue
        coordinate = np.asarray(unit[param], dtype=float)
        log_x = np.log(inputs[input_name])
        # The peak must lie above x = 1, where ln x* > 0 keeps k finite.
        low = max(float(log_x.min()) - 1.0, 0.1)
        high = max(float(log_x.max()) + 1.0, low + 0.1)
        peak_share = np.clip(coordinate / PEAK_START_SHARE, 0.0, 1.0)
        peak_exponent = -math.log(xi) / (low + peak_share * (high - low))
        uniform_share = (coordinate - PEAK_START_SHARE) / (1.0 - PEAK_START_SHARE)
        start_low, start_high = _PERFORMANCE_START_RANGES[param]
        broad_exponent = start_low + np.clip(uniform_share, 0.0, 1.0) * (start_high - start_low)
        starts[param] = np.where(coordinate < PEAK_START_SHARE, peak_exponent, broad_exponent)
    return starts


_PERFORMANCE_START_RANGES = {
    "w1": (-1.0, 1.0),
    "a": (-1.0, 1.0),
    "w2": (-1.0, 1.0),
    "b": (-1.0, 1.0),
    "c": (-0.2, 0.2),
    "e": (-1.0, 2.0),
}


@law_form(
    name="performance_law",
    gradient=performance_law_gradient,
    start_sampler=performance_law_starts,
    formula="y = w1 g(N; a) + w2 g(d; b) + g(D'; c) + e,  g(x; k) = -1/(xi x^k) - k ln x",
    description=(
        "The Performance Law of Shen et al. (arXiv 2412.00430, 2024): N is the number of "
        "transformer blocks, d the hidden width and D' = tokens x ApEn the data term. xi is "
        "a fixed setting (2 by default). A negative exponent lets a term rise and then fall."
    ),
    param_names=("w1", "a", "w2", "b", "c", "e"),
    bounds={
        "w1": (-100.0, 100.0),
        "a": (-3.0, 3.0),
        "w2": (-100.0, 100.0),
        "b": (-3.0, 3.0),
        "c": (-1.0, 1.0),
        "e": (-100.0, 100.0),
    },
    start_ranges=_PERFORMANCE_START_RANGES,
    # w1 = 0 or w2 = 0 removes a term (a and b then do nothing and are pinned at 1).
    # The D' term has no weight, but g(D'; 0) = -1/xi for every D', so c = 0 makes it
    # a constant that e absorbs.
    folds={
        "n_layers": {"w1": 0.0, "a": 1.0},
        "d_model": {"w2": 0.0, "b": 1.0},
        "d_prime": {"c": 0.0},
    },
    linear_params=("w1", "w2", "e"),
    intercept="e",
    default_settings={"xi": 2.0},
    setting_bounds={"xi": (1e-6, 1e6)},
)
def performance_law(
    params: Mapping[str, Any],
    n_layers: np.ndarray,
    d_model: np.ndarray,
    d_prime: np.ndarray,
    *,
    xi: float = 2.0,
) -> np.ndarray:
    """Evaluate y = w1 g(N; a) + w2 g(d; b) + g(D'; c) + e (see performance_term)."""
    return (
        params["w1"] * performance_term(n_layers, params["a"], xi)
        + params["w2"] * performance_term(d_model, params["b"], xi)
        + performance_term(d_prime, params["c"], xi)
        + params["e"]
    )


def scaling_law_gradient(
    params: Mapping[str, Any],
    n_layers: np.ndarray,
    d_model: np.ndarray,
    d_prime: np.ndarray,
) -> dict[str, np.ndarray]:
    """Return the partial derivatives of the scaling law, e.g. dy/da = A N^(-a) ln N."""
    n_power = np.power(n_layers, -params["a"])
    d_power = np.power(d_model, -params["b"])
    data_power = np.power(d_prime, -params["c"])
    return {
        "e": np.ones_like(np.asarray(params["e"], dtype=float)),
        "A": -n_power,
        "a": params["A"] * n_power * np.log(n_layers),
        "B": -d_power,
        "b": params["B"] * d_power * np.log(d_model),
        "C": -data_power,
        "c": params["C"] * data_power * np.log(d_prime),
    }


@law_form(
    name="scaling_law",
    gradient=scaling_law_gradient,
    formula="y = e - A N^(-a) - B d^(-b) - C D'^(-c)",
    description=(
        "A saturating power law in each input, the baseline that the Performance Law is "
        "compared with: the metric approaches e as N, d and D' grow, and never declines."
    ),
    param_names=("e", "A", "a", "B", "b", "C", "c"),
    bounds={
        "e": (-10.0, 10.0),
        "A": (0.0, 1e3),
        "a": (0.0, 3.0),
        "B": (0.0, 1e3),
        "b": (0.0, 3.0),
        "C": (0.0, 1e3),
        "c": (0.0, 3.0),
    },
    start_ranges={
        "e": (0.0, 1.0),
        "A": (0.0, 1.0),
        "a": (0.05, 1.5),
        "B": (0.0, 1.0),
        "b": (0.05, 1.5),
        "C": (0.0, 10.0),
        "c": (0.05, 1.0),
    },
    # A zero coefficient removes the term; its exponent then does nothing and is pinned at 1.
    folds={
        "n_layers": {"A": 0.0, "a": 1.0},
        "d_model": {"B": 0.0, "b": 1.0},
        "d_prime": {"C": 0.0, "c": 1.0},
    },
    linear_params=("e", "A", "B", "C"),
    intercept="e",
)
def scaling_law(
    params: Mapping[str, Any],
    n_layers: np.ndarray,
    d_model: np.ndarray,
    d_prime: np.ndarray,
) -> np.ndarray:
    """Evaluate y = e - A N^(-a) - B d^(-b) - C D'^(-c)."""
    return (
        params["e"]
        - params["A"] * np.power(n_layers, -params["a"])
        - params["B"] * np.power(d_model, -params["b"])
        - params["C"] * np.power(d_prime, -params["c"])
    )
