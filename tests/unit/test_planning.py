"""Tests of plan_sizes and check_config on laws fitted to synthetic runs."""

import numpy as np
import pytest

from core.fitting import Observations, fit_law
from core.laws import get_form
from core.planning import (
    PlanningError,
    SizeConfig,
    check_config,
    plan_sizes,
)
from core.sizing import count_parameters, format_size, training_flops_per_token

TRUTH = {"w1": 0.1, "a": -0.5, "w2": 0.5, "b": -0.15, "c": 0.0, "e": 0.9}
D_PRIME = 1e6
N_ITEMS = 10_000
LAYERS = (1, 2, 4, 8)
WIDTHS = (32, 64, 128, 256)


def fitted_law(layers=LAYERS, widths=WIDTHS, n_bootstrap=40):
    n_layers, d_model = np.meshgrid(layers, widths, indexing="ij")
    n_layers, d_model = n_layers.ravel(), d_model.ravel()
    d_prime = np.full(len(n_layers), D_PRIME)
    clean = get_form("performance_law").evaluate(TRUTH, n_layers, d_model, d_prime)
    noisy = clean + np.random.default_rng(0).normal(0, 0.002, len(clean))
    return fit_law(Observations(n_layers, d_model, d_prime, noisy), metric="ndcg@10",
                   n_bootstrap=n_bootstrap, n_starts=8, leave_one_out=False)


@pytest.fixture(scope="module")
def law():
    return fitted_law()


@pytest.fixture(scope="module")
def width_only_law():
    """A law fitted at one n_layers value, so its prediction ignores n_layers."""
    return fitted_law(layers=(2,), widths=(16, 32, 64, 128, 256, 512), n_bootstrap=0)


def test_best_is_highest_within_budget(law):
    plan = plan_sizes(law, D_PRIME, budget=2e6, n_items=N_ITEMS, layer_grid=LAYERS,
                      width_grid=WIDTHS)
    affordable = [candidate for candidate in plan.candidates if candidate.params <= 2e6]
    assert plan.best.within_budget
    assert plan.best.predicted == max(candidate.predicted for candidate in affordable)
    assert len(plan.candidates) == len(LAYERS) * len(WIDTHS)


def test_candidates_carry_sizes_and_intervals(law):
    plan = plan_sizes(law, D_PRIME, budget=2e6, n_items=N_ITEMS, layer_grid=LAYERS,
                      width_grid=WIDTHS)
    for candidate in plan.candidates:
        count = count_parameters("sasrec", candidate.n_layers, candidate.d_model, 1, N_ITEMS, 50)
        assert candidate.params == count.total
        assert candidate.non_embedding_params == count.non_embedding
        assert candidate.size == count.total
        assert candidate.interval[0] < candidate.predicted < candidate.interval[1]
        assert candidate.predicted == pytest.approx(
            float(law.predict(candidate.n_layers, candidate.d_model, D_PRIME)))


def test_ties_choose_smaller_config(width_only_law):
    plan = plan_sizes(width_only_law, D_PRIME, budget=1e9, n_items=N_ITEMS,
                      layer_grid=(1, 2, 4), width_grid=(64, 128))
    assert plan.best.n_layers == 1
    tied = [candidate for candidate in plan.candidates
            if candidate.predicted == pytest.approx(plan.best.predicted, abs=1e-12)]
    assert len(tied) == 3
    assert plan.best.size == min(candidate.size for candidate in tied)


def test_frontier_is_increasing_and_dominant(law):
    plan = plan_sizes(law, D_PRIME, budget=5e6, n_items=N_ITEMS)
    sizes = [candidate.size for candidate in plan.frontier]
    predictions = [candidate.predicted for candidate in plan.frontier]
    assert sizes == sorted(sizes)
    assert all(later > earlier for earlier, later in zip(predictions, predictions[1:]))
    for candidate in plan.candidates:
        assert any(point.size <= candidate.size and point.predicted >= candidate.predicted
                   for point in plan.frontier)


def test_widths_respect_heads(law):
    plan = plan_sizes(law, D_PRIME, budget=1e9, n_items=N_ITEMS, n_heads=3,
                      width_grid=(32, 48, 64, 96), layer_grid=(2,))
    assert [candidate.d_model for candidate in plan.candidates] == [48, 96]


def test_llama_skips_odd_head_widths(law):
    plan = plan_sizes(law, D_PRIME, budget=1e9, n_items=N_ITEMS, arch="llama", n_heads=4,
                      width_grid=(36, 40, 48), layer_grid=(2,))
    assert [candidate.d_model for candidate in plan.candidates] == [40, 48]


def test_flops_budget_uses_training_flops(law):
    plan = plan_sizes(law, D_PRIME, budget=5e6, budget_kind="flops", n_items=N_ITEMS,
                      layer_grid=LAYERS, width_grid=WIDTHS)
    for candidate in plan.candidates:
        flops = training_flops_per_token("sasrec", candidate.n_layers, candidate.d_model, 1,
                                         N_ITEMS, 50)
        assert candidate.size == flops
        assert candidate.within_budget == (flops <= 5e6)


def test_total_flops_budget_scales_with_tokens(law):
    per_token = plan_sizes(law, D_PRIME, budget=5e6, budget_kind="flops", n_items=N_ITEMS)
    total = plan_sizes(law, D_PRIME, budget=5e6 * 1e9, budget_kind="flops", n_items=N_ITEMS,
                       train_tokens=1e9)
    assert total.best == per_token.best.__class__(**{**per_token.best.__dict__,
                                                      "size": per_token.best.size * 1e9})


def test_non_embedding_budget_ignores_items(law):
    small = plan_sizes(law, D_PRIME, budget=3e5, budget_kind="non_embedding_params",
                       n_items=100)
    large = plan_sizes(law, D_PRIME, budget=3e5, budget_kind="non_embedding_params",
                       n_items=1_000_000)
    assert (small.best.n_layers, small.best.d_model) == (large.best.n_layers,
                                                         large.best.d_model)


def test_budget_below_every_config_raises(law):
    with pytest.raises(PlanningError, match="no config of the grid fits the budget of 1k"):
        plan_sizes(law, D_PRIME, budget=1000, n_items=N_ITEMS)


@pytest.mark.parametrize("arguments, message", [
    ({"budget": -1.0}, "budget must be positive"),
    ({"budget_kind": "memory"}, "budget_kind must be one of"),
    ({"n_heads": 0}, "n_heads must be a positive integer"),
    ({"width_grid": ()}, "must not be empty"),
    ({"n_items": 0}, "n_items must be a positive integer"),
    ({"train_tokens": 0.0}, "train_tokens must be positive"),
])
def test_invalid_plan_arguments_raise(law, arguments, message):
    options = {"budget": 1e7, "n_items": N_ITEMS, **arguments}
    with pytest.raises(PlanningError, match=message):
        plan_sizes(law, D_PRIME, **options)


def test_plan_inside_grid_has_no_warnings(law):
    plan = plan_sizes(law, D_PRIME, budget=1e9, n_items=N_ITEMS, layer_grid=(2, 4, 8),
                      width_grid=(64, 96, 1024))
    assert (plan.best.n_layers, plan.best.d_model) == (4, 96)
    assert plan.warnings == ()


def test_plan_warns_about_grid_edge(law):
    plan = plan_sizes(law, D_PRIME, budget=1e9, n_items=N_ITEMS, layer_grid=(2, 4, 8),
                      width_grid=(16, 32))
    assert plan.best.d_model == 32
    assert plan.warnings == (
        f"the best config ({plan.best.n_layers} layers x d_model 32) lies on the largest "
        "edge of the grid; a larger grid may hold a better config",)


def test_plan_warns_about_extrapolation(law):
    plan = plan_sizes(law, D_PRIME, budget=1e9, n_items=N_ITEMS, layer_grid=(16,),
                      width_grid=(64, 96, 128))
    assert plan.warnings[0] == ("the prediction for the best config is an extrapolation: "
                                "n_layers = 16 is outside the fitted range [1, 8]")


def test_plan_warns_about_other_d_prime(law):
    plan = plan_sizes(law, 5e6, budget=2e6, n_items=N_ITEMS, layer_grid=LAYERS,
                      width_grid=WIDTHS)
    assert any("d_prime = 5e+06 differs from the one value 1e+06" in warning
               for warning in plan.warnings)


def test_plan_to_dict_is_json_ready(law):
    import json

    plan = plan_sizes(law, D_PRIME, budget=2e6, n_items=N_ITEMS)
    data = json.loads(json.dumps(plan.to_dict(), allow_nan=False))
    assert data["best"]["n_layers"] == plan.best.n_layers
    assert len(data["candidates"]) == len(plan.candidates)


def test_check_fails_below_minimum(law):
    result = check_config(law, D_PRIME, SizeConfig(1, 32), n_items=N_ITEMS, min_metric=0.9)
    predicted = result.numbers["predicted"]
    assert not result.passed
    assert result.reasons == [f"predicted ndcg@10 {predicted:.3f} is below the minimum 0.900"]


def test_check_passes_above_minimum(law):
    result = check_config(law, D_PRIME, SizeConfig(4, 128), n_items=N_ITEMS, min_metric=0.1)
    assert result.passed
    assert result.reasons[0].endswith("meets the minimum 0.100")


def test_check_gap_uses_own_size_as_budget(law):
    result = check_config(law, D_PRIME, SizeConfig(8, 256), n_items=N_ITEMS, max_gap=0.001,
                          layer_grid=LAYERS, width_grid=WIDTHS)
    numbers = result.numbers
    assert not result.passed
    assert numbers["best_predicted"] > numbers["predicted"]
    assert numbers["gap"] == pytest.approx(numbers["best_predicted"] - numbers["predicted"])
    assert numbers["budget"] is None
    own_size = count_parameters("sasrec", 8, 256, 1, N_ITEMS, 50).total
    best_size = count_parameters("sasrec", numbers["best_n_layers"], numbers["best_d_model"],
                                 1, N_ITEMS, 50).total
    assert best_size <= own_size
    assert "below the best config within" in result.reasons[0]
    assert "the allowed gap is 0.001" in result.reasons[0]


def test_check_best_config_has_no_gap(law):
    plan = plan_sizes(law, D_PRIME, budget=2e6, n_items=N_ITEMS, layer_grid=LAYERS,
                      width_grid=WIDTHS)
    best = SizeConfig(plan.best.n_layers, plan.best.d_model)
    result = check_config(law, D_PRIME, best, n_items=N_ITEMS, max_gap=0.0, budget=2e6,
                          layer_grid=LAYERS, width_grid=WIDTHS)
    assert result.passed
    assert result.numbers["gap"] == 0.0


def test_check_fails_over_budget(law):
    result = check_config(law, D_PRIME, SizeConfig(8, 256), n_items=N_ITEMS, budget=1e6)
    size = format_size(count_parameters("sasrec", 8, 256, 1, N_ITEMS, 50).total)
    assert not result.passed
    assert result.reasons == [f"the config has {size} parameters, above the budget of 1M"]


def test_check_without_criteria_passes(law):
    result = check_config(law, D_PRIME, SizeConfig(2, 64), n_items=N_ITEMS)
    assert result.passed
    assert "no criterion was given" in result.reasons[0]
    assert result.numbers["interval_low"] < result.numbers["predicted"]


def test_check_warns_about_extrapolation(law):
    result = check_config(law, D_PRIME, SizeConfig(32, 64), n_items=N_ITEMS)
    assert result.warnings == [
        "the prediction for the config is an extrapolation: n_layers = 32 is outside the "
        "fitted range [1, 8]"]


def test_check_rejects_negative_gap(law):
    with pytest.raises(PlanningError, match="max_gap must be non-negative"):
        check_config(law, D_PRIME, SizeConfig(2, 64), n_items=N_ITEMS, max_gap=-0.1)


def test_check_rejects_invalid_config(law):
    with pytest.raises(PlanningError, match="multiple of n_heads"):
        check_config(law, D_PRIME, SizeConfig(2, 64, n_heads=3), n_items=N_ITEMS)
