"""Plots of a fitted law against its observations.

Figures are built with matplotlib's object API (matplotlib.figure.Figure) and rendered by
the Agg and SVG backends, never through pyplot. So each call has its own figure, nothing is
registered with pyplot's figure manager, and no GUI backend is needed.
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from core.fitting import FittedLaw
from core.laws import INPUT_NAMES

PlotFormat = Literal["png", "svg"]

AXIS_LABELS = {
    "n_layers": "n_layers (N)",
    "d_model": "d_model (d)",
    "d_prime": "D' = tokens x ApEn",
}
SYMBOLS = {"n_layers": "N", "d_model": "d", "d_prime": "D'"}
PANEL_WIDTH_IN = 4.0
PANEL_HEIGHT_IN = 3.4
CURVE_POINTS = 200
CURVE_MARGIN = 1.25  # the curve extends this factor beyond the observed range on each side
MAX_LABELLED_TICKS = 8  # up to this many distinct n_layers or d_model values get a tick each


def varying_inputs(law: FittedLaw) -> list[str]:
    """Return the inputs that take more than one value in the law's observations."""
    return [name for name, values in law.observations.inputs().items()
            if len(np.unique(values)) > 1]


def held_values(law: FittedLaw) -> dict[str, float]:
    """Return each input's median observed value (the lower middle one for an even count),
    so curves pass through observed configs."""
    return {name: float(np.quantile(values, 0.5, method="lower"))
            for name, values in law.observations.inputs().items()}


def _draw_input_panel(axes, law: FittedLaw, name: str, held: dict[str, float]) -> None:
    """Draw the observations against one input and the law with the others at held."""
    observations = law.observations
    observed = getattr(observations, name)
    grid = np.geomspace(observed.min() / CURVE_MARGIN, observed.max() * CURVE_MARGIN,
                        CURVE_POINTS)
    inputs = {other: np.full_like(grid, held[other]) for other in INPUT_NAMES}
    inputs[name] = grid
    curve = law.predict(inputs["n_layers"], inputs["d_model"], inputs["d_prime"])

    if len(law.bootstrap_params):
        low, high = law.predict_interval(inputs["n_layers"], inputs["d_model"],
                                         inputs["d_prime"], 0.9)
        axes.fill_between(grid, low, high, color="tab:blue", alpha=0.2,
                          label="90% prediction interval")
    others = ", ".join(f"{SYMBOLS[other]} = {held[other]:g}"
                       for other in INPUT_NAMES if other != name)
    axes.plot(grid, curve, color="tab:blue", label=f"law at {others}")

    on_curve = np.ones(len(observed), dtype=bool)
    for other in INPUT_NAMES:
        if other != name:
            on_curve &= getattr(observations, other) == held[other]
    axes.scatter(observed[~on_curve], observations.y[~on_curve], s=14, color="0.7",
                 label="other observations", zorder=2)
    axes.scatter(observed[on_curve], observations.y[on_curve], s=18, color="black",
                 label=f"observations at {others}", zorder=3)

    axes.set_xscale("log")
    distinct = np.unique(observed)
    if name != "d_prime" and len(distinct) <= MAX_LABELLED_TICKS:
        axes.set_xticks(distinct)
        axes.xaxis.set_major_formatter(ScalarFormatter())
        axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel(AXIS_LABELS[name])
    axes.set_ylabel(law.metric)
    axes.legend(fontsize="x-small")


def _draw_parity_panel(axes, law: FittedLaw) -> None:
    """Draw observed against fitted values, for a law whose inputs are all constant."""
    observations = law.observations
    fitted = law.predict(observations.n_layers, observations.d_model, observations.d_prime)
    axes.scatter(fitted, observations.y, s=18, color="black", label="observations")
    low = float(min(fitted.min(), observations.y.min()))
    high = float(max(fitted.max(), observations.y.max()))
    axes.plot([low, high], [low, high], color="tab:blue", label="observed = fitted")
    axes.set_xlabel(f"fitted {law.metric}")
    axes.set_ylabel(f"observed {law.metric}")
    axes.legend(fontsize="x-small")


def build_law_figure(law: FittedLaw) -> Figure:
    """Build a figure with one panel per varying input.

    Each panel shows the law's curve against that input with the other inputs held at
    held_values(law), with the 90% bootstrap prediction band when the law has replicates.
    Observations at those held values are drawn in black and the rest in grey. A law with
    no varying input gets a single panel of observed against fitted values.
    """
    names = varying_inputs(law)
    n_panels = max(1, len(names))
    figure = Figure(figsize=(PANEL_WIDTH_IN * n_panels, PANEL_HEIGHT_IN), layout="constrained")
    axes_list = figure.subplots(1, n_panels, squeeze=False)[0]
    held = held_values(law)
    if names:
        for axes, name in zip(axes_list, names):
            _draw_input_panel(axes, law, name, held)
    else:
        _draw_parity_panel(axes_list[0], law)
    figure.suptitle(f"{law.form} for {law.metric}: R² {law.diagnostics.r2:.3f}, "
                    f"{law.diagnostics.n_observations} observations", fontsize="medium")
    return figure


def render_figure(figure: Figure, format: PlotFormat = "png", *, dpi: int = 100) -> bytes:
    """Render figure as PNG or SVG bytes, leaving out the software and date metadata.

    NOTE: equal figures give equal PNG bytes, but SVG element ids are random per render
    unless the global rcParams["svg.hashsalt"] is set, which this module leaves alone.

    Raises:
        ValueError: format is neither "png" nor "svg".
    """
    if format not in ("png", "svg"):
        raise ValueError(f"format must be 'png' or 'svg', got {format!r}")
    metadata = {"Software": None} if format == "png" else {"Date": None}
    buffer = io.BytesIO()
    figure.savefig(buffer, format=format, dpi=dpi, metadata=metadata)
    return buffer.getvalue()


def plot_law(law: FittedLaw, format: PlotFormat = "png", *, dpi: int = 100) -> bytes:
    """Plot a fitted law against its observations (see build_law_figure) as PNG or SVG.

    Raises:
        ValueError: format is neither "png" nor "svg".
    """
    if format not in ("png", "svg"):
        raise ValueError(f"format must be 'png' or 'svg', got {format!r}")
    return render_figure(build_law_figure(law), format, dpi=dpi)
