"""Time fit_law on 24 synthetic observations, without and with the bootstrap.

Usage: python bench/bench_fit.py [--repeats 5]

Two designs of 24 runs each, with Gaussian noise of standard deviation 0.003:
  one-dataset:    n_layers 1, 2, 4, 8 x d_model 32 ... 1024 (6 widths), one D' (folded)
  three-datasets: n_layers 1, 2, 4, 8 x d_model 64, 256 x D' 1e5, 1e6, 1e7
Each design is fitted with the default starts and leave-one-out, once with n_bootstrap = 0
and once with the default bootstrap. The script prints, one line per case, the median and
minimum wall time of the repeats and the median process CPU time, in seconds. On a busy
machine the CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from core.fitting import DEFAULT_N_BOOTSTRAP, DEFAULT_N_STARTS, Observations, fit_law
from core.laws import get_form

TRUTH = {"w1": 0.1, "a": -0.5, "w2": 0.5, "b": -0.15, "c": -0.03, "e": 0.9}
DESIGNS = {
    "one-dataset": ((1, 2, 4, 8), (32, 64, 128, 256, 512, 1024), (1e6,)),
    "three-datasets": ((1, 2, 4, 8), (64, 256), (1e5, 1e6, 1e7)),
}


def make_observations(layers, widths, d_primes) -> Observations:
    grids = np.meshgrid(layers, widths, d_primes, indexing="ij")
    n_layers, d_model, d_prime = (grid.ravel() for grid in grids)
    clean = get_form("performance_law").evaluate(TRUTH, n_layers, d_model, d_prime)
    noise = np.random.default_rng(0).normal(0.0, 0.003, len(clean))
    return Observations(n_layers, d_model, d_prime, clean + noise)


def time_fit(observations: Observations, n_bootstrap: int,
             repeats: int) -> tuple[list[float], list[float]]:
    """Return the wall and process CPU seconds of each of repeats fits."""
    wall_seconds, cpu_seconds = [], []
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        fit_law(observations, n_bootstrap=n_bootstrap)
        wall_seconds.append(time.perf_counter() - wall_start)
        cpu_seconds.append(time.process_time() - cpu_start)
    return wall_seconds, cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fits timed per case")
    arguments = parser.parse_args()

    print(f"n_starts={DEFAULT_N_STARTS}, leave-one-out on, repeats={arguments.repeats}")
    for name, design in DESIGNS.items():
        observations = make_observations(*design)
        for n_bootstrap in (0, DEFAULT_N_BOOTSTRAP):
            wall, cpu = time_fit(observations, n_bootstrap, arguments.repeats)
            print(f"{name:15s} n={len(observations)} n_bootstrap={n_bootstrap:<4d} "
                  f"wall median {statistics.median(wall):.3f} s, min {min(wall):.3f} s, "
                  f"CPU median {statistics.median(cpu):.3f} s")


if __name__ == "__main__":
    main()
