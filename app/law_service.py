"""Laws for the service and the CLI: fitting from runs, choosing a law, and evaluating it.

D' for a dataset is tokens x ApEn with the `reference` ApEn variant, m = 2, exact matching
(r = 0) and max_len equal to the model's max_len: the setting of the Performance Law authors.
The Pincus ApEn of a sequence without repeated templates is negative (about ln((K-1)/K)),
which would make D' negative, and the law's D' term needs D' > 0.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from core.fitting import FittedLaw, LawFitError, LawInputError, fit_law
from core.profile import ProfileParams
from core.runs_file import RunRecord, RunsFileError, select_observations

LAW_APEN_VARIANT = "reference"
LAW_APEN_M = 2
DEFAULT_LEVEL = 0.9


class LawRequestError(ValueError):
    """A law cannot be fitted or used as requested; the message says why and what to do."""


def law_profile_params(max_len: int) -> ProfileParams:
    """Return the profile parameters whose D' the laws use, for a model of this max_len."""
    return ProfileParams(m=LAW_APEN_M, r=0.0, max_len=max_len, variant=LAW_APEN_VARIANT)


def fit_from_records(
    records: Sequence[RunRecord],
    metric: str,
    *,
    form: str = "performance_law",
    protocol: str | None = None,
    arch: str | None = None,
    dataset: str | None = None,
    seed: int = 0,
    n_bootstrap: int = 200,
    robust_loss: str = "linear",
) -> FittedLaw:
    """Fit one law on the runs of one protocol and architecture; errors become LawRequestError."""
    try:
        observations = select_observations(records, metric, protocol=protocol, arch=arch, dataset=dataset)
        return fit_law(
            observations, form, metric=metric.lower(), seed=seed, n_bootstrap=n_bootstrap, robust_loss=robust_loss
        )
    except (LawFitError, RunsFileError, LawInputError) as error:
        raise LawRequestError(str(error)) from None


@dataclass(frozen=True)
class ReferenceLaw:
    """A shipped law with the error it was published with."""

    law: FittedLaw
    protocol: str
    arch: str
    published_error: dict[str, Any] = field(default_factory=dict)


@lru_cache
def load_reference_law(metric: str) -> ReferenceLaw | None:
    """Return the shipped reference law of the metric, or None when none is shipped for it."""
    name = metric.lower().replace("@", "_at_") + ".json"
    resource = importlib.resources.files("core").joinpath("reference", name)
    if not resource.is_file():
        return None
    document = json.loads(resource.read_text())
    return ReferenceLaw(
        law=FittedLaw.from_dict(document["law"]),
        protocol=document["protocol"],
        arch=document["arch"],
        published_error=document.get("published_error", {}),
    )


def evaluate_grid(law: FittedLaw, d_prime: float, configs: Sequence[tuple[int, int]], level: float) -> list[dict]:
    """Return the prediction, interval and extrapolation flags at each (n_layers, d_model)."""
    n_layers = np.array([config[0] for config in configs], dtype=float)
    d_model = np.array([config[1] for config in configs], dtype=float)
    d_primes = np.full(len(configs), float(d_prime))
    try:
        predicted = law.predict(n_layers, d_model, d_primes)
        low, high = law.predict_interval(n_layers, d_model, d_primes, level=level) if len(law.bootstrap_params) else (None, None)
        flags = law.extrapolation_flags(n_layers, d_model, d_primes)
    except (LawFitError, LawInputError) as error:
        raise LawRequestError(str(error)) from None

    rows = []
    for index, (layers, width) in enumerate(configs):
        extrapolated = [name for name, values in flags.items() if values[index]]
        rows.append({
            "n_layers": layers,
            "d_model": width,
            "predicted": float(predicted[index]),
            "low": None if low is None else float(low[index]),
            "high": None if high is None else float(high[index]),
            "extrapolated": extrapolated,
        })
    return rows


def compare_with_measured(predicted: float, low: float | None, high: float | None, measured: float) -> dict:
    """Return a prediction next to the measured value of the same metric.

    error = measured - predicted, in metric units. within_interval is whether [low, high]
    contains the measured value, or None when the prediction has no interval.
    """
    within = None if low is None or high is None else low <= measured <= high
    return {
        "predicted": predicted,
        "low": low,
        "high": high,
        "measured": measured,
        "error": measured - predicted,
        "within_interval": within,
    }


def prediction_warnings(rows: Sequence[dict]) -> list[str]:
    """Return sentences about predictions a caller should not trust: extrapolated or impossible."""
    warnings = []
    impossible = [row for row in rows if not 0.0 <= row["predicted"] <= 1.0]
    if impossible:
        values = ", ".join(f"{row['predicted']:.3f}" for row in impossible[:3])
        warnings.append(
            f"{len(impossible)} predictions lie outside [0, 1] ({values}), which no metric can reach: the law is "
            "used far outside the data it was fitted on; fit a law on runs of this dataset instead"
        )
    extrapolated = sorted({name for row in rows for name in row["extrapolated"]})
    if extrapolated:
        warnings.append(
            f"some sizes or data lie outside the ranges the law was fitted on ({', '.join(extrapolated)}; see "
            "`extrapolated`): trust those predictions less"
        )
    return warnings


def law_summary(law: FittedLaw) -> dict[str, Any]:
    """Return the facts a caller needs to judge a law: form, fit quality and fitted ranges."""
    diagnostics = law.diagnostics
    return {
        "form": law.form,
        "metric": law.metric,
        "params": dict(law.params),
        "stderr": {name: _finite_or_none(value) for name, value in law.stderr.items()},
        "folded_inputs": list(law.folded_inputs),
        "r2": _finite_or_none(diagnostics.r2),
        "rmse": _finite_or_none(diagnostics.rmse),
        "mape_percent": _finite_or_none(diagnostics.mape_percent),
        "loo_mape_percent": _finite_or_none(diagnostics.loo_mape_percent),
        "n_observations": diagnostics.n_observations,
        "input_ranges": {name: list(bounds) for name, bounds in law.input_ranges.items()},
        "warnings": list(law.warnings),
    }


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None
