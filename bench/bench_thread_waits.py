"""Measure how OpenMP thread waits change training time when other work shares the cores.

Each case runs one epoch of a small SASRec (1 block, width 32, max_len 50) on MovieLens-100K
in a fresh Python process, with OMP_WAIT_POLICY and the torch thread count of the case. The
variable must be set before torch loads, hence one process per case. The `busy` cases keep
one core busy with a pure-Python loop in another process, as a second job or service would.
The first epoch of each process is a warm-up; the second is timed.

Usage (from the repository root):
    python bench/bench_thread_waits.py [--busy-only]
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
import sys, time
sys.path.insert(0, "bench")
import torch
from resumable_run import data_dir, load_movielens
from core.models import ModelConfig
from core.training import TrainConfig, train_and_evaluate

dataset = load_movielens(data_dir() / "ml-100k" / "u.data")
model = ModelConfig(arch="sasrec", n_layers=1, d_model=32, n_heads=1, max_len=50, dropout=0.2,
                    n_items=dataset.n_items)
threads = int(sys.argv[1])
seconds = []
for epochs in (1, 2):
    config = TrainConfig(epochs=epochs, batch_size=128, protocol="sampled-100", device="cpu",
                         num_threads=threads, patience=None, eval_every=100)
    result = train_and_evaluate(dataset, model, config)
    seconds.append(result.train_time_s)
print(seconds[1] - seconds[0])
"""


def keep_one_core_busy(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        pass


def time_case(policy: str, threads: int, busy: bool) -> float:
    """Return the seconds of one timed training epoch for the case."""
    environment = {**os.environ, "OMP_WAIT_POLICY": policy, "PERFLAW_DATA_DIR": str(data_dir())}
    load = None
    if busy:
        load = multiprocessing.Process(target=keep_one_core_busy, args=(time.monotonic() + 600,))
        load.start()
    try:
        completed = subprocess.run(
            [sys.executable, "-c", CASE_SCRIPT, str(threads)],
            env=environment, capture_output=True, text=True, check=True, timeout=600,
        )
    finally:
        if load is not None:
            load.terminate()
            load.join()
    return float(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy-only", action="store_true", help="skip the cases on free cores")
    arguments = parser.parse_args()

    cases = []
    for busy in (True,) if arguments.busy_only else (False, True):
        for policy, threads in (("ACTIVE", 1), ("ACTIVE", 2), ("PASSIVE", 2)):
            seconds = time_case(policy, threads, busy)
            cases.append({"omp_wait_policy": policy, "threads": threads, "one_core_busy": busy, "epoch_s": seconds})
            print(f"{policy:8s} threads {threads} one core busy {busy!s:5s}: {seconds:.2f} s per epoch", flush=True)

    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    document = {"cases": cases, "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine()}
    (OUTPUT_DIR / "bench_thread_waits.json").write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
