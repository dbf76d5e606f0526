"""Measure training throughput and epoch time on the Amazon Video data.

For each configuration the script trains on a random sample of users (same item table as
the full data) for a few epochs, times the last epoch and one validation pass, and
extrapolates both to all Video users. The first epoch is a warm-up and is not timed.
On a shared machine the wall-clock rate depends on the other load, so the script also
reports the rate per second of this process's CPU time, which with one thread is close to
what an idle core would give.

Usage (from the repository root):
    nice -n 10 python bench/bench_train.py [--users 3000] [--threads 1] [--device cpu]
Writes bench/out/bench_train.json and prints one line per configuration.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from resumable_run import OUTPUT_DIR, data_dir, load_user_item_lines

from core.dataset import SequenceDataset
from core.models import ModelConfig, build_model
from core.training import (
    TrainConfig,
    build_optimizer,
    evaluate_model,
    resolve_device,
    split_leave_one_out,
    train_one_epoch,
)

CONFIGS = {
    "video-sasrec-2x50": dict(arch="sasrec", n_layers=2, d_model=50, n_heads=1, dropout=0.5),
    "sasrec-4x256": dict(arch="sasrec", n_layers=4, d_model=256, n_heads=4, dropout=0.2),
    "llama-4x256": dict(arch="llama", n_layers=4, d_model=256, n_heads=4, dropout=0.2),
}
MAX_LEN = 50


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000, help="users sampled for timing")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per config, first untimed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names")
    return parser.parse_args()


def sample_users(dataset: SequenceDataset, n_users: int, seed: int = 0) -> SequenceDataset:
    """Return a dataset of n_users random users that keeps the full item table."""
    users = np.sort(np.random.default_rng(seed).choice(dataset.n_users, n_users, replace=False))
    sequences = [dataset.sequence(int(user)) for user in users]
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum([len(sequence) for sequence in sequences], out=offsets[1:])
    return SequenceDataset(
        items=np.concatenate(sequences),
        offsets=offsets,
        user_labels=dataset.user_labels[users],
        item_labels=dataset.item_labels,
    )


def measure(
    name: str, sample: SequenceDataset, full_users: int, full_sequences: int, arguments
) -> dict:
    model_config = ModelConfig(max_len=MAX_LEN, n_items=sample.n_items, **CONFIGS[name])
    train_config = TrainConfig(
        protocol="sampled-100", device=arguments.device, num_threads=arguments.threads
    )
    device = resolve_device(arguments.device)
    torch.manual_seed(0)
    split = split_leave_one_out(sample, MAX_LEN)
    model = build_model(model_config).to(device)
    optimizer = build_optimizer(model, train_config)
    rng = np.random.default_rng(0)

    for _ in range(arguments.epochs):
        started, cpu_started = time.perf_counter(), time.process_time()
        train_one_epoch(model, optimizer, split, train_config, rng, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_s = time.perf_counter() - started
        epoch_cpu_s = time.process_time() - cpu_started
    started, cpu_started = time.perf_counter(), time.process_time()
    evaluate_model(model, split.validation, train_config, device, seed=1)
    validation_s = time.perf_counter() - started
    validation_cpu_s = time.process_time() - cpu_started

    sequences_per_s = len(split.train_inputs) / epoch_s
    sequences_per_cpu_s = len(split.train_inputs) / epoch_cpu_s
    return {
        "config": name,
        "n_parameters": sum(parameter.numel() for parameter in model.parameters()),
        "sequences_per_s": sequences_per_s,
        "sequences_per_cpu_s": sequences_per_cpu_s,
        "epoch_s_full_data": full_sequences / sequences_per_s,
        "epoch_cpu_s_full_data": full_sequences / sequences_per_cpu_s,
        "validation_s_full_data": validation_s * full_users / split.validation.n_users,
        "validation_cpu_s_full_data": validation_cpu_s * full_users / split.validation.n_users,
    }


def main() -> None:
    arguments = parse_arguments()
    torch.set_num_threads(arguments.threads)
    dataset = load_user_item_lines(data_dir() / "amazon-video-sasrec" / "Video.txt")
    full_split = split_leave_one_out(dataset, MAX_LEN)
    sample = sample_users(dataset, arguments.users)

    rows = []
    for name in arguments.configs.split(","):
        row = measure(
            name, sample, full_split.validation.n_users, len(full_split.train_inputs), arguments
        )
        rows.append(row)
        print(
            f"{name}: {row['n_parameters']:,} parameters, "
            f"{row['sequences_per_s']:.0f} sequences/s "
            f"({row['sequences_per_cpu_s']:.0f} per CPU s), "
            f"epoch {row['epoch_s_full_data']:.1f} s ({row['epoch_cpu_s_full_data']:.1f} CPU s), "
            f"validation {row['validation_s_full_data']:.1f} s "
            f"({row['validation_cpu_s_full_data']:.1f} CPU s), extrapolated to all Video users",
            flush=True,
        )

    document = {
        "rows": rows,
        "users_sampled": arguments.users,
        "threads": arguments.threads,
        "device": arguments.device,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUTPUT_DIR / "bench_train.json").write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
