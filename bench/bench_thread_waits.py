"""Measure how OpenMP thread waits change training time when other work shares the cores.

Each case trains a small SASRec (1 block, width 32, max_len 50) on MovieLens-100K for 4
epochs in a fresh Python process, with the OMP_WAIT_POLICY and torch thread count of the
case. It reports the mean time of epochs 2 and 3: epoch 1 warms up and epoch 4 validates.
The variable must be set before torch loads, hence one process per case. In the `busy`
cases a pure-Python loop keeps one core busy, and the case runs at nice 10 below it, as a
background training job beside a busier process would.

Usage (from the repository root):
    python bench/bench_thread_waits.py
Writes bench/out/bench_thread_waits.json and prints one line per case.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time

from resumable_run import OUTPUT_DIR, data_dir

CASE_SCRIPT = """
import sys
sys.path.insert(0, "bench")
from resumable_run import data_dir, load_movielens
from core.models import ModelConfig
from core.training import TrainConfig, train_and_evaluate

dataset = load_movielens(data_dir() / "ml-100k" / "u.data")
model = ModelConfig(arch="sasrec", n_layers=1, d_model=32, n_heads=1, max_len=50, dropout=0.2,
                    n_items=dataset.n_items)
config = TrainConfig(epochs=4, batch_size=128, protocol="sampled-100", device="cpu",
                     num_threads=int(sys.argv[1]), patience=None, eval_every=100)
seconds = {}
train_and_evaluate(dataset, model, config, on_epoch=lambda report: seconds.update({report.epoch: report.seconds}))
print((seconds[2] + seconds[3]) / 2)
"""


def keep_one_core_busy(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        pass


def time_case(policy: str, threads: int, busy: bool) -> float:
    """Return the mean seconds of the two timed training epochs of the case."""
    environment = {**os.environ, "OMP_WAIT_POLICY": policy, "PERFLAW_DATA_DIR": str(data_dir())}
    load = None
    if busy:
        load = multiprocessing.Process(target=keep_one_core_busy, args=(time.monotonic() + 600,))
        load.start()
    try:
        completed = subprocess.run(
            ["nice", "-n", "10" if busy else "0", sys.executable, "-c", CASE_SCRIPT, str(threads)],
            env=environment, capture_output=True, text=True, check=True, timeout=600,
        )
    finally:
        if load is not None:
            load.terminate()
            load.join()
    return float(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()

    cases = []
    for busy in (False, True):
        for policy, threads in (("ACTIVE", 1), ("ACTIVE", 2), ("PASSIVE", 2)):
            seconds = time_case(policy, threads, busy)
            cases.append({"omp_wait_policy": policy, "threads": threads, "one_core_busy": busy, "epoch_s": seconds})
            print(f"{policy:8s} threads {threads} one core busy {busy!s:5s}: {seconds:.2f} s per epoch", flush=True)

    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    document = {"cases": cases, "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine()}
    (OUTPUT_DIR / "bench_thread_waits.json").write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
