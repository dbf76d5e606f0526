"""Data-parallel training under torchrun with two CPU processes (gloo backend)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]

# Every process trains on the same cyclic sequences and writes what it ended with: the
# metrics, a checksum of its final parameters, and the epochs its on_epoch callback saw.
TRAINING_SCRIPT = """
import json, sys
import numpy as np
import torch
import core.training
from core.dataset import from_sequences
from core.models import ModelConfig
from core.training import TrainConfig, train_and_evaluate

built = []
build_model = core.training.build_model
core.training.build_model = lambda config: built.append(build_model(config)) or built[-1]

generator = np.random.default_rng(0)
sequences = []
for _ in range(160):
    start, length = int(generator.integers(30)), int(generator.integers(4, 10))
    sequences.append([(start + step) % 30 + 1 for step in range(length)])
model = ModelConfig(arch="sasrec", n_layers=1, d_model=16, n_heads=2, max_len=8, dropout=0.2, n_items=30)
train = TrainConfig(epochs=12, batch_size=32, lr=0.01, eval_every=3, patience=None, device="cpu", num_threads=1)
epochs_seen = []
result = train_and_evaluate(from_sequences(sequences), model, train, on_epoch=lambda report: epochs_seen.append(report.epoch))

checksum = sum(float(parameter.detach().double().sum()) for parameter in built[0].parameters())
with open(f"{sys.argv[1]}/rank{torch.distributed.get_rank()}.json", "w") as file:
    json.dump({"metrics": result.metrics, "world_size": result.world_size, "epochs_run": result.epochs_run,
               "epochs_seen": epochs_seen, "checksum": checksum}, file)
"""


def run_under_torchrun(script: str, folder: Path, n_processes: int) -> list[dict]:
    """Run script in n_processes CPU processes under torchrun; return each rank's JSON output."""
    path = folder / "train.py"
    path.write_text(script)
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
         "--nproc-per-node", str(n_processes), str(path), str(folder)],
        cwd=REPOSITORY_ROOT, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(n_processes)]


def test_two_processes_train_one_model(tmp_path):
    main, other = run_under_torchrun(TRAINING_SCRIPT, tmp_path, n_processes=2)

    assert main["world_size"] == other["world_size"] == 2
    assert main["checksum"] == other["checksum"]
    assert main["metrics"] == other["metrics"]
    assert main["epochs_run"] == other["epochs_run"] == 12
    # Ranking at random among about 25 candidates gives HR@10 near 0.4.
    assert main["metrics"]["hr@10"] > 0.8


def test_only_rank_zero_reports_epochs(tmp_path):
    main, other = run_under_torchrun(TRAINING_SCRIPT, tmp_path, n_processes=2)

    assert main["epochs_seen"] == list(range(1, 13))
    assert other["epochs_seen"] == []


def test_torchrun_train_prints_one_result(tmp_path):
    log = tmp_path / "cycle.txt"
    log.write_text("".join(f"u{user} {1 + (user + step) % 12}\n" for user in range(60) for step in range(8)))
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT), "OMP_NUM_THREADS": "1"}

    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", "2",
         "-m", "app.cli", "train", str(log), "--format", "sasrec", "--layers", "1", "--d-model", "8",
         "--max-len", "10", "--epochs", "2", "--device", "cpu", "--json"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
    )

    assert completed.returncode == 0, completed.stderr[-4000:]
    document = json.loads(completed.stdout)
    assert document["world_size"] == 2
    assert document["epochs_run"] == 2
