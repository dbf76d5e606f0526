"""Tests of the law plots: panel structure and valid PNG and SVG output."""

import struct
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

from core.fitting import Observations, fit_law
from core.laws import get_form
from core.plotting import build_law_figure, held_values, plot_law, varying_inputs

TRUTH = {"w1": 0.1, "a": -0.5, "w2": 0.5, "b": -0.15, "c": -0.03, "e": 0.9}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG_NAMESPACE = "{http://www.w3.org/2000/svg}"


def fitted_law(layers, widths, d_primes, n_bootstrap=20):
    n_layers, d_model, d_prime = (array.ravel() for array in
                                  np.meshgrid(layers, widths, d_primes, indexing="ij"))
    clean = get_form("performance_law").evaluate(TRUTH, n_layers, d_model, d_prime)
    noisy = clean + np.random.default_rng(0).normal(0, 0.002, len(clean))
    return fit_law(Observations(n_layers, d_model, d_prime, noisy), metric="hr@10",
                   n_bootstrap=n_bootstrap, n_starts=4, leave_one_out=False)


@pytest.fixture(scope="module")
def three_input_law():
    return fitted_law((1, 2, 4, 8), (32, 64, 128), (1e5, 1e6, 1e7))


@pytest.fixture(scope="module")
def one_dataset_law():
    return fitted_law((1, 2, 4, 8), (32, 64, 128, 256), (1e6,), n_bootstrap=0)


def svg_axes_groups(svg: bytes) -> list:
    root = ElementTree.fromstring(svg)
    return [element for element in root.iter(f"{SVG_NAMESPACE}g")
            if element.get("id", "").startswith("axes_")]


def test_one_panel_per_varying_input(three_input_law, one_dataset_law):
    assert varying_inputs(three_input_law) == ["n_layers", "d_model", "d_prime"]
    assert len(build_law_figure(three_input_law).axes) == 3
    assert varying_inputs(one_dataset_law) == ["n_layers", "d_model"]
    assert len(build_law_figure(one_dataset_law).axes) == 2


def test_panels_label_inputs_and_metric(three_input_law):
    figure = build_law_figure(three_input_law)
    labels = [axes.get_xlabel() for axes in figure.axes]
    assert labels == ["n_layers (N)", "d_model (d)", "D' = tokens x ApEn"]
    assert all(axes.get_ylabel() == "hr@10" for axes in figure.axes)
    assert all(axes.get_xscale() == "log" for axes in figure.axes)


def test_curve_holds_other_inputs_at_median(three_input_law):
    held = held_values(three_input_law)
    assert held == {"n_layers": 2.0, "d_model": 64.0, "d_prime": 1e6}
    layers_panel = build_law_figure(three_input_law).axes[0]
    curve = layers_panel.get_lines()[0]
    x, y = curve.get_xdata(), curve.get_ydata()
    np.testing.assert_allclose(y, three_input_law.predict(x, 64.0, 1e6))


def test_panel_draws_interval_band_with_bootstrap(three_input_law, one_dataset_law):
    with_band = build_law_figure(three_input_law).axes[0]
    without_band = build_law_figure(one_dataset_law).axes[0]
    assert len(with_band.collections) == 3  # band and two scatter groups
    assert len(without_band.collections) == 2


def test_constant_inputs_give_parity_panel():
    law = fitted_law((2,), (64,), (1e6,), n_bootstrap=0)
    figure = build_law_figure(law)
    assert len(figure.axes) == 1
    assert figure.axes[0].get_xlabel() == "fitted hr@10"


def test_png_is_valid(three_input_law):
    data = plot_law(three_input_law, "png", dpi=50)
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (3 * 4 * 50, int(3.4 * 50))


def test_svg_is_valid_with_panels(three_input_law, one_dataset_law):
    assert len(svg_axes_groups(plot_law(three_input_law, "svg"))) == 3
    assert len(svg_axes_groups(plot_law(one_dataset_law, "svg"))) == 2


def test_png_bytes_are_reproducible(one_dataset_law):
    assert plot_law(one_dataset_law, "png", dpi=40) == plot_law(one_dataset_law, "png", dpi=40)


def test_unknown_format_raises(one_dataset_law):
    with pytest.raises(ValueError, match="format must be 'png' or 'svg', got 'pdf'"):
        plot_law(one_dataset_law, "pdf")
