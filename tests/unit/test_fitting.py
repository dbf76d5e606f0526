"""Tests of fit_law and FittedLaw: recovery, diagnostics, intervals, storage and errors."""

import json
import math

import numpy as np
import pytest
from scipy.optimize import curve_fit

from core.fitting import (
    FittedLaw,
    LawFitError,
    LawInputError,
    Observations,
    draw_starting_points,
    fit_law,
)
from core.laws import get_form, law_form, list_forms, unregister_form

PERFORMANCE_TRUTH = {"w1": 0.1, "a": -0.5, "w2": 0.5, "b": -0.15, "c": -0.03, "e": 0.9}
SCALING_TRUTH = {"e": 0.5, "A": 0.1, "a": 0.7, "B": 2.0, "b": 0.8, "C": 1.0, "c": 0.3}
NOISE_SD = 0.003


def grid(layers=(1, 2, 4, 8), widths=(32, 64, 128, 256, 512),
         d_primes=(1e4, 1e5, 1e6, 1e7, 1e8)):
    n_layers, d_model, d_prime = np.meshgrid(layers, widths, d_primes, indexing="ij")
    return n_layers.ravel(), d_model.ravel(), d_prime.ravel()


def synthetic(form, truth, seed, noise_sd=NOISE_SD, **grid_args):
    n_layers, d_model, d_prime = grid(**grid_args)
    clean = get_form(form).evaluate(truth, n_layers, d_model, d_prime)
    noise = np.random.default_rng(seed).normal(0.0, noise_sd, len(clean))
    return Observations(n_layers, d_model, d_prime, clean + noise)


@pytest.fixture(scope="module")
def one_dataset_law():
    """A Performance Law fitted on one dataset (D' folded), with bootstrap."""
    observations = synthetic("performance_law", PERFORMANCE_TRUTH, seed=1,
                             widths=(32, 64, 128, 256), d_primes=(1e6,))
    return fit_law(observations, metric="ndcg@10", n_bootstrap=60, n_starts=8)


@pytest.fixture
def temporary_forms():
    before = set(list_forms())
    yield
    for name in set(list_forms()) - before:
        unregister_form(name)


@pytest.mark.parametrize("form, truth", [("performance_law", PERFORMANCE_TRUTH),
                                         ("scaling_law", SCALING_TRUTH)])
def test_recovers_true_parameters(form, truth):
    observations = synthetic(form, truth, seed=3)
    law = fit_law(observations, form, n_bootstrap=0, leave_one_out=False)
    for name, value in truth.items():
        error = abs(law.params[name] - value)
        assert error <= 3 * law.stderr[name], (name, law.params[name], law.stderr[name])
    assert law.diagnostics.r2 > 0.9
    assert law.diagnostics.rmse == pytest.approx(NOISE_SD, rel=0.25)
    assert law.folded_inputs == ()


def test_fit_cost_not_above_curve_fit():
    observations = synthetic("performance_law", PERFORMANCE_TRUTH, seed=5,
                             d_primes=(1e5, 1e6, 1e7))
    law = fit_law(observations, n_bootstrap=0, leave_one_out=False, n_starts=4)
    form = get_form("performance_law")
    names = form.param_names
    lower = [form.bounds[name][0] for name in names]
    upper = [form.bounds[name][1] for name in names]
    inputs = np.vstack([observations.n_layers, observations.d_model, observations.d_prime])

    def model(x, *values):
        return form.evaluate(dict(zip(names, values)), x[0], x[1], x[2])

    starts = draw_starting_points(observations, n_starts=4)
    assert len(starts) == 4
    best_curve_fit = math.inf
    for start in starts:
        try:
            fitted, _ = curve_fit(model, inputs, observations.y,
                                  p0=[start[name] for name in names], bounds=(lower, upper),
                                  max_nfev=1000)
        except RuntimeError:
            continue
        residuals = model(inputs, *fitted) - observations.y
        best_curve_fit = min(best_curve_fit, 0.5 * float(np.sum(residuals**2)))
    assert law.diagnostics.cost <= best_curve_fit * (1 + 1e-7)


def test_one_d_prime_is_folded(one_dataset_law):
    law = one_dataset_law
    assert law.folded_inputs == ("d_prime",)
    assert law.fixed_params == {"c": 0.0}
    assert "c" not in law.stderr
    assert any("d_prime" in warning and "folded" in warning for warning in law.warnings)
    assert law.predict(4, 64, 1e3) == pytest.approx(law.predict(4, 64, 1e9))


def test_folded_input_is_flagged_elsewhere(one_dataset_law):
    flags = one_dataset_law.extrapolation_flags([2, 16], 64, [1e6, 2e6])
    assert flags["n_layers"].tolist() == [False, True]
    assert flags["d_model"].tolist() == [False, False]
    assert flags["d_prime"].tolist() == [False, True]


def test_diagnostics_are_consistent(one_dataset_law):
    diagnostics = one_dataset_law.diagnostics
    observations = one_dataset_law.observations
    fitted = one_dataset_law.predict(observations.n_layers, observations.d_model,
                                     observations.d_prime)
    residuals = observations.y - fitted
    assert diagnostics.n_observations == 16
    assert diagnostics.n_free_params == 5
    assert diagnostics.rmse == pytest.approx(math.sqrt(np.mean(residuals**2)))
    assert diagnostics.mape_percent == pytest.approx(
        100 * np.mean(np.abs(residuals) / observations.y))
    assert diagnostics.cost == pytest.approx(0.5 * np.sum(residuals**2))
    assert math.isfinite(diagnostics.loo_mape_percent)
    assert diagnostics.loo_mape_percent > 0
    assert diagnostics.n_bootstrap == 60


def test_prediction_interval_contains_fit(one_dataset_law):
    n_layers = np.array([1, 2, 4, 8])
    low, high = one_dataset_law.predict_interval(n_layers, 64, 1e6, level=0.9)
    predicted = one_dataset_law.predict(n_layers, 64, 1e6)
    assert low.shape == (4,)
    assert np.all(low < predicted)
    assert np.all(predicted < high)


def test_confidence_interval_narrower_than_prediction(one_dataset_law):
    low, high = one_dataset_law.predict_interval(4, 128, 1e6, kind="prediction")
    mean_low, mean_high = one_dataset_law.predict_interval(4, 128, 1e6, kind="confidence")
    assert mean_high - mean_low < high - low


def test_wider_level_gives_wider_interval(one_dataset_law):
    narrow = one_dataset_law.predict_interval(4, 128, 1e6, level=0.5)
    wide = one_dataset_law.predict_interval(4, 128, 1e6, level=0.95)
    assert wide[0] < narrow[0]
    assert wide[1] > narrow[1]


def test_parameter_intervals_cover_estimates(one_dataset_law):
    intervals = one_dataset_law.parameter_intervals(0.9)
    assert set(intervals) == {"w1", "a", "w2", "b", "e"}
    for name, (low, high) in intervals.items():
        assert low < one_dataset_law.params[name] < high, name


def test_interval_requires_bootstrap():
    observations = synthetic("scaling_law", SCALING_TRUTH, seed=2, d_primes=(1e6,))
    law = fit_law(observations, "scaling_law", n_bootstrap=0, n_starts=4)
    with pytest.raises(LawFitError, match="n_bootstrap > 0"):
        law.predict_interval(2, 64, 1e6)
    with pytest.raises(LawFitError, match="n_bootstrap > 0"):
        law.parameter_intervals()


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5])
def test_interval_level_is_checked(one_dataset_law, level):
    with pytest.raises(LawInputError, match="level"):
        one_dataset_law.predict_interval(2, 64, 1e6, level=level)


def test_predict_rejects_non_positive_input(one_dataset_law):
    with pytest.raises(LawInputError, match="d_model must be positive"):
        one_dataset_law.predict(2, [64, 0], 1e6)


def test_predict_broadcasts_inputs(one_dataset_law):
    values = one_dataset_law.predict(np.array([[1], [2]]), np.array([32, 64, 128]), 1e6)
    assert values.shape == (2, 3)


def test_json_round_trip_keeps_predictions(one_dataset_law):
    text = json.dumps(one_dataset_law.to_dict(), allow_nan=False)
    restored = FittedLaw.from_dict(json.loads(text))
    n_layers, d_model = np.array([1, 3, 8]), np.array([32, 100, 256])
    np.testing.assert_array_equal(restored.predict(n_layers, d_model, 1e6),
                                  one_dataset_law.predict(n_layers, d_model, 1e6))
    np.testing.assert_array_equal(restored.predict_interval(n_layers, d_model, 1e6)[0],
                                  one_dataset_law.predict_interval(n_layers, d_model, 1e6)[0])
    assert restored.stderr == one_dataset_law.stderr
    assert restored.diagnostics == one_dataset_law.diagnostics
    assert restored.warnings == one_dataset_law.warnings
    assert restored.folded_inputs == one_dataset_law.folded_inputs


def test_json_stores_nan_as_null():
    observations = synthetic("scaling_law", SCALING_TRUTH, seed=2, layers=(1, 2, 4, 8, 16),
                             widths=(64,), d_primes=(1e6,))
    law = fit_law(observations, "scaling_law", n_bootstrap=0, n_starts=4)
    data = law.to_dict()
    json.dumps(data, allow_nan=False)
    restored = FittedLaw.from_dict(data)
    assert restored.predict(3, 64, 1e6) == pytest.approx(law.predict(3, 64, 1e6))


def test_from_dict_rejects_other_version(one_dataset_law):
    data = one_dataset_law.to_dict()
    data["format_version"] = 99
    with pytest.raises(LawFitError, match="format_version 99"):
        FittedLaw.from_dict(data)


def test_from_dict_rejects_missing_key(one_dataset_law):
    data = one_dataset_law.to_dict()
    del data["params"]
    with pytest.raises(LawFitError, match="invalid stored law"):
        FittedLaw.from_dict(data)


def test_same_seed_gives_same_law():
    observations = synthetic("scaling_law", SCALING_TRUTH, seed=4, d_primes=(1e6,))
    first = fit_law(observations, "scaling_law", n_bootstrap=10, n_starts=4, seed=7)
    second = fit_law(observations, "scaling_law", n_bootstrap=10, n_starts=4, seed=7)
    assert first.params == second.params
    np.testing.assert_array_equal(first.bootstrap_params, second.bootstrap_params)


def test_robust_loss_resists_outlier():
    observations = synthetic("scaling_law", SCALING_TRUTH, seed=6, d_primes=(1e6,),
                             noise_sd=0.001)
    y = observations.y.copy()
    y[5] += 0.1
    corrupted = Observations(observations.n_layers, observations.d_model,
                             observations.d_prime, y)
    clean_law = fit_law(observations, "scaling_law", n_bootstrap=0, n_starts=4)
    linear = fit_law(corrupted, "scaling_law", n_bootstrap=0, n_starts=4)
    robust = fit_law(corrupted, "scaling_law", n_bootstrap=0, n_starts=4,
                     robust_loss="soft_l1")
    probe = (np.array([1, 4, 8]), np.array([32, 128, 512]), 1e6)
    clean = clean_law.predict(*probe)
    assert np.max(np.abs(robust.predict(*probe) - clean)) < np.max(
        np.abs(linear.predict(*probe) - clean))
    assert robust.diagnostics.loss_scale > 0
    assert robust.diagnostics.robust_loss == "soft_l1"


def test_two_distinct_values_warn():
    observations = synthetic("performance_law", PERFORMANCE_TRUTH, seed=2, layers=(2, 4),
                             d_primes=(1e6,))
    law = fit_law(observations, n_bootstrap=0, n_starts=4)
    assert any("n_layers takes only 2 distinct values" in warning for warning in law.warnings)


def test_as_many_observations_as_parameters():
    observations = synthetic("scaling_law", SCALING_TRUTH, seed=2, layers=(1, 2, 4),
                             widths=(32, 64), d_primes=(1e6,)).subset(np.arange(5))
    law = fit_law(observations, "scaling_law", n_bootstrap=20, n_starts=4)
    assert law.diagnostics.n_free_params == 5
    assert all(math.isnan(value) for value in law.stderr.values())
    assert any("standard errors are undefined" in warning for warning in law.warnings)
    assert len(law.bootstrap_params) == 0


def test_singular_jacobian_gives_nan_errors(temporary_forms):
    @law_form(
        name="redundant",
        formula="y = e1 + e2 + s ln N",
        param_names=("e1", "e2", "s"),
        bounds={"e1": (-5.0, 5.0), "e2": (-5.0, 5.0), "s": (-1.0, 1.0)},
        start_ranges={"e1": (0.0, 1.0), "e2": (0.0, 1.0), "s": (-0.1, 0.1)},
    )
    def redundant(params, n_layers, d_model, d_prime):
        return params["e1"] + params["e2"] + params["s"] * np.log(n_layers)

    observations = synthetic("scaling_law", SCALING_TRUTH, seed=2)
    law = fit_law(observations, "redundant", n_bootstrap=0, n_starts=2)
    assert all(math.isnan(value) for value in law.stderr.values())
    singular = [warning for warning in law.warnings if "singular" in warning]
    assert len(singular) == 1
    assert "e1, e2" in singular[0]


def test_new_form_fits_without_fitter_changes(temporary_forms):
    @law_form(
        name="log_linear",
        formula="y = e + s ln N + t ln d",
        param_names=("e", "s", "t"),
        bounds={"e": (-5.0, 5.0), "s": (-1.0, 1.0), "t": (-1.0, 1.0)},
        start_ranges={"e": (0.0, 1.0), "s": (-0.1, 0.1), "t": (-0.1, 0.1)},
        linear_params=("e", "s", "t"),
    )
    def log_linear(params, n_layers, d_model, d_prime):
        return params["e"] + params["s"] * np.log(n_layers) + params["t"] * np.log(d_model)

    truth = {"e": 0.1, "s": 0.02, "t": 0.03}
    n_layers, d_model, d_prime = grid(d_primes=(1e6,))
    y = log_linear(truth, n_layers, d_model, d_prime)
    observations = Observations(n_layers, d_model, np.full(len(y), 1e6), y)
    with pytest.raises(LawFitError, match="cannot fold its d_prime term"):
        fit_law(observations, "log_linear", n_bootstrap=0)
    observations = Observations(n_layers, d_model, d_prime * np.arange(1, len(y) + 1), y)
    law = fit_law(observations, "log_linear", n_bootstrap=0)
    for name, value in truth.items():
        assert law.params[name] == pytest.approx(value, abs=1e-8)


def test_too_few_observations_raise():
    with pytest.raises(LawFitError, match="3 free parameters \\(w1, a, e\\) but only 2"):
        fit_law(Observations([1, 2], [32, 32], [1e6, 1e6], [0.1, 0.2]), n_bootstrap=0)
    with pytest.raises(LawFitError, match="4 free parameters .* only 3 observations"):
        fit_law(Observations([1, 2, 4], [32, 32, 32], [1e5, 1e6, 1e7], [0.1, 0.2, 0.3]),
                n_bootstrap=0)


@pytest.mark.parametrize("arrays, message", [
    (([1, 2], [32, 64], [1e6, 1e6], [0.1, math.nan]), "finite, got y\\[1\\] = nan"),
    (([1, 2], [32, 64], [1e6, 1e6], [0.1, math.inf]), "finite, got y\\[1\\] = inf"),
    (([1, 2], [32, -64], [1e6, 1e6], [0.1, 0.2]), "d_model must be positive.*d_model\\[1\\]"),
    (([1, 0], [32, 64], [1e6, 1e6], [0.1, 0.2]), "n_layers must be positive.*n_layers\\[1\\]"),
    (([1, 2], [32, 64], [1e6, 0.0], [0.1, 0.2]), "d_prime must be positive"),
    (([1, 2], [32, 64], [1e6, 1e6], [0.1, 28.1]), "\\[0, 1\\].*percentages"),
    (([1, 2], [32, 64], [1e6, 1e6], [-0.1, 0.2]), "\\[0, 1\\]"),
    (([1, 2], [32], [1e6, 1e6], [0.1, 0.2]), "equal lengths.*d_model 1"),
    (([], [], [], []), "no observations"),
])
def test_invalid_observations_raise(arrays, message):
    with pytest.raises(LawFitError, match=message):
        Observations(*arrays)


def test_labels_length_is_checked():
    with pytest.raises(LawFitError, match="labels must have 2 entries"):
        Observations([1, 2], [32, 64], [1e6, 1e6], [0.1, 0.2], labels=("a",))


@pytest.mark.parametrize("arguments, message", [
    ({"form": "power"}, "unknown law form 'power'"),
    ({"robust_loss": "l2"}, "robust_loss must be one of"),
    ({"n_starts": 0}, "n_starts must be a positive integer"),
    ({"n_bootstrap": -1}, "n_bootstrap must be a non-negative integer"),
    ({"loss_scale": 0.0}, "loss_scale must be positive"),
    ({"form_settings": {"xi": -1.0}}, "setting xi"),
])
def test_invalid_arguments_raise(arguments, message):
    observations = synthetic("scaling_law", SCALING_TRUTH, seed=1, d_primes=(1e6,))
    with pytest.raises(LawFitError, match=message):
        fit_law(observations, **arguments)


def test_observations_must_be_observations():
    with pytest.raises(LawFitError, match="must be an Observations"):
        fit_law({"y": [0.1]})


def test_summary_lists_parameters(one_dataset_law):
    text = one_dataset_law.summary()
    assert "performance_law for ndcg@10 on 16 observations" in text
    assert "c = 0 (fixed by folding)" in text
    assert "R²" in text


@pytest.mark.slow
def test_many_seeds_recovery_and_coverage():
    """Recovery within 3 standard errors and 90% interval coverage over 40 seeds.

    The fitted grid is one dataset (D' folded), as in a user's own fit. Coverage is counted
    at four configs inside the grid, for the law's curve (confidence) and for a new noisy
    run (prediction).
    """
    # With c = 0 the folded D' term is exactly the constant the fit assumes, so e is
    # comparable with its true value.
    truth = dict(PERFORMANCE_TRUTH, c=0.0)
    form = get_form("performance_law")
    probe_layers = np.array([1, 3, 6, 8])
    probe_widths = np.array([48, 96, 200, 400])
    true_curve = form.evaluate(truth, probe_layers, probe_widths, 1e6)
    within, total, r2 = 0, 0, []
    mean_hits, new_run_hits = [], []
    for seed in range(40):
        observations = synthetic("performance_law", truth, seed=100 + seed,
                                 d_primes=(1e6,))
        law = fit_law(observations, n_bootstrap=200, n_starts=8, leave_one_out=False,
                      seed=seed)
        for name in law.stderr:
            total += 1
            within += abs(law.params[name] - truth[name]) <= 3 * law.stderr[name]
        r2.append(law.diagnostics.r2)
        low, high = law.predict_interval(probe_layers, probe_widths, 1e6, kind="confidence")
        mean_hits.extend((low <= true_curve) & (true_curve <= high))
        new_run = true_curve + np.random.default_rng(seed).normal(0, NOISE_SD, 4)
        low, high = law.predict_interval(probe_layers, probe_widths, 1e6, kind="prediction")
        new_run_hits.extend((low <= new_run) & (new_run <= high))
    print(f"within 3 SE {within / total:.3f}, median R² {np.median(r2):.3f}, "
          f"confidence coverage {np.mean(mean_hits):.3f}, "
          f"prediction coverage {np.mean(new_run_hits):.3f}")
    assert within / total >= 0.95
    assert np.median(r2) > 0.8
    assert 0.75 <= np.mean(mean_hits) <= 1.0
    assert 0.75 <= np.mean(new_run_hits) <= 1.0
