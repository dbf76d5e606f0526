"""Build the shipped reference laws and docs/accuracy.md from the calibration runs.

Reads calibration/runs.csv (one verification run per row), the manifest
calibration/datasets.json and the datasets it names, and then:

1. recomputes D' = tokens x ApEn of every dataset under each ApEn variant (m = 2, r = 0,
   max_len = 50, the manifest's first-users cut), plus a control with ApEn replaced by 1
   (D' = tokens), and checks that the `reference` D' equals the d_prime column of the runs;
2. measures, per law form and metric: the in-sample R², the leave-one-out error within each
   dataset, the error of extrapolating from small configs to large ones, and the
   leave-one-dataset-out error, with a naive baseline for each;
3. fits the shipped laws (performance_law on every run, D' from the `reference` ApEn, seed 0,
   200 bootstrap replicates: what `perflaw fit calibration/runs.csv --metric METRIC` fits) and
   writes core/reference/<metric>.json with their leave-one-dataset-out error;
4. writes docs/accuracy.md and the plots docs/img/accuracy-*.png from these numbers.

Every fit is seeded, so equal inputs give equal outputs. A partial runs file, from a sweep that
is still running, is accepted: a measure that needs more runs than there are is reported as
such in the tables. On the 45 runs of the full grid it took 3 to 4.5 minutes (2.75 to 3.1
minutes of CPU time) on a 2-vCPU AMD EPYC virtual machine shared with other work.

Run from the repository root:

    .venv/bin/python calibration/build_reference.py --datasets-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
# Run as a file, the script would import an installed perflaw first; the laws it writes must
# come from this checkout's code.
sys.path.insert(0, str(REPOSITORY_ROOT))

from app.cli.offline import ReadArguments  # noqa: E402
from app.law_service import fit_from_records  # noqa: E402
from core.dataset import SequenceDataset, first_users  # noqa: E402
from core.fitting import DEFAULT_N_STARTS, FittedLaw, LawFitError, Observations, fit_law  # noqa: E402
from core.plotting import held_values, plot_law, render_figure  # noqa: E402
from core.profile import ProfileParams, profile_dataset  # noqa: E402
from core.readers import read_interactions  # noqa: E402
from core.runs_file import RunRecord, read_runs, select_observations  # noqa: E402

RUNS_PATH = Path("calibration/runs.csv")
RECORDS_PATH = Path("calibration/runs.jsonl")
MANIFEST_PATH = Path("calibration/datasets.json")
REFERENCE_DIR = Path("core/reference")
DOC_PATH = Path("docs/accuracy.md")
IMAGE_DIR = Path("docs/img")
COMMAND = ".venv/bin/python calibration/build_reference.py --datasets-dir ../shared/data"

METRICS = ("hr@10", "ndcg@10")
FORMS = ("performance_law", "scaling_law")
SHIPPED_FORM = "performance_law"
SHIPPED_VARIANT = "reference"
APEN_VARIANTS = ("reference", "pincus", "pooled")
TOKENS_CONTROL = "tokens"
"""D' = tokens, with ApEn replaced by 1: the control for whether ApEn adds anything to the data size."""
APEN_M = 2
APEN_R = 0.0
MAX_LEN = 50
SEED = 0
N_BOOTSTRAP = 200
EVALUATION_N_STARTS = 4
"""Starting points of the fits that measure errors (the shipped fits use fit_law's default).

The screening of starting points takes most of a fit's time, and the page reports how far the
in-sample R² of such a fit lies from that of the shipped fit."""
D_PRIME_TOLERANCE = 1e-6  # relative; recomputed reference D' against the runs file's column


@dataclass(frozen=True)
class Score:
    """A mean absolute percentage error or R², or the reason it could not be measured."""

    value: float | None
    reason: str = ""

    def format(self, kind: str = "percent") -> str:
        """Return the value as table text: "12.3%" or "0.912", or "n/a (reason)"."""
        if self.value is None:
            return f"n/a ({self.reason})"
        return f"{self.value:.3f}" if kind == "r2" else f"{self.value:.1f}%"


@dataclass(frozen=True)
class DatasetFacts:
    """Facts about one calibration dataset (after its user cut) that the accuracy page reports."""

    name: str
    n_users: int
    n_items: int
    n_interactions: int
    mean_length: float
    repeat_rate: float
    tokens: int
    apen: dict[str, float]
    length_only_apen: float


@dataclass(frozen=True)
class TrainingFacts:
    """Training settings and outcomes of the runs, from their full records in calibration/runs.jsonl."""

    settings: dict[str, list]
    n_records: int
    n_stopped_early: int
    n_at_max_epochs: int
    total_train_s: float
    devices: list[str]
    epochs_by_dataset: dict[str, tuple[int, int]]
    best_epoch_by_dataset: dict[str, tuple[int, int]]


@dataclass(frozen=True)
class Predictions:
    """Predicted metric per run (NaN where a run was not predicted) and the error over them."""

    predicted: np.ndarray
    score: Score


@dataclass(frozen=True)
class FormResults:
    """Every measure of one law form on one metric with one choice of D'."""

    in_sample_r2: Score
    in_sample_mape: Score
    in_sample_params: dict[str, float]
    within_dataset: dict[str, Score]
    within_dataset_all: Score
    extrapolation: dict[str, Predictions]
    leave_one_dataset_out: Predictions
    leave_one_dataset_out_by_dataset: dict[str, Score]


# Reading the runs and the datasets.

def read_manifest(path: Path) -> list[dict]:
    """Return the manifest's dataset entries: name, path, read options, max_users."""
    return json.loads(path.read_text())["datasets"]


def load_dataset(entry: dict, datasets_dir: Path, *, cut: bool = True) -> SequenceDataset:
    """Read one manifest dataset the way `perflaw calibrate` does, first-users cut included unless cut is False."""
    path = datasets_dir / entry["path"]
    options = ReadArguments(**entry["read"]).to_read_options()
    dataset = read_interactions(path, options, filename=path.name).dataset
    if cut and entry.get("max_users"):
        dataset = first_users(dataset, entry["max_users"])
    return dataset


def full_log_d_primes(entries: Sequence[dict], datasets_dir: Path) -> dict[str, float]:
    """Return the `reference` D' of the whole log behind each dataset that the manifest cuts."""
    params = ProfileParams(m=APEN_M, r=APEN_R, max_len=MAX_LEN, variant=SHIPPED_VARIANT)
    return {entry["name"]: float(profile_dataset(load_dataset(entry, datasets_dir, cut=False), params).d_prime)
            for entry in entries if entry.get("max_users")}


def describe_training(path: Path, runs: Sequence[RunRecord]) -> TrainingFacts:
    """Collect the training settings and outcomes of the runs from their full records.

    Each setting maps to its distinct values over the runs, so a sweep that changed a setting
    midway shows two values.
    """
    keys = {(run.dataset, run.n_layers, run.d_model) for run in runs}
    records = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        model = record["config"]["model"]
        if (record["dataset"], model["n_layers"], model["d_model"]) in keys:
            records.append(record)
    names = ("epochs", "patience", "lr", "batch_size", "loss", "n_negatives", "num_threads")
    settings = {name: sorted({record["config"]["train"][name] for record in records}) for name in names}
    settings["dropout"] = sorted({record["config"]["model"]["dropout"] for record in records})
    epochs, best = {}, {}
    for record in records:
        epochs.setdefault(record["dataset"], []).append(record["epochs_run"])
        best.setdefault(record["dataset"], []).append(record["best_epoch"])
    return TrainingFacts(
        settings=settings,
        n_records=len(records),
        n_stopped_early=sum(bool(record["stopped_early"]) for record in records),
        n_at_max_epochs=sum(record["epochs_run"] >= record["config"]["train"]["epochs"] for record in records),
        total_train_s=float(sum(record["train_time_s"] for record in records)),
        devices=sorted({str(record.get("device", "unknown")).upper() for record in records}),
        epochs_by_dataset={name: (min(values), max(values)) for name, values in epochs.items()},
        best_epoch_by_dataset={name: (min(values), max(values)) for name, values in best.items()},
    )


def length_only_apen(dataset: SequenceDataset) -> float:
    """Return the mean `reference` ApEn (m = 2) the dataset would have if no user repeated an item.

    A cut sequence of n >= 3 distinct items has n - 1 distinct 2-item and n - 2 distinct 3-item
    templates, so |phi^3 - phi^2| = ln((n - 1) / (n - 2)); shorter sequences count 0.
    """
    lengths = np.minimum(dataset.lengths, MAX_LEN).astype(float)
    values = np.zeros_like(lengths)
    long_enough = lengths >= APEN_M + 1
    values[long_enough] = np.log((lengths[long_enough] - 1) / (lengths[long_enough] - 2))
    return float(values.mean())


def describe_dataset(name: str, dataset: SequenceDataset) -> DatasetFacts:
    """Profile the dataset under every ApEn variant and collect the facts the page reports."""
    profiles = {variant: profile_dataset(dataset, ProfileParams(m=APEN_M, r=APEN_R, max_len=MAX_LEN,
                                                                variant=variant)).to_dict()
                for variant in APEN_VARIANTS}
    reference = profiles[SHIPPED_VARIANT]
    return DatasetFacts(
        name=name,
        n_users=reference["n_users"],
        n_items=reference["n_items"],
        n_interactions=reference["n_interactions"],
        mean_length=float(reference["lengths"]["mean"]),
        repeat_rate=float(reference["repeat_rate"]),
        tokens=int(reference["tokens"]),
        apen={variant: float(profile["apen"]["mean"]) for variant, profile in profiles.items()},
        length_only_apen=length_only_apen(dataset),
    )


def data_terms(facts: dict[str, DatasetFacts]) -> dict[str, dict[str, float]]:
    """Return D' per choice (each ApEn variant and the tokens control), then per dataset."""
    terms = {variant: {name: fact.tokens * fact.apen[variant] for name, fact in facts.items()}
             for variant in APEN_VARIANTS}
    terms[TOKENS_CONTROL] = {name: float(fact.tokens) for name, fact in facts.items()}
    return terms


def check_runs_match(runs: Sequence[RunRecord], reference_terms: dict[str, float]) -> None:
    """Raise ValueError unless every run's d_prime equals the recomputed `reference` D'."""
    for run in runs:
        if run.dataset not in reference_terms:
            raise ValueError(f"{RUNS_PATH}: dataset {run.dataset!r} (line {run.line}) is not in "
                             f"{MANIFEST_PATH}")
        expected = reference_terms[run.dataset]
        if abs(run.d_prime - expected) > D_PRIME_TOLERANCE * expected:
            raise ValueError(
                f"{RUNS_PATH} line {run.line}: d_prime {run.d_prime!r} of {run.dataset} differs from "
                f"the recomputed {expected!r}; the manifest, the dataset files or the ApEn code "
                "changed since the sweep"
            )


def single_value(runs: Sequence[RunRecord], attribute: str) -> str:
    """Return the one protocol or architecture of the runs; raise ValueError if they mix."""
    values = sorted({getattr(run, attribute) for run in runs})
    if len(values) != 1:
        raise ValueError(f"{RUNS_PATH}: the runs must share one {attribute}, got {values}")
    return values[0]


def observations_with(base: Observations, d_prime_of: dict[str, float]) -> Observations:
    """Return the observations with each run's D' replaced by its dataset's value."""
    d_prime = [d_prime_of[label] for label in base.labels]
    return Observations(base.n_layers, base.d_model, d_prime, base.y, base.labels)


def unusable_reason(d_prime_of: dict[str, float], datasets: Sequence[str]) -> str | None:
    """Return why the law cannot use these D' values (some are <= 0), or None."""
    bad = [f"{name} {d_prime_of[name]:.0f}" for name in datasets if not d_prime_of[name] > 0]
    if not bad:
        return None
    return f"D' <= 0 on {len(bad)} of {len(datasets)} datasets ({', '.join(bad)}); the law needs D' > 0"


# Measures.

def percentage_error(observed: np.ndarray, predicted: np.ndarray) -> Score:
    """Return the MAPE (%) over the runs with a finite prediction and a non-zero metric."""
    keep = np.isfinite(predicted) & (observed != 0)
    if not keep.any():
        return Score(None, "nothing predicted")
    return Score(float(100 * np.mean(np.abs(predicted[keep] - observed[keep]) / observed[keep])))


def fit_quietly(observations: Observations, form: str, metric: str, *,
                leave_one_out: bool = False) -> FittedLaw:
    """Fit without bootstrap, seeded like the shipped law; raises LawFitError."""
    return fit_law(observations, form, metric=metric, seed=SEED, n_bootstrap=0,
                   n_starts=EVALUATION_N_STARTS, leave_one_out=leave_one_out)


def predict_held_out(observations: Observations, train: np.ndarray, form: str, metric: str) -> Predictions:
    """Fit on the runs where train is True and predict the others."""
    predicted = np.full(len(observations), np.nan)
    test = ~train
    if not test.any():
        return Predictions(predicted, Score(None, "no run to predict"))
    try:
        law = fit_quietly(observations.subset(train), form, metric)
    except LawFitError as error:
        return Predictions(predicted, Score(None, short_reason(error)))
    predicted[test] = law.predict(observations.n_layers[test], observations.d_model[test],
                                  observations.d_prime[test])
    return Predictions(predicted, percentage_error(observations.y[test], predicted[test]))


def short_reason(error: Exception) -> str:
    """Return the first clause of a fit error, short enough for a table cell."""
    text = str(error)
    if "free parameters" in text:
        return "too few runs for the free parameters"
    return text.split(";")[0]


def extrapolation_splits(observations: Observations) -> dict[str, np.ndarray]:
    """Return the training mask of each extrapolation split: the largest sizes are held out."""
    largest_layers = observations.n_layers == observations.n_layers.max()
    largest_width = observations.d_model == observations.d_model.max()
    return {
        "depth and width": ~largest_layers & ~largest_width,
        "width": ~largest_width,
        "depth": ~largest_layers,
    }


def within_dataset_errors(observations: Observations, form: str, metric: str) -> tuple[dict[str, Score], Score]:
    """Return each dataset's leave-one-out MAPE (its runs only, D' folded) and their run-weighted mean."""
    scores, weighted, weights = {}, 0.0, 0
    for name in dataset_names(observations):
        runs = observations.subset(np.asarray(observations.labels) == name)
        try:
            law = fit_quietly(runs, form, metric, leave_one_out=True)
        except LawFitError as error:
            scores[name] = Score(None, short_reason(error))
            continue
        value = law.diagnostics.loo_mape_percent
        if not math.isfinite(value):
            scores[name] = Score(None, "too few runs for leave-one-out")
            continue
        scores[name] = Score(value)
        weighted += value * len(runs)
        weights += len(runs)
    overall = Score(weighted / weights) if weights else Score(None, "no dataset has enough runs")
    return scores, overall


def leave_one_dataset_out(observations: Observations, form: str, metric: str) -> tuple[Predictions, dict[str, Score]]:
    """Predict each dataset's runs from a law fitted on the other datasets (from its D' alone)."""
    labels = np.asarray(observations.labels)
    names = dataset_names(observations)
    predicted = np.full(len(observations), np.nan)
    by_dataset = {}
    for name in names:
        held_out = labels == name
        if len(names) < 3:
            by_dataset[name] = Score(None, "needs runs of at least 3 datasets")
            continue
        result = predict_held_out(observations, ~held_out, form, metric)
        predicted[held_out] = result.predicted[held_out]
        by_dataset[name] = result.score
    overall = percentage_error(observations.y, predicted)
    return Predictions(predicted, overall), by_dataset


def evaluate_form(observations: Observations, form: str, metric: str,
                  within: tuple[dict[str, Score], Score]) -> FormResults:
    """Run every measure of one form on one metric; the within-dataset errors are given."""
    try:
        law = fit_quietly(observations, form, metric)
        r2, mape, params = Score(law.diagnostics.r2), Score(law.diagnostics.mape_percent), dict(law.params)
    except LawFitError as error:
        r2 = mape = Score(None, short_reason(error))
        params = {}
    extrapolation = {name: predict_held_out(observations, train, form, metric)
                     for name, train in extrapolation_splits(observations).items()}
    held_out, by_dataset = leave_one_dataset_out(observations, form, metric)
    return FormResults(r2, mape, params, within[0], within[1], extrapolation, held_out, by_dataset)


def dataset_names(observations: Observations) -> list[str]:
    """Return the datasets of the observations in order of first appearance."""
    return list(dict.fromkeys(observations.labels))


def count_size_inversions(observations: Observations) -> tuple[int, int]:
    """Return (inversions, pairs) over pairs of runs of one dataset one grid step apart.

    A pair differs in n_layers or in d_model by one step of the grid and agrees in the other.
    It is an inversion when the larger model measured a lower metric.
    """
    labels = np.asarray(observations.labels)
    inversions = pairs = 0
    for varied_input, fixed_input in (("n_layers", "d_model"), ("d_model", "n_layers")):
        varied, fixed = getattr(observations, varied_input), getattr(observations, fixed_input)
        steps = np.unique(varied)
        for smaller, larger in zip(steps[:-1], steps[1:]):
            for index in np.flatnonzero(varied == smaller):
                larger_partner = (labels == labels[index]) & (varied == larger) & (fixed == fixed[index])
                for other in np.flatnonzero(larger_partner):
                    pairs += 1
                    inversions += bool(observations.y[other] < observations.y[index])
    return inversions, pairs


# Naive baselines, so each error has something to be compared with.

def baseline_within_dataset(observations: Observations) -> Score:
    """MAPE of predicting each run by the mean of its dataset's other runs."""
    labels = np.asarray(observations.labels)
    predicted = np.full(len(observations), np.nan)
    for index, label in enumerate(labels):
        others = (labels == label) & (np.arange(len(labels)) != index)
        if others.any():
            predicted[index] = observations.y[others].mean()
    return percentage_error(observations.y, predicted)


def baseline_extrapolation(observations: Observations, train: np.ndarray) -> Score:
    """MAPE of predicting each held-out run by its dataset's best run among the training runs."""
    labels = np.asarray(observations.labels)
    predicted = np.full(len(observations), np.nan)
    for index in np.flatnonzero(~train):
        same = train & (labels == labels[index])
        if same.any():
            predicted[index] = observations.y[same].max()
    return percentage_error(observations.y, predicted)


def baseline_leave_one_dataset_out(observations: Observations) -> Score:
    """MAPE of predicting each run by the mean of the other datasets' runs of the same config."""
    labels = np.asarray(observations.labels)
    predicted = np.full(len(observations), np.nan)
    for index in range(len(observations)):
        same_config = ((observations.n_layers == observations.n_layers[index])
                       & (observations.d_model == observations.d_model[index])
                       & (labels != labels[index]))
        if same_config.any():
            predicted[index] = observations.y[same_config].mean()
    return percentage_error(observations.y, predicted)


# The shipped laws.

def build_shipped_law(runs: Sequence[RunRecord], metric: str, protocol: str, arch: str,
                      held_out: Predictions, names: Sequence[str], max_users: int, n_bootstrap: int,
                      devices: Sequence[str]) -> dict:
    """Fit the shipped law of the metric and return its reference document."""
    law = fit_from_records(runs, metric, form=SHIPPED_FORM, protocol=protocol, arch=arch,
                           seed=SEED, n_bootstrap=n_bootstrap)
    return {
        "law": law.to_dict(),
        "protocol": protocol,
        "arch": arch,
        "evaluation": {
            "script": "calibration/build_reference.py",
            "runs_file": str(RUNS_PATH),
            "leave_one_dataset_out": "each dataset's runs predicted by fit_law on the other datasets' runs",
            "seed": SEED,
            "n_starts": EVALUATION_N_STARTS,
            "n_bootstrap": 0,
        },
        "published_error": {
            "leave_one_dataset_out_mape_percent": held_out.score.value,
            "in_sample_r2": law.diagnostics.r2,
            "n_runs": law.diagnostics.n_observations,
            "datasets": list(names),
            "note": (f"fitted on small {'/'.join(devices)} runs (n_layers {range_text(law, 'n_layers')}, d_model "
                     f"{range_text(law, 'd_model')}) of {len(names)} public datasets of at most "
                     f"{max_users:,} users; docs/accuracy.md says where it is weak"),
        },
    }


def range_text(law: FittedLaw, name: str) -> str:
    """Return an input's fitted range as "low to high"."""
    low, high = law.input_ranges[name]
    return f"{low:g} to {high:g}"


# Plots.

def plot_accuracy(observations: Observations, shipped: FittedLaw, results: FormResults, metric: str) -> bytes:
    """Return a PNG of predicted against measured values: in sample, across datasets, extrapolated."""
    figure = Figure(figsize=(12.0, 3.8), layout="constrained")
    axes_list = figure.subplots(1, 3)
    fitted = shipped.predict(observations.n_layers, observations.d_model, observations.d_prime)
    split = results.extrapolation["depth and width"]
    panels = [
        (fitted, f"in sample (fit on all runs), R² {shipped.diagnostics.r2:.3f}"),
        (results.leave_one_dataset_out.predicted,
         f"leave one dataset out, MAPE {results.leave_one_dataset_out.score.format()}"),
        (split.predicted, f"largest depth and width held out, MAPE {split.score.format()}"),
    ]
    for axes, (predicted, title) in zip(axes_list, panels):
        axes.set_title(textwrap.fill(title, 48), fontsize="small")
        if not np.isfinite(predicted).any():
            axes.text(0.5, 0.5, "no run predicted", ha="center", va="center", transform=axes.transAxes)
            axes.set_axis_off()
            continue
        draw_parity(axes, observations, predicted, metric)
    figure.suptitle(f"{SHIPPED_FORM} for {metric}, D' from the {SHIPPED_VARIANT} ApEn", fontsize="medium")
    return render_figure(figure, "png", dpi=90)


def draw_parity(axes, observations: Observations, predicted: np.ndarray, metric: str) -> None:
    """Draw measured against predicted values per dataset, with the line measured = predicted."""
    labels = np.asarray(observations.labels)
    for name in dataset_names(observations):
        visible = (labels == name) & (predicted > 0)
        axes.scatter(predicted[visible], observations.y[visible], s=16, label=name)
    hidden = int(np.sum(predicted <= 0))
    if hidden:
        # A logarithmic axis cannot show them, and leaving them out without a word would flatter the law.
        axes.text(0.98, 0.02, f"{hidden} predictions <= 0 not shown", ha="right", va="bottom",
                  fontsize="x-small", color="tab:red", transform=axes.transAxes)
    finite = predicted[np.isfinite(predicted)]
    values = np.concatenate([observations.y, finite])
    positive = values[values > 0]
    low, high = positive.min() / 1.3, positive.max() * 1.3
    axes.plot([low, high], [low, high], color="0.5", linewidth=1, label="measured = predicted")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_xlabel(f"predicted {metric}")
    axes.set_ylabel(f"measured {metric}")
    axes.legend(fontsize="x-small")


# The page.

PAGE_WIDTH = 96  # characters per line of the page's paragraphs
UNUSED_TERM_TOLERANCE = 1e-9  # a D' weight or exponent below this leaves the D' term constant


def metric_file_stem(metric: str) -> str:
    """Return the file name stem of a metric: "hr@10" -> "hr_at_10"."""
    return metric.replace("@", "_at_")


@dataclass(frozen=True)
class Report:
    """Everything docs/accuracy.md is written from."""

    runs: Sequence[RunRecord]
    base: dict[str, Observations]
    facts: dict[str, DatasetFacts]
    terms: dict[str, dict[str, float]]
    names: list[str]
    expected_runs: int
    results: dict[tuple[str, str, str], FormResults | str]
    baselines: dict[str, dict[str, Score]]
    shipped: dict[str, FittedLaw]
    training: TrainingFacts
    cut_text: str
    full_log_terms: dict[str, float]

    def result(self, metric: str, form: str = SHIPPED_FORM, choice: str = SHIPPED_VARIANT) -> FormResults:
        """Return the results of a usable D' choice; raise KeyError for an unusable one."""
        result = self.results[(metric, form, choice)]
        if isinstance(result, str):
            raise KeyError(f"{choice} is not usable: {result}")
        return result


def choice_label(choice: str) -> str:
    """Return the table label of a D' choice."""
    return "none (D' = tokens)" if choice == TOKENS_CONTROL else f"`{choice}`"


def compare(value: Score, other: Score) -> str:
    """Return how value compares with other: "lower than", "higher than" or, within 5%, "close to"."""
    if value.value is None or other.value is None:
        return "not comparable with"
    if abs(value.value - other.value) <= 0.05 * abs(other.value):
        return "close to"
    return "lower than" if value.value < other.value else "higher than"


def wrap_markdown(text: str) -> str:
    """Refill the paragraphs and list items of Markdown text to PAGE_WIDTH.

    Tables, headings, images and fenced code are left as they are.
    """
    blocks = []
    for block in text.strip().split("\n\n"):
        if block.startswith(("|", "#", "![", "```")):
            blocks.append(block)
        elif block.startswith("- "):
            items = ("\n" + block).split("\n- ")[1:]
            blocks.append("\n".join(textwrap.fill(" ".join(item.split()), PAGE_WIDTH, initial_indent="- ",
                                                  subsequent_indent="  ", break_on_hyphens=False)
                                    for item in items))
        else:
            blocks.append(textwrap.fill(" ".join(block.split()), PAGE_WIDTH, break_on_hyphens=False))
    return "\n\n".join(blocks)


def write_page(report: Report) -> str:
    """Return the Markdown of docs/accuracy.md."""
    sections = [page_header(report), data_section(report), shipped_section(report),
                accuracy_section(report), by_dataset_section(report), variant_section(report),
                weakness_section(report)]
    return "\n\n".join(wrap_markdown(section) for section in sections) + "\n"


def page_header(report: Report) -> str:
    partial = ""
    if len(report.runs) < report.expected_runs:
        partial = (f"**Partial sweep:** the runs file holds {len(report.runs)} of the "
                   f"{report.expected_runs} runs of the full grid, so every number below rests on "
                   "fewer runs than planned, and some measures could not be taken.")
    return f"""
# Accuracy of the reference laws

perflaw ships one reference law per metric (`core/reference/hr_at_10.json` and
`core/reference/ndcg_at_10.json`). `perflaw predict`, `plan` and `check` and the service use it
when a dataset has no runs of its own. This page measures how far those laws can be trusted.
Every number, table and plot on it is written by `calibration/build_reference.py` from the
{len(report.runs)} verification runs in `calibration/runs.csv`. Rebuild the page and the
shipped laws with

```
{COMMAND}
```

The script reads the runs, the manifest `calibration/datasets.json` and the dataset files the
manifest names. Every fit is seeded (seed {SEED}), so a rebuild gives equal numbers.

{partial}
"""


def data_section(report: Report) -> str:
    training = report.training
    rows = ["| dataset | users | items | interactions | mean length | repeat rate | tokens | runs "
            "| epochs run | best epoch | D' (`reference`) | D' / users |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in report.names:
        fact, d_prime = report.facts[name], report.terms[SHIPPED_VARIANT][name]
        count = sum(run.dataset == name for run in report.runs)
        epochs = "{} to {}".format(*training.epochs_by_dataset.get(name, ("?", "?")))
        best = "{} to {}".format(*training.best_epoch_by_dataset.get(name, ("?", "?")))
        rows.append(f"| {name} | {fact.n_users:,} | {fact.n_items:,} | {fact.n_interactions:,} | "
                    f"{fact.mean_length:.1f} | {fact.repeat_rate:.3f} | {fact.tokens:,} | {count} | "
                    f"{epochs} | {best} | {d_prime:,.0f} | {d_prime / fact.n_users:.2f} |")
    run = report.runs[0]
    settings = ", ".join(f"{name} {' or '.join(map(str, values))}" for name, values in training.settings.items())
    layers = ", ".join(map(str, sorted({run.n_layers for run in report.runs})))
    widths = ", ".join(map(str, sorted({run.d_model for run in report.runs})))
    return f"""
## The runs

Each run trains one SASRec model (`{run.arch}`, {run.n_heads} attention head, max_len
{run.max_len}) on one dataset with `perflaw calibrate`, and measures HR@10 and NDCG@10 on the
test split under the `{run.protocol}` protocol (every item is ranked). The grid is n_layers in
{{{layers}}} x d_model in {{{widths}}}, with one seed per config. Training settings, from the
runs' records in `calibration/runs.jsonl`: {settings}. Device: {', '.join(training.devices)}.
Of the {training.n_records} runs, {training.n_stopped_early} stopped early and
{training.n_at_max_epochs} ran to the epoch limit. Together they trained for
{training.total_train_s / 60:.0f} minutes. The sweep command is in `calibration/README.md`.

The datasets, after the manifest's cut to each log's first users ({report.cut_text}). Tokens
count the last {MAX_LEN} items of each user, and D' = tokens x ApEn with m = {APEN_M},
r = {APEN_R:g}. "Epochs run" and "best epoch" (the epoch of the best validation NDCG@10, whose
model was tested) give the range over the dataset's runs.

{chr(10).join(rows)}
"""


def shipped_section(report: Report) -> str:
    blocks = []
    for metric, law in report.shipped.items():
        params = ", ".join(f"{name} = {value:.4g}" for name, value in law.params.items())
        d = law.diagnostics
        blocks.append(f"- **{metric}**: {params}. R² {d.r2:.3f}, RMSE {d.rmse:.4f}, MAPE "
                      f"{d.mape_percent:.1f}%, leave-one-out MAPE over all runs {d.loo_mape_percent:.1f}%.")
    gaps = [abs(law.diagnostics.r2 - report.result(metric).in_sample_r2.value) for metric, law in report.shipped.items()]
    warnings = sorted({warning for law in report.shipped.values() for warning in law.warnings})
    warning_lines = "\n".join(f"- {warning}" for warning in warnings) or "- none"
    images = "\n\n".join(f"![The shipped {metric} law against its runs](img/accuracy-law-{metric_file_stem(metric)}.png)"
                         for metric in METRICS)
    return f"""
## The shipped laws

Form `{SHIPPED_FORM}`, with D' from the `{SHIPPED_VARIANT}` ApEn (the setting of the Performance
Law authors' code, and the one `perflaw` uses for D'), fitted on every run with seed {SEED} and
{report.shipped[METRICS[0]].diagnostics.n_bootstrap} bootstrap replicates. This is the law that `perflaw fit calibration/runs.csv
--metric METRIC` fits.

{chr(10).join(blocks)}

The fits that measure errors below use {EVALUATION_N_STARTS} starting points instead of the
default {DEFAULT_N_STARTS} and no bootstrap, to keep the rebuild short. On all runs, their R²
differs from the shipped fits' by at most {max(gaps):.1e}.

Warnings of the shipped fits:

{warning_lines}

Each panel shows the law against one input, with the other inputs held at their median, and the
90% bootstrap prediction band; grey points are runs at other values of the held inputs.

{images}
"""


def accuracy_section(report: Report) -> str:
    header = ("| metric | form | in-sample R² | in-sample MAPE | leave-one-out within a dataset | "
              "held out: depth and width | held out: width | held out: depth | leave one dataset out |")
    rows = [header, "|---|---|---|---|---|---|---|---|---|"]
    for metric in METRICS:
        for form in FORMS:
            result = report.result(metric, form)
            splits = [result.extrapolation[name].score.format() for name in ("depth and width", "width", "depth")]
            rows.append(f"| {metric} | `{form}` | {result.in_sample_r2.format('r2')} | "
                        f"{result.in_sample_mape.format()} | {result.within_dataset_all.format()} | "
                        f"{' | '.join(splits)} | {result.leave_one_dataset_out.score.format()} |")
        baseline = report.baselines[metric]
        rows.append(f"| {metric} | naive baseline | | | {baseline['within'].format()} | "
                    f"{baseline['depth and width'].format()} | {baseline['width'].format()} | "
                    f"{baseline['depth'].format()} | {baseline['leave_one_dataset_out'].format()} |")
    images = "\n\n".join(f"![Predicted against measured {metric}](img/accuracy-{metric_file_stem(metric)}.png)"
                         for metric in METRICS)
    return f"""
## Accuracy by measure

All errors are mean absolute percentage errors (MAPE) of predicted against measured metric
values, in percent of the measured value. R² is 1 - RSS / TSS of the fit on all runs. D' comes
from the `{SHIPPED_VARIANT}` ApEn.

- **In sample**: fit on all runs, error on the same runs.
- **Leave-one-out within a dataset**: fit on one dataset's runs alone, so D' is constant and
  folded into the intercept, and predict each run from a law fitted on the others. This is the
  case of a user who trained a few sizes on their own data. The value is the mean over
  datasets, weighted by their runs.
- **Held out** (extrapolation): fit on the smaller configs of every dataset and predict the
  larger ones. "Depth and width" fits the runs below both the largest n_layers and the largest
  d_model and predicts all the others. "Width" holds out the largest d_model, "depth" the
  largest n_layers.
- **Leave one dataset out**: fit on the other datasets and predict every run of this one from
  its D' alone. This is how the reference law is used: on a dataset it has never seen.

The naive baselines use no law. Within a dataset, a run is predicted by the mean of the
dataset's other runs. Held out, a run is predicted by its dataset's best training run ("a
bigger model gains nothing"). Leaving a dataset out, a run is predicted by the mean of the
other datasets' runs of the same config.

{chr(10).join(rows)}

The plots show the shipped form's predictions against the measured values: in sample, leaving
each dataset out, and with the largest depth and width held out. Both axes are logarithmic.

{images}
"""


def by_dataset_section(report: Report) -> str:
    rows = ["| metric | measure, form | " + " | ".join(report.names) + " |",
            "|---|---|" + "---|" * len(report.names)]
    for metric in METRICS:
        for form in FORMS:
            scores = report.result(metric, form).leave_one_dataset_out_by_dataset
            rows.append(f"| {metric} | leave one dataset out, `{form}` | "
                        + " | ".join(scores[name].format() for name in report.names) + " |")
        for form in FORMS:
            scores = report.result(metric, form).within_dataset
            rows.append(f"| {metric} | leave-one-out within the dataset, `{form}` | "
                        + " | ".join(scores[name].format() for name in report.names) + " |")
    d_primes = report.terms[SHIPPED_VARIANT]
    lowest, highest = min(d_primes, key=d_primes.get), max(d_primes, key=d_primes.get)
    return f"""
## Per dataset

MAPE per held-out dataset (leave one dataset out) and per dataset fitted alone (leave-one-out
within it), with D' from the `{SHIPPED_VARIANT}` ApEn. Holding out {lowest} (the smallest D') or
{highest} (the largest) makes the law extrapolate in D'.

{chr(10).join(rows)}
"""


def data_term_text(params: dict[str, float], form: str) -> str:
    """Return the fitted parameters of the D' term of a law, for a table cell."""
    if not params:
        return ""
    names = ("c",) if form == "performance_law" else ("C", "c")
    return ", ".join(f"{name} = {params[name]:.3g}" for name in names)


def data_term_unused(params: dict[str, float], form: str) -> bool:
    """Return whether a fitted law's D' term is constant: c = 0 (Performance Law) or C = 0 (scaling law)."""
    if not params:
        return False
    if form == "performance_law":
        return abs(params["c"]) < UNUSED_TERM_TOLERANCE
    return abs(params["C"]) < UNUSED_TERM_TOLERANCE or abs(params["c"]) < UNUSED_TERM_TOLERANCE


def variant_section(report: Report) -> str:
    header = ["| D' from | " + " | ".join(report.names) + " |", "|---|" + "---|" * len(report.names)]
    for choice in (*APEN_VARIANTS, TOKENS_CONTROL):
        header.append(f"| {choice_label(choice)} | "
                      + " | ".join(f"{report.terms[choice][name]:,.0f}" for name in report.names) + " |")
    rows = ["| metric | form | D' from | in-sample R² | D' term (in sample) | held out: depth and width "
            "| leave one dataset out |", "|---|---|---|---|---|---|---|"]
    for metric in METRICS:
        for form in FORMS:
            for choice in (*APEN_VARIANTS, TOKENS_CONTROL):
                result = report.results[(metric, form, choice)]
                if isinstance(result, str):
                    rows.append(f"| {metric} | `{form}` | {choice_label(choice)} | not usable: {result} | | | |")
                    continue
                rows.append(f"| {metric} | `{form}` | {choice_label(choice)} | {result.in_sample_r2.format('r2')} | "
                            f"{data_term_text(result.in_sample_params, form)} | "
                            f"{result.extrapolation['depth and width'].score.format()} | "
                            f"{result.leave_one_dataset_out.score.format()} |")
    return f"""
## By ApEn variant

D' of each dataset under each ApEn variant of `perflaw profile` (m = {APEN_M}, r = {APEN_R:g},
max_len = {MAX_LEN}), and, as a control, with ApEn replaced by 1 so that D' is the token count:

{chr(10).join(header)}

Both forms need D' > 0: the Performance Law's D' term is -1 / (xi D'^c) - c ln D', and the
scaling law's is -C D'^(-c). A variant that gives D' <= 0 on some dataset therefore cannot be
fitted across these datasets. No shift is applied to make it positive, because the constant
would be arbitrary and would decide the result. The leave-one-out error within a dataset does
not depend on the variant, because one dataset has one D', which is folded. In the D' term
column, the Performance Law's c = 0 and the scaling law's C = 0 mean the fit found no use for D'.

{chr(10).join(rows)}
"""


def weakness_section(report: Report) -> str:
    lines = [weakness_data_term(report), weakness_across_datasets(report), weakness_control(report),
             weakness_extrapolation(report), weakness_full_logs(report), weakness_runs(report),
             "- **The Pincus and pooled ApEn cannot be used** across these datasets (see the table above), "
             "so the shipped laws rest on the `reference` variant alone."]
    return "## Where the law is weak\n\n" + "\n".join(line for line in lines if line)


def weakness_data_term(report: Report) -> str:
    facts = report.facts
    no_repeat = [name for name in report.names if facts[name].repeat_rate == 0]
    gaps = [abs(facts[name].apen[SHIPPED_VARIANT] - facts[name].length_only_apen) / facts[name].apen[SHIPPED_VARIANT]
            for name in no_repeat]
    repeat = [name for name in report.names if facts[name].repeat_rate > 0]
    ratios = [report.terms[SHIPPED_VARIANT][name] / facts[name].n_users for name in report.names]
    return (f"- **D' measures sequence length and user count here, not regularity.** No user repeats an "
            f"item in {', '.join(no_repeat) or 'none of the datasets'}. There, the `reference` ApEn is "
            f"ln((n - 1) / (n - 2)) averaged over the users' cut lengths n (largest relative difference "
            f"{max(gaps, default=0):.1e}), a function of the lengths alone. Only {', '.join(repeat) or 'no dataset'} "
            f"has repeats. So D' = tokens x ApEn is {min(ratios):.2f} to {max(ratios):.2f} times the number "
            "of users.")


def weakness_across_datasets(report: Report) -> str:
    metric = METRICS[0]
    observations = observations_with(report.base[metric], report.terms[SHIPPED_VARIANT])
    labels = np.asarray(observations.labels)
    means = {name: float(observations.y[labels == name].mean()) for name in report.names}
    by_d_prime = sorted(report.names, key=report.terms[SHIPPED_VARIANT].get)
    by_metric = sorted(report.names, key=means.get)
    baseline = report.baselines[metric]["leave_one_dataset_out"]
    parts = []
    for form in FORMS:
        score = report.result(metric, form).leave_one_dataset_out.score
        parts.append(f"Leaving a dataset out, the {metric} MAPE of `{form}` is {score.format()}, "
                     f"{compare(score, baseline)} the naive baseline's {baseline.format()}.")
    unused = [form for form in FORMS if data_term_unused(report.result(metric, form).in_sample_params, form)]
    if unused:
        parts.append(f"The in-sample fit of {', '.join(f'`{form}`' for form in unused)} sets the weight of its "
                     "D' term to about 0 (table below), so it predicts every dataset alike.")
    return (f"- **Across datasets, the law sees only D'.** The {len(report.names)} datasets give "
            f"{len(report.names)} values of D', and the Performance Law's D' term has one parameter. "
            f"Ordered by D' the datasets are {', '.join(by_d_prime)}; ordered by mean {metric} over their runs "
            f"they are {', '.join(by_metric)} (from {min(means.values()):.3f} to {max(means.values()):.3f}). "
            f"They also differ in what D' does not see: item count, domain and popularity. {' '.join(parts)}")


def weakness_control(report: Report) -> str:
    parts = []
    for metric in METRICS:
        with_apen = report.result(metric).leave_one_dataset_out.score
        tokens = report.result(metric, choice=TOKENS_CONTROL).leave_one_dataset_out.score
        parts.append(f"For {metric} it is {with_apen.format()} with the `{SHIPPED_VARIANT}` ApEn, "
                     f"{compare(with_apen, tokens)} the {tokens.format()} with D' = tokens.")
    return (f"- **ApEn against the token count.** The leave-one-dataset-out MAPE of `{SHIPPED_FORM}` "
            f"compares as follows. {' '.join(parts)} Each of these numbers rests on how "
            f"{len(report.names)} datasets line up along one D' axis, so one more dataset could reverse "
            "the comparison.")


def weakness_extrapolation(report: Report) -> str:
    split = "depth and width"
    parts = []
    for metric in METRICS:
        score = report.result(metric).extrapolation[split].score
        baseline = report.baselines[metric][split]
        parts.append(f"For {metric} its MAPE is {score.format()}, {compare(score, baseline)} the naive "
                     f"baseline's {baseline.format()}.")
    observations = report.base[METRICS[0]]
    splits = extrapolation_splits(observations)
    trained_values = min(len(np.unique(observations.d_model[splits["width"]])),
                         len(np.unique(observations.n_layers[splits["depth"]])))
    caveat = ""
    if trained_values == 2:
        caveat = (" The training runs of each split have only 2 values of the held-out input, which cannot "
                  "determine both a term's weight and its exponent, so the curve beyond them is not supported "
                  "by data.")
    return (f"- **Extrapolating to larger models.** `{SHIPPED_FORM}` was fitted on the runs below the "
            f"largest depth and width of every dataset and predicted the larger ones. {' '.join(parts)} The "
            f"table above gives the other splits.{caveat}")


def weakness_full_logs(report: Report) -> str:
    """Describe what the shipped laws predict on the whole logs that the manifest cut."""
    if not report.full_log_terms:
        return ""
    law = report.shipped[METRICS[0]]
    median_inputs = held_values(law)
    low, high = law.input_ranges["d_prime"]
    parts, outside = [], False
    for name, d_prime in report.full_log_terms.items():
        predicted = {metric: float(report.shipped[metric].predict(median_inputs["n_layers"], median_inputs["d_model"],
                                                                  d_prime))
                     for metric in METRICS}
        outside |= any(not 0 <= value <= 1 for value in predicted.values())
        text = ", ".join(f"{metric} {value:.3f}" for metric, value in predicted.items())
        parts.append(f"The whole log behind {name} has D' = {d_prime:,.0f}, where the laws predict {text} "
                     f"at n_layers = {median_inputs['n_layers']:g} and d_model = {median_inputs['d_model']:g}.")
    caveat = (" A prediction outside [0, 1] is the formula's value, not a metric." if outside else "")
    return (f"- **D' beyond the fitted range.** The shipped laws were fitted on D' from {low:,.0f} to {high:,.0f}. "
            f"{' '.join(parts)}{caveat} "
            "`perflaw predict` flags such a D' as extrapolated. Until the law is fitted on larger datasets, "
            "use it on data the size of the calibration datasets, or fit a law on runs of your own.")


def weakness_runs(report: Report) -> str:
    training = report.training
    inversions, pairs = count_size_inversions(report.base[METRICS[1]])
    largest_users = max(fact.n_users for fact in report.facts.values())
    no_trend = ""
    if pairs and inversions >= 0.4 * pairs:
        no_trend = " Within these grids, a larger model is about as likely to score lower as higher."
    patience = max(training.settings["patience"])
    early = [name for name, (_, latest) in training.best_epoch_by_dataset.items() if latest <= patience]
    early_text = ""
    if early:
        early_text = (f" On {', '.join(early)}, the validation NDCG@10 of every run peaked within the first "
                      f"{patience} epochs, and training stopped soon after.")
    return (f"- **The runs are small and noisy.** They were trained on {', '.join(training.devices)}, one seed "
            f"per config, on datasets of at most {largest_users:,} users, with n_layers and d_model in the "
            f"ranges above. In {inversions} of {pairs} pairs of runs of one dataset one grid step apart, the "
            f"larger model measured a lower {METRICS[1]}.{no_trend} Of all runs, {training.n_at_max_epochs} "
            f"stopped at the epoch limit.{early_text} Part of the measured differences is likely training "
            "noise, which one seed per config cannot separate from the effect of size. A larger model, a full dataset or a GPU training recipe lies outside the fitted "
            "range, and `perflaw predict` flags such inputs as extrapolated.")


# Driver.

def evaluate_all(base: dict[str, Observations], terms: dict[str, dict[str, float]],
                 names: list[str], progress: Callable[[str], None]) -> tuple[dict, dict]:
    """Return the results per (metric, form, D' choice) and the baselines per metric."""
    results, baselines = {}, {}
    for metric in METRICS:
        reference_observations = observations_with(base[metric], terms[SHIPPED_VARIANT])
        splits = extrapolation_splits(reference_observations)
        baselines[metric] = {
            "within": baseline_within_dataset(reference_observations),
            "leave_one_dataset_out": baseline_leave_one_dataset_out(reference_observations),
            **{name: baseline_extrapolation(reference_observations, train) for name, train in splits.items()},
        }
        for form in FORMS:
            progress(f"{metric} {form}: leave-one-out within each dataset")
            within = within_dataset_errors(reference_observations, form, metric)
            for choice in (*APEN_VARIANTS, TOKENS_CONTROL):
                reason = unusable_reason(terms[choice], names)
                if reason:
                    results[(metric, form, choice)] = reason
                    continue
                progress(f"{metric} {form}: D' from {choice}")
                results[(metric, form, choice)] = evaluate_form(
                    observations_with(base[metric], terms[choice]), form, metric, within)
    return results, baselines


def write_shipped_laws(runs: Sequence[RunRecord], results: dict, names: list[str],
                       facts: dict[str, DatasetFacts], training: TrainingFacts, n_bootstrap: int,
                       progress: Callable[[str], None]) -> dict[str, FittedLaw]:
    """Fit the shipped law of each metric, write core/reference/<metric>.json and return the laws."""
    protocol, arch = single_value(runs, "protocol"), single_value(runs, "arch")
    max_users = max(fact.n_users for fact in facts.values())
    (REPOSITORY_ROOT / REFERENCE_DIR).mkdir(parents=True, exist_ok=True)
    shipped = {}
    for metric in METRICS:
        progress(f"{metric}: shipped law with {n_bootstrap} bootstrap replicates")
        held_out = results[(metric, SHIPPED_FORM, SHIPPED_VARIANT)].leave_one_dataset_out
        document = build_shipped_law(runs, metric, protocol, arch, held_out, names, max_users, n_bootstrap,
                                     training.devices)
        shipped[metric] = FittedLaw.from_dict(document["law"])
        path = REPOSITORY_ROOT / REFERENCE_DIR / f"{metric_file_stem(metric)}.json"
        path.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
    return shipped


def write_plots(report: Report) -> None:
    """Write docs/img/accuracy-<metric>.png and accuracy-law-<metric>.png for every metric."""
    (REPOSITORY_ROOT / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    for metric in METRICS:
        stem = metric_file_stem(metric)
        observations = observations_with(report.base[metric], report.terms[SHIPPED_VARIANT])
        (REPOSITORY_ROOT / IMAGE_DIR / f"accuracy-{stem}.png").write_bytes(
            plot_accuracy(observations, report.shipped[metric], report.result(metric), metric))
        (REPOSITORY_ROOT / IMAGE_DIR / f"accuracy-law-{stem}.png").write_bytes(
            plot_law(report.shipped[metric], dpi=90))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets-dir", type=Path, required=True,
                        help="Folder the manifest's dataset paths are relative to.")
    parser.add_argument("--expected-runs", type=int, default=45,
                        help="Runs of the complete sweep; fewer in the runs file are reported as partial.")
    parser.add_argument("--n-bootstrap", type=int, default=N_BOOTSTRAP,
                        help="Bootstrap replicates of the shipped laws; lower only for a quick trial.")
    arguments = parser.parse_args(argv)
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {message}", file=sys.stderr, flush=True)

    # Runs, datasets and D' under every variant.
    runs = read_runs(REPOSITORY_ROOT / RUNS_PATH)
    protocol, arch = single_value(runs, "protocol"), single_value(runs, "arch")
    entries = [entry for entry in read_manifest(REPOSITORY_ROOT / MANIFEST_PATH)
               if any(run.dataset == entry["name"] for run in runs)]
    names = [entry["name"] for entry in entries]
    facts = {entry["name"]: describe_dataset(entry["name"], load_dataset(entry, arguments.datasets_dir))
             for entry in entries}
    terms = data_terms(facts)
    check_runs_match(runs, terms[SHIPPED_VARIANT])
    training = describe_training(REPOSITORY_ROOT / RECORDS_PATH, runs)
    cut_text = "; ".join(f"{entry['name']}: " + (f"first {entry['max_users']:,} users" if entry.get("max_users")
                                                   else "all users") for entry in entries)
    progress(f"{len(runs)} runs of {len(names)} datasets read")

    # Measures, the shipped laws, then plots and the page.
    base = {metric: select_observations(runs, metric, protocol=protocol, arch=arch) for metric in METRICS}
    results, baselines = evaluate_all(base, terms, names, progress)
    shipped = write_shipped_laws(runs, results, names, facts, training, arguments.n_bootstrap, progress)
    report = Report(runs, base, facts, terms, names, arguments.expected_runs, results, baselines, shipped,
                    training, cut_text, full_log_d_primes(entries, arguments.datasets_dir))
    write_plots(report)
    (REPOSITORY_ROOT / DOC_PATH).write_text(write_page(report))
    progress(f"wrote {REFERENCE_DIR}, {DOC_PATH} and {IMAGE_DIR}/accuracy-*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
