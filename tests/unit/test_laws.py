"""Tests of the law-form registry and the two built-in forms."""

import math

import numpy as np
import pytest

from core.laws import (
    INPUT_NAMES,
    LawForm,
    LawFormError,
    get_form,
    law_form,
    list_forms,
    performance_law_starts,
    performance_term,
    register_form,
    unregister_form,
)

PERFORMANCE_PARAMS = {"w1": 0.1, "a": -0.5, "w2": 0.5, "b": -0.15, "c": -0.03, "e": 0.9}
SCALING_PARAMS = {"e": 0.4, "A": 0.1, "a": 0.7, "B": 2.0, "b": 0.8, "C": 5.0, "c": 0.3}


def g(x, k, xi=2.0):
    return -1.0 / (xi * x**k) - k * math.log(x)


@pytest.fixture
def temporary_forms():
    """Unregister every form a test registers."""
    before = set(list_forms())
    yield
    for name in set(list_forms()) - before:
        unregister_form(name)


def test_registry_lists_builtin_forms():
    assert "performance_law" in list_forms()
    assert "scaling_law" in list_forms()


def test_unknown_form_names_registered_ones():
    with pytest.raises(LawFormError, match="unknown law form 'power'.*performance_law"):
        get_form("power")


def test_performance_law_matches_hand_value():
    form = get_form("performance_law")
    expected = (0.1 * g(4, -0.5) + 0.5 * g(128, -0.15) + g(1e6, -0.03) + 0.9)
    value = form.evaluate(PERFORMANCE_PARAMS, 4, 128, 1e6)
    assert value == pytest.approx(expected, rel=1e-12)


def test_performance_law_xi_setting_changes_value():
    form = get_form("performance_law")
    expected = (0.1 * g(4, -0.5, 3.0) + 0.5 * g(128, -0.15, 3.0) + g(1e6, -0.03, 3.0) + 0.9)
    value = form.evaluate(PERFORMANCE_PARAMS, 4, 128, 1e6, settings={"xi": 3.0})
    assert value == pytest.approx(expected, rel=1e-12)


def test_scaling_law_matches_hand_value():
    form = get_form("scaling_law")
    expected = 0.4 - 0.1 * 4**-0.7 - 2.0 * 128**-0.8 - 5.0 * 1e6**-0.3
    assert form.evaluate(SCALING_PARAMS, 4, 128, 1e6) == pytest.approx(expected, rel=1e-12)


def test_performance_term_zero_exponent_is_constant():
    x = np.geomspace(1, 1e8, 9)
    np.testing.assert_allclose(performance_term(x, 0.0, 2.0), -0.5)


def test_performance_term_negative_exponent_peaks():
    # For k < 0, g(x; k) peaks where x^(-k) = xi.
    k, xi = -0.5, 2.0
    peak = xi ** (1 / -k)
    x = np.array([peak / 2, peak, peak * 2])
    values = performance_term(x, k, xi)
    assert values[1] > values[0]
    assert values[1] > values[2]


def test_performance_term_positive_exponent_falls():
    values = performance_term(np.array([1.0, 10.0, 100.0]), 0.3, 2.0)
    assert np.all(np.diff(values) < 0)


@pytest.mark.parametrize("name, params", [("performance_law", PERFORMANCE_PARAMS),
                                          ("scaling_law", SCALING_PARAMS)])
def test_gradient_matches_finite_differences(name, params):
    form = get_form(name)
    n_layers = np.array([1.0, 3.0, 8.0])
    d_model = np.array([32.0, 100.0, 512.0])
    d_prime = np.array([1e5, 2e6, 3e7])
    gradient = form.gradient(params, n_layers, d_model, d_prime, **form.default_settings)
    for param in form.param_names:
        step = 1e-6 * max(1.0, abs(params[param]))
        up = dict(params, **{param: params[param] + step})
        down = dict(params, **{param: params[param] - step})
        numeric = (form.evaluate(up, n_layers, d_model, d_prime)
                   - form.evaluate(down, n_layers, d_model, d_prime)) / (2 * step)
        analytic = np.broadcast_to(gradient[param], numeric.shape)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9, err_msg=param)


@pytest.mark.parametrize("name, params", [("performance_law", PERFORMANCE_PARAMS),
                                          ("scaling_law", SCALING_PARAMS)])
def test_evaluate_broadcasts_parameter_columns(name, params):
    form = get_form(name)
    stacked = {key: np.array([[value], [value * 1.1]]) for key, value in params.items()}
    n_layers = np.array([1.0, 2.0, 4.0, 8.0])
    values = form.evaluate(stacked, n_layers, 64.0, 1e6)
    assert values.shape == (2, 4)
    np.testing.assert_allclose(values[0], form.evaluate(params, n_layers, 64.0, 1e6))


@pytest.mark.parametrize("name, params", [("performance_law", PERFORMANCE_PARAMS),
                                          ("scaling_law", SCALING_PARAMS)])
@pytest.mark.parametrize("input_name", INPUT_NAMES)
def test_fold_makes_term_constant(name, params, input_name):
    form = get_form(name)
    folded = dict(params, **form.folds[input_name])
    inputs = {"n_layers": 4.0, "d_model": 128.0, "d_prime": 1e6}
    inputs[input_name] = np.geomspace(1, 1e7, 8)
    values = form.evaluate(folded, inputs["n_layers"], inputs["d_model"], inputs["d_prime"])
    np.testing.assert_allclose(values, values[0], rtol=0, atol=1e-12)


def test_forms_are_affine_in_linear_params():
    for name, params in (("performance_law", PERFORMANCE_PARAMS),
                         ("scaling_law", SCALING_PARAMS)):
        form = get_form(name)
        for param in form.linear_params:
            values = [form.evaluate(dict(params, **{param: scale}), 3.0, 96.0, 5e5)
                      for scale in (0.0, 1.0, 2.0)]
            assert values[2] - values[1] == pytest.approx(values[1] - values[0], abs=1e-12)


def test_missing_parameter_raises():
    form = get_form("scaling_law")
    params = dict(SCALING_PARAMS)
    del params["C"]
    with pytest.raises(LawFormError, match="missing parameters \\['C'\\]"):
        form.evaluate(params, 1, 1, 1)


def test_unknown_setting_raises():
    with pytest.raises(LawFormError, match="no setting 'zeta'"):
        get_form("performance_law").resolve_settings({"zeta": 1.0})


def test_non_positive_xi_raises():
    with pytest.raises(LawFormError, match="setting xi"):
        get_form("performance_law").resolve_settings({"xi": 0.0})


def test_decorator_registers_new_form(temporary_forms):
    @law_form(
        name="log_linear",
        formula="y = e + s ln N",
        param_names=("e", "s"),
        bounds={"e": (-5.0, 5.0), "s": (-1.0, 1.0)},
        start_ranges={"e": (0.0, 1.0), "s": (-0.1, 0.1)},
    )
    def log_linear(params, n_layers, d_model, d_prime):
        return params["e"] + params["s"] * np.log(n_layers)

    form = get_form("log_linear")
    assert form.function is log_linear
    assert form.evaluate({"e": 0.2, "s": 0.1}, math.e, 1, 1) == pytest.approx(0.3)


def test_duplicate_registration_raises(temporary_forms):
    form = get_form("scaling_law")
    with pytest.raises(LawFormError, match="already registered"):
        register_form(form)


def test_register_replace_allows_same_name(temporary_forms):
    form = get_form("scaling_law")
    assert register_form(form, replace=True) is form


@pytest.mark.parametrize("change, message", [
    ({"start_ranges": {"e": (0.0, 20.0)}}, "not inside its bounds"),
    ({"bounds": {"e": (1.0, 0.0)}}, "bounds\\['e'\\]"),
    ({"folds": {"width": {"e": 0.0}}}, "unknown input 'width'"),
    ({"folds": {"n_layers": {"z": 0.0}}}, "unknown parameters \\['z'\\]"),
    ({"linear_params": ("z",)}, "linear_params"),
    ({"name": "not a name"}, "identifier"),
])
def test_bad_declaration_raises(change, message):
    declaration = {
        "name": "checked",
        "formula": "y = e",
        "param_names": ("e",),
        "bounds": {"e": (-1.0, 1.0)},
        "start_ranges": {"e": (0.0, 0.5)},
        "function": lambda params, n_layers, d_model, d_prime: params["e"] + 0 * n_layers,
    }
    declaration.update(change)
    with pytest.raises(LawFormError, match=message):
        LawForm(**declaration)


def test_registered_form_is_read_only():
    form = get_form("performance_law")
    with pytest.raises(TypeError):
        form.bounds["a"] = (0.0, 1.0)


def test_peak_starts_put_peak_near_data():
    inputs = {"n_layers": np.array([1.0, 8.0]), "d_model": np.array([32.0, 512.0]),
              "d_prime": np.array([1e5, 1e7])}
    unit = {"b": np.linspace(0.0, 0.49, 50)}
    exponents = performance_law_starts(unit, inputs, xi=2.0)["b"]
    peaks = 2.0 ** (-1.0 / exponents)
    assert np.all(exponents < 0)
    assert peaks.min() >= 32.0 / math.e * 0.999
    assert peaks.max() <= 512.0 * math.e * 1.001


def test_peak_starts_spread_other_coordinates_over_range():
    inputs = {"n_layers": np.array([1.0, 8.0]), "d_model": np.array([32.0, 512.0]),
              "d_prime": np.array([1e5, 1e7])}
    exponents = performance_law_starts({"c": np.array([0.5, 0.75, 0.999999])}, inputs)["c"]
    np.testing.assert_allclose(exponents, [-0.2, 0.0, 0.2], atol=1e-5)


def test_form_to_dict_is_json_ready():
    import json

    data = get_form("performance_law").to_dict()
    assert json.loads(json.dumps(data))["param_names"] == ["w1", "a", "w2", "b", "c", "e"]
    assert data["default_settings"] == {"xi": 2.0}
