"""`perflaw calibrate`: the resumable sweep of verification runs behind the reference law."""

from __future__ import annotations

import csv
import json
import platform
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from app.cli import offline
from app.cli.analysis import _int_list
from app.cli.output import fail
from app.cli.training import _append_run
from app.dataset_service import data_term_of
from app.law_service import law_profile_params


def _done_keys(runs_csv: Path) -> set[tuple]:
    """Return (dataset, n_layers, d_model, seed, protocol) of every run already in the file."""
    if not runs_csv.exists():
        return set()
    with open(runs_csv, newline="") as file:
        return {(row["dataset"], int(row["n_layers"]), int(row["d_model"]), int(row["seed"]), row["protocol"])
                for row in csv.DictReader(file)}


def _load_manifest(manifest: Path, datasets_dir: Path) -> list[dict]:
    try:
        entries = json.loads(manifest.read_text())["datasets"]
    except (OSError, ValueError, KeyError) as error:
        fail(f"cannot read the dataset manifest {manifest}: {error}")
    for entry in entries:
        entry["file"] = datasets_dir / entry["path"]
        if not entry["file"].is_file():
            fail(f"dataset {entry['name']!r}: file not found at {entry['file']}; set --datasets-dir")
    return entries


def calibrate(
    manifest: Annotated[Path, typer.Argument(help="JSON list of datasets: name, path, read options, max_users.")],
    datasets_dir: Annotated[Path, typer.Option(envvar="PERFLAW_DATA_DIR", help="Folder the manifest's paths are relative to.")],
    out: Annotated[Path, typer.Option(help="Runs CSV; runs already in it are skipped, new ones appended as they finish.")],
    layers: Annotated[str, typer.Option(help="Layer counts, comma-separated.")] = "1,2,4",
    d_model: Annotated[str, typer.Option("--d-model", help="Widths, comma-separated.")] = "16,32,64",
    protocol: Annotated[str, typer.Option(help="Evaluation protocol of every run.")] = "full",
    epochs: Annotated[int, typer.Option(help="Maximum epochs per run.")] = 30,
    patience: Annotated[int, typer.Option(help="Evaluations without improvement before stopping.")] = 3,
    max_len: Annotated[int, typer.Option("--max-len", help="Model max_len.")] = 50,
    dropout: Annotated[float, typer.Option(help="Dropout probability.")] = 0.2,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Sequences per step.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of every run.")] = 0,
    threads: Annotated[int, typer.Option(help="torch CPU threads per run.")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Train every dataset x layers x width config once and append each run to --out as it finishes.

    Interrupt it at any time: the next call with the same --out continues with the runs that
    are missing. Full results (config, seeds, versions, device, timings) go to --out with
    the suffix .jsonl.
    """
    from core.dataset import first_users
    from core.models import ModelConfig
    from core.profile import profile_dataset
    from core.training import TrainConfig, train_and_evaluate

    entries = _load_manifest(manifest, datasets_dir)
    grid = [(n_layers, width) for n_layers in _int_list(layers, "--layers") for width in _int_list(d_model, "--d-model")]
    done = _done_keys(out)
    details_path = out.with_suffix(".jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)

    loaded = {}
    for entry in entries:
        dataset = offline.read_file(entry["file"], offline.ReadArguments(**entry["read"]), show_progress=False).dataset
        if entry.get("max_users"):
            dataset = first_users(dataset, entry["max_users"])
        tokens, apen, d_prime = data_term_of(profile_dataset(dataset, law_profile_params(max_len)).to_dict())
        loaded[entry["name"]] = (dataset, tokens, apen, d_prime)

    todo = [(name, n_layers, width) for n_layers, width in grid for name in loaded
            if (name, n_layers, width, seed, protocol) not in done]
    print(f"{len(grid) * len(loaded) - len(todo)} runs already in {out}; {len(todo)} to train", file=sys.stderr, flush=True)
    for index, (name, n_layers, width) in enumerate(todo, start=1):
        dataset, tokens, apen, d_prime = loaded[name]
        model_config = ModelConfig(n_items=dataset.n_items, n_layers=n_layers, d_model=width, max_len=max_len, dropout=dropout)
        train_config = TrainConfig(epochs=epochs, patience=patience, lr=lr, batch_size=batch_size, protocol=protocol, seed=seed, device=device, num_threads=threads)
        started = time.perf_counter()
        result = train_and_evaluate(dataset, model_config, train_config).to_dict()
        document = {"dataset": name, "tokens": tokens, "apen": apen, "d_prime": d_prime, **result,
                    "machine": platform.platform(), "python": platform.python_version()}
        _append_run(out, document)
        with open(details_path, "a") as details:
            details.write(json.dumps(document) + "\n")
        print(f"[{index}/{len(todo)}] {name} {n_layers}x{width}: hr@10 {result['metrics']['hr@10']:.4f} "
              f"ndcg@10 {result['metrics']['ndcg@10']:.4f} in {time.perf_counter() - started:.0f} s "
              f"({result['epochs_run']} epochs)", file=sys.stderr, flush=True)


def register(app: typer.Typer) -> None:
    app.command()(calibrate)
