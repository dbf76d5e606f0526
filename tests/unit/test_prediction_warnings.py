"""Warnings attached to predictions that a caller should not trust, and predictions set against measurements."""

from __future__ import annotations

import pytest

from app.law_service import compare_with_measured, prediction_warnings


def row(predicted: float, extrapolated: list[str] | None = None) -> dict:
    return {"n_layers": 2, "d_model": 64, "predicted": predicted, "extrapolated": extrapolated or []}


def test_in_range_predictions_have_no_warning():
    assert prediction_warnings([row(0.2), row(0.0), row(1.0)]) == []


def test_negative_prediction_is_called_impossible():
    warnings = prediction_warnings([row(0.2), row(-0.13)])

    assert len(warnings) == 1
    assert "outside [0, 1]" in warnings[0]
    assert "-0.130" in warnings[0]


def test_extrapolated_inputs_are_named():
    warnings = prediction_warnings([row(0.2, ["d_prime"]), row(0.3, ["n_layers", "d_prime"])])

    assert len(warnings) == 1
    assert "d_prime, n_layers" in warnings[0]


@pytest.mark.parametrize(
    ("low", "high", "measured", "within"),
    [(0.1, 0.3, 0.25, True), (0.1, 0.3, 0.3, True), (0.1, 0.3, 0.31, False), (0.1, 0.3, 0.05, False), (None, None, 0.2, None)],
)
def test_comparison_says_whether_the_interval_holds_the_measurement(low, high, measured, within):
    compared = compare_with_measured(0.2, low, high, measured)

    assert compared["error"] == pytest.approx(measured - 0.2)
    assert compared["within_interval"] is within
