"""Run train_and_evaluate with checkpoints and progress files under bench/out/.

Shared by the reproduction scripts. For an output stem such as bench/out/video_sasrec:
- STEM.ckpt: the latest checkpoint (torch.save), replaced atomically every epoch;
- STEM.progress.jsonl: one JSON line per epoch (loss, validation metrics, timing);
- STEM.json: the final TrainResult.to_dict() plus the command line and the wall time.
Starting the same command again resumes from STEM.ckpt.

The loaders parse the two raw formats directly, so these scripts do not depend on the
general readers in core.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from core.dataset import SequenceDataset, from_sequences
from core.models import ModelConfig
from core.training import EpochReport, TrainConfig, TrainResult, train_and_evaluate

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = REPOSITORY_ROOT / "bench" / "out"


def data_dir() -> Path:
    """Return PERFLAW_DATA_DIR, or ../shared/data beside the repository."""
    return Path(os.environ.get("PERFLAW_DATA_DIR", REPOSITORY_ROOT.parent / "shared" / "data"))


def load_user_item_lines(path: Path) -> SequenceDataset:
    """Read `user item` lines that are grouped by user and in time order (SASRec's format).

    Item ids must already be 1..n_items; each user's lines must be contiguous.
    """
    pairs = np.loadtxt(path, dtype=np.int64, ndmin=2)
    boundaries = np.flatnonzero(np.diff(pairs[:, 0])) + 1
    sequences = [chunk.tolist() for chunk in np.split(pairs[:, 1], boundaries)]
    return from_sequences(sequences)


def load_movielens(path: Path) -> SequenceDataset:
    """Read MovieLens u.data (user, item, rating, timestamp, tab-separated).

    Each user's items are sorted by timestamp with ties in file order (a stable sort);
    items are re-indexed 1..n_items in order of their original ids.
    """
    table = np.loadtxt(path, dtype=np.int64, ndmin=2)
    order = np.lexsort((table[:, 3], table[:, 0]))
    users, items = table[order, 0], table[order, 1]
    _, item_ids = np.unique(items, return_inverse=True)
    boundaries = np.flatnonzero(np.diff(users)) + 1
    return from_sequences([chunk.tolist() for chunk in np.split(item_ids + 1, boundaries)])


def write_atomically(path: Path, write) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    write(temporary)
    temporary.replace(path)


def run_resumable(
    dataset: SequenceDataset, model_config: ModelConfig, train_config: TrainConfig, stem: Path
) -> TrainResult:
    """Train with a checkpoint every epoch, resuming from STEM.ckpt when it exists."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    checkpoint_path = stem.with_suffix(".ckpt")
    progress_path = stem.with_suffix(".progress.jsonl")
    resume_from = None
    if checkpoint_path.exists():
        resume_from = torch.load(checkpoint_path, weights_only=True)
        print(f"resuming after epoch {resume_from['progress']['epoch']}", flush=True)

    def save_checkpoint(state: dict) -> None:
        write_atomically(checkpoint_path, lambda path: torch.save(state, path))

    def report_epoch(report: EpochReport) -> None:
        with open(progress_path, "a") as file:
            file.write(json.dumps(asdict(report)) + "\n")
        if report.validation is not None:
            metric = train_config.metric
            print(
                f"epoch {report.epoch}: loss {report.train_loss:.4f}, "
                f"validation {metric} {report.validation[metric]:.4f} "
                f"(best {report.best_validation_metric:.4f} at epoch {report.best_epoch}), "
                f"{report.seconds:.1f} s, {report.sequences_per_s:.0f} sequences/s",
                flush=True,
            )

    started = time.perf_counter()
    result = train_and_evaluate(
        dataset,
        model_config,
        train_config,
        on_epoch=report_epoch,
        on_checkpoint=save_checkpoint,
        resume_from=resume_from,
    )
    document = result.to_dict()
    document["command"] = " ".join(sys.argv)
    document["wall_time_this_attempt_s"] = time.perf_counter() - started
    text = json.dumps(document, indent=2)
    write_atomically(stem.with_suffix(".json"), lambda path: path.write_text(text))
    return result
