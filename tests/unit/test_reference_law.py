"""The shipped reference laws: refittable from calibration/runs.csv, loadable, and honest about
their error.

calibration/build_reference.py writes core/reference/<metric>.json. These tests refit each law
from the runs file with the settings stored in it, so a law that no longer matches its runs
(a changed runs file, fitter or form) fails here until the script is rerun.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import numpy as np
import pytest

from app.law_service import load_reference_law
from core.fitting import FittedLaw, Observations, fit_law
from core.runs_file import read_runs, select_observations

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
RUNS_PATH = REPOSITORY_ROOT / "calibration" / "runs.csv"
METRICS = ("hr@10", "ndcg@10")

# A refit on another machine may stop at a slightly different point of the cost valley, so
# parameters get a relative tolerance and predictions, which are better determined, a tight
# absolute one (metric units).
PARAMETER_RTOL = 1e-3
PARAMETER_ATOL = 1e-6
PREDICTION_ATOL = 1e-6
ERROR_ATOL_PERCENT = 0.05


def read_document(metric: str) -> dict:
    name = metric.replace("@", "_at_") + ".json"
    return json.loads(importlib.resources.files("core").joinpath("reference", name).read_text())


def shipped_observations(document: dict, metric: str) -> Observations:
    return select_observations(read_runs(RUNS_PATH), metric, protocol=document["protocol"],
                               arch=document["arch"])


def refit(law: FittedLaw, observations: Observations, *, n_starts: int | None = None) -> FittedLaw:
    """Refit the law's form with its stored settings, without the bootstrap."""
    diagnostics = law.diagnostics
    return fit_law(observations, law.form, metric=law.metric, seed=diagnostics.seed,
                   n_starts=n_starts or diagnostics.n_starts, robust_loss=diagnostics.robust_loss,
                   form_settings=law.settings, n_bootstrap=0, leave_one_out=False)


@pytest.fixture(scope="module", params=METRICS)
def shipped(request) -> tuple[str, dict, FittedLaw]:
    metric = request.param
    document = read_document(metric)
    return metric, document, FittedLaw.from_dict(document["law"])


@pytest.fixture(scope="module")
def refitted(shipped) -> FittedLaw:
    metric, document, law = shipped
    return refit(law, shipped_observations(document, metric))


def test_reference_law_loads_through_service(shipped):
    metric, document, law = shipped
    reference = load_reference_law(metric)
    assert reference is not None
    assert reference.law.metric == metric
    assert reference.law.form == "performance_law"
    assert reference.protocol == document["protocol"]
    assert reference.arch == document["arch"]
    assert reference.published_error == document["published_error"]


def test_reference_law_has_prediction_intervals(shipped):
    _, _, law = shipped
    low, high = law.predict_interval([2, 4], [64, 128], [5000.0, 5000.0])
    predicted = law.predict([2, 4], [64, 128], [5000.0, 5000.0])
    assert len(law.bootstrap_params) == law.diagnostics.n_bootstrap > 0
    assert np.all(low <= predicted)
    assert np.all(predicted <= high)


def test_reference_law_fitted_on_runs_file(shipped):
    metric, document, law = shipped
    observations = shipped_observations(document, metric)
    np.testing.assert_array_equal(law.observations.n_layers, observations.n_layers)
    np.testing.assert_array_equal(law.observations.d_model, observations.d_model)
    np.testing.assert_array_equal(law.observations.d_prime, observations.d_prime)
    np.testing.assert_array_equal(law.observations.y, observations.y)
    assert law.observations.labels == observations.labels


def test_reference_law_params_equal_refit(shipped, refitted):
    _, _, law = shipped
    for name, value in law.params.items():
        assert refitted.params[name] == pytest.approx(value, rel=PARAMETER_RTOL, abs=PARAMETER_ATOL), name


def test_reference_law_predictions_equal_refit(shipped, refitted):
    _, _, law = shipped
    observations = law.observations
    inputs = (observations.n_layers, observations.d_model, observations.d_prime)
    np.testing.assert_allclose(refitted.predict(*inputs), law.predict(*inputs), rtol=0, atol=PREDICTION_ATOL)


def test_published_error_matches_refit(shipped, refitted):
    _, document, law = shipped
    published = document["published_error"]
    assert published["n_runs"] == len(law.observations) == len(refitted.observations)
    assert published["in_sample_r2"] == pytest.approx(law.diagnostics.r2, abs=1e-12)
    assert published["in_sample_r2"] == pytest.approx(refitted.diagnostics.r2, abs=1e-6)
    assert published["datasets"] == list(dict.fromkeys(law.observations.labels))


@pytest.mark.slow
def test_published_leave_one_dataset_out_error_matches(shipped):
    metric, document, law = shipped
    evaluation = document["evaluation"]
    observations = law.observations
    labels = np.asarray(observations.labels)
    errors = []
    for name in dict.fromkeys(labels):
        held_out = labels == name
        other = refit(law, observations.subset(~held_out), n_starts=evaluation["n_starts"])
        predicted = other.predict(observations.n_layers[held_out], observations.d_model[held_out],
                                  observations.d_prime[held_out])
        errors.extend(np.abs(predicted - observations.y[held_out]) / observations.y[held_out])
    recomputed = 100 * float(np.mean(errors))
    published = document["published_error"]["leave_one_dataset_out_mape_percent"]
    assert published == pytest.approx(recomputed, abs=ERROR_ATOL_PERCENT)
