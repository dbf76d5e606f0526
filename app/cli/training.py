"""`perflaw train`: one verification run, locally or as a job on a server."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from app.cli import client, offline
from app.cli.analysis import (
    FileArgument, FormatOption, HeaderOption, ItemColumnOption, JsonOption, SeparatorOption, ServerOption,
    TimestampColumnOption, UserColumnOption, _read_arguments,
)
from app.cli.output import fail, print_json, stderr
from app.cli.render import render_training
from app.dataset_service import data_term_of
from app.law_service import compare_with_measured, evaluate_grid, law_profile_params, load_reference_law

POLL_INTERVAL_S = 2.0
PREDICTION_LEVEL = 0.9  # coverage of the reference law's interval, as in `perflaw predict`


def train(
    file: FileArgument,
    layers: Annotated[int, typer.Option(help="Transformer blocks.")] = 2,
    d_model: Annotated[int, typer.Option("--d-model", help="Embedding width.")] = 64,
    n_heads: Annotated[int, typer.Option(help="Attention heads; d_model must be a multiple.")] = 1,
    arch: Annotated[str, typer.Option(help="sasrec or llama.")] = "sasrec",
    max_len: Annotated[int, typer.Option("--max-len", help="Longest input sequence, in items.")] = 50,
    dropout: Annotated[float, typer.Option(help="Dropout probability.")] = 0.2,
    protocol: Annotated[str, typer.Option(help="Evaluation: full, sampled-100 or sampled-2499.")] = "full",
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 200,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    loss: Annotated[str, typer.Option(help="bce (one sampled negative) or sampled_softmax.")] = "bce",
    patience: Annotated[int, typer.Option(help="Evaluations without improvement before stopping.")] = 10,
    eval_every: Annotated[int, typer.Option(help="Epochs between validation evaluations.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of Python, NumPy and torch.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    runs_out: Annotated[Path | None, typer.Option(help="Append the run to this runs CSV (for `perflaw fit`).")] = None,
    format: FormatOption = None, separator: SeparatorOption = None, header: HeaderOption = None,
    user_column: UserColumnOption = None, item_column: ItemColumnOption = None, timestamp_column: TimestampColumnOption = None,
    server: ServerOption = None,
    json_output: JsonOption = False,
) -> None:
    """Train and evaluate one SASRec-style model (leave-one-out), and print the measured metrics."""
    read_options = _read_arguments(format, separator, header, user_column, item_column, timestamp_column)
    model = {"arch": arch, "n_layers": layers, "d_model": d_model, "n_heads": n_heads, "max_len": max_len, "dropout": dropout}
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "loss": loss, "patience": patience,
                "eval_every": eval_every, "protocol": protocol, "seed": seed}
    model_config, train_config = _check_configs(model, {**settings, "device": device})
    # Under torchrun every process runs this command; rank 0 alone shows progress and output.
    main_process = int(os.environ.get("RANK", "0")) == 0
    show_progress = not json_output and main_process

    if server:
        document = _train_on_server(server, file, read_options, model, settings, show_progress=show_progress)
    else:
        document = _train_locally(file, read_options, model_config, train_config, show_progress=show_progress)
        if not main_process:
            return
        if runs_out:
            _append_run(runs_out, document)
    document["notes"].extend(_training_notes(document, on_server=bool(server)))

    if json_output:
        print_json(document)
    else:
        render_training(document)


def _check_configs(model: dict, settings: dict):
    """Return (ModelConfig, TrainConfig) from the options, or exit 2 before any file is read.

    The item count is not known yet, so the ModelConfig has one item until the file is read.
    """
    from core.models import ModelConfig
    from core.training import TrainConfig

    try:
        return ModelConfig(n_items=1, **model), TrainConfig(**settings)
    except (TypeError, ValueError) as error:
        fail(str(error))


def _train_locally(file: Path, read_options, model_config, train_config, *, show_progress: bool) -> dict:
    """Train on this machine; return the result document, with the file's read warnings as its first notes."""
    from core.profile import profile_dataset
    from core.training import train_and_evaluate

    read = offline.read_file(file, read_options, show_progress=show_progress)
    dataset = read.dataset
    model_config = dataclasses.replace(model_config, n_items=dataset.n_items)
    profile_params = law_profile_params(model_config.max_len)
    tokens, apen, d_prime = data_term_of(profile_dataset(dataset, profile_params).to_dict())

    with _epoch_progress(train_config.epochs, train_config.metric, show_progress) as on_epoch:
        try:
            result = train_and_evaluate(dataset, model_config, train_config, on_epoch=on_epoch)
        except ValueError as error:
            fail(f"{file}: {error}")

    document = {"dataset": file.name, "tokens": tokens, "apen": apen, "d_prime": d_prime,
                "apen_variant": profile_params.variant, "notes": list(read.warnings), **result.to_dict()}
    prediction = _compare_with_reference_laws(document)
    if prediction:
        document["prediction"] = prediction
    return document


def _compare_with_reference_laws(document: dict) -> dict[str, dict]:
    """Return, per metric with a shipped reference law, its prediction for this run against the measurement.

    Only runs with the reference law's protocol and architecture are compared, because a law
    fitted on full ranking cannot predict sampled metrics, which are much higher.
    """
    model = document["config"]["model"]
    comparison = {}
    for metric in ("hr@10", "ndcg@10"):
        reference = load_reference_law(metric)
        if reference is None or (reference.protocol, reference.arch) != (document["protocol"], model["arch"]):
            continue
        (row,) = evaluate_grid(reference.law, document["d_prime"], [(model["n_layers"], model["d_model"])], PREDICTION_LEVEL)
        measured = document["metrics"][metric]
        comparison[metric] = {**compare_with_measured(row["predicted"], row["low"], row["high"], measured), "law_ref": "reference"}
    return comparison


def _training_notes(document: dict, *, on_server: bool) -> list[str]:
    """Return sentences that qualify the measured metrics or explain why no prediction is compared."""
    notes = []
    if document.get("stopped_early") is False:
        notes.append("training reached the epoch limit before early stopping, so the model may be undertrained "
                     "and measure lower than a law fitted on converged runs predicts")
    if not document.get("prediction"):
        if on_server:
            notes.append("no prediction to compare with: the server has none for this dataset and size; "
                         "POST /v1/predictions before the verification run to get one")
        else:
            notes.append("no prediction to compare with: the shipped reference laws cover sasrec under the full "
                         "protocol only")
    return notes


class _epoch_progress:
    """A context manager yielding an on_epoch callback: a bar on a terminal, a line per epoch otherwise."""

    def __init__(self, total_epochs: int, metric: str, enabled: bool) -> None:
        self.total_epochs = total_epochs
        self.metric = metric
        self.enabled = enabled
        self.progress = None

    def __enter__(self):
        if self.enabled and stderr.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=stderr, transient=True)
            self.progress.start()
            self.task = self.progress.add_task("training", total=self.total_epochs)
        return self.report

    def report(self, epoch_report) -> None:
        if not self.enabled:
            return
        best = epoch_report.best_validation_metric
        description = f"epoch {epoch_report.epoch} loss {epoch_report.train_loss:.4f}" + (
            f", best validation {self.metric} {best:.4f} (epoch {epoch_report.best_epoch})" if best is not None else "")
        if self.progress is not None:
            self.progress.update(self.task, completed=epoch_report.epoch, description=description)
        else:
            print(description, file=sys.stderr, flush=True)

    def __exit__(self, *exc_info) -> None:
        if self.progress is not None:
            self.progress.stop()


def _train_on_server(server: str, file: Path, read_options, model: dict, settings: dict, *, show_progress: bool) -> dict:
    """Run the training as a server job; return the result document, with the upload's warnings as its first notes."""
    dataset = client.upload_file(server, file, read_options)
    jobs = client.request_json(server, "POST", f"/v1/datasets/{dataset['id']}/verification-runs",
                               json={"configs": [model], "train": settings})
    job = jobs["items"][0]
    last_epoch = None
    while job["status"] in ("queued", "running"):
        time.sleep(POLL_INTERVAL_S)
        job = client.request_json(server, "GET", f"/v1/jobs/{job['id']}")
        epoch = job["progress"].get("epoch")
        if show_progress and epoch != last_epoch and epoch is not None:
            print(f"job {job['id']}: epoch {epoch} {job['status']}", file=sys.stderr, flush=True)
            last_epoch = epoch
    if job["status"] != "succeeded":
        fail(f"job {job['id']} {job['status']}: {job.get('error') or 'no error recorded'}", 3)
    run = client.request_json(server, "GET", f"/v1/runs/{job['result']['run_id']}")
    return {"dataset": dataset["name"], "job_id": job["id"], **job["result"], "run": run,
            "notes": list(dataset.get("warnings", []))}


def _append_run(path: Path, document: dict) -> None:
    """Append the run to a runs CSV, writing the header when the file is new."""
    from core.runs_file import RunRecord, format_runs

    config = document["config"]["model"]
    record = RunRecord(
        dataset=document["dataset"], n_layers=config["n_layers"], d_model=config["d_model"], n_heads=config["n_heads"],
        max_len=config["max_len"], d_prime=document["d_prime"], protocol=document["protocol"],
        metrics=document["metrics"], tokens=int(document["tokens"]), apen=document["apen"], arch=config["arch"],
        seed=document["config"]["train"]["seed"], train_time_s=document["train_time_s"],
    )
    text = format_runs([record], "csv")
    if path.exists() and path.stat().st_size:
        text = text.split("\n", 1)[1]
    with open(path, "a") as file:
        file.write(text)


def register(app: typer.Typer) -> None:
    app.command()(train)
