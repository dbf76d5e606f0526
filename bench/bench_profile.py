"""Time data profiles of the shared datasets and of a synthetic 1,000,000-interaction log.

Prints markdown tables:
1. profile_dataset time per dataset and ApEn variant (m=2, r=0, max_len=50), best of
   --repeats runs, as wall-clock and as CPU time of this process (the CPU time is the
   fairer number on a machine shared with other work);
2. per-sequence ApEn (pincus, m=2, r=0, max_len=50) on every user (or a seeded sample of
   --sample-users): the naive O(n^2) oracle of the unit tests against
   core.entropy.compute_apen on the same sequences;
3. the synthetic log: profile wall-clock and CPU time per variant and the peak memory
   NumPy allocated (traced with tracemalloc).

Everything runs on one thread: the thread-count variables are set before NumPy is imported.

    python bench/bench_profile.py [--data-dir DIR] [--repeats 3] [--sample-users 0]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402

import numpy as np  # noqa: E402

from core.dataset import SequenceDataset  # noqa: E402
from core.entropy import VARIANTS, compute_apen, truncate_sequences  # noqa: E402
from core.profile import ProfileParams, profile_dataset  # noqa: E402
from core.readers import ReadOptions, read_interactions  # noqa: E402

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent

# File and read options of each shared dataset, relative to the data folder.
DATASETS = {
    "ml-100k": (
        "ml-100k/u.data",
        ReadOptions(
            format="delimited", separator="\t", header=False,
            user_column=0, item_column=1, timestamp_column=3,
        ),
    ),
    "amazon-beauty": ("amazon-beauty/Beauty.txt", ReadOptions(format="sequence-lines")),
    "amazon-sports": ("amazon-sports/Sports_and_Outdoors.txt", ReadOptions(format="sequence-lines")),
    "amazon-toys": ("amazon-toys/Toys_and_Games.txt", ReadOptions(format="sequence-lines")),
    "amazon-video-sasrec": ("amazon-video-sasrec/Video.txt", ReadOptions(format="sasrec")),
    "diginetica-sample": (
        "diginetica-sample/sample_train-item-views.csv",
        ReadOptions(
            format="delimited", separator=";", header=True,
            user_column="session_id", item_column="item_id", timestamp_column="timeframe",
        ),
    ),
}


def load_naive_oracles() -> ModuleType:
    path = REPOSITORY_ROOT / "tests" / "unit" / "naive_entropy.py"
    spec = importlib.util.spec_from_file_location("naive_entropy_oracles", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_time_s(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Run function `repeats` times; return the smallest wall-clock and CPU times in seconds."""
    wall_timings = []
    cpu_timings = []
    for _ in range(repeats):
        wall_start = time.perf_counter()
        cpu_start = time.process_time()
        function()
        cpu_timings.append(time.process_time() - cpu_start)
        wall_timings.append(time.perf_counter() - wall_start)
    return min(wall_timings), min(cpu_timings)


def make_synthetic_dataset(n_interactions: int, seed: int = 0) -> SequenceDataset:
    """Users with 5 + Geometric(1/15) items (at most 500), items drawn from a Zipf-like
    popularity (exponent 0.9) over 50,000 items; scaled to exactly n_interactions."""
    rng = np.random.default_rng(seed)
    n_users = max(n_interactions // 20, 1)
    lengths = np.minimum(5 + rng.geometric(1 / 15, n_users), 500)
    lengths = np.maximum((lengths * (n_interactions / lengths.sum())).astype(np.int64), 1)
    lengths[-1] += n_interactions - lengths.sum()
    n_items = 50_000
    weights = 1 / np.arange(1, n_items + 1) ** 0.9
    items = rng.choice(n_items, size=n_interactions, p=weights / weights.sum()).astype(np.int64) + 1
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return SequenceDataset(
        items=items,
        offsets=offsets,
        user_labels=np.arange(n_users).astype(str),
        item_labels=np.arange(1, n_items + 1).astype(str),
    )


def sample_users(dataset: SequenceDataset, n_users: int, seed: int) -> SequenceDataset:
    """Return a dataset of n_users users drawn without replacement, or all users for 0."""
    if n_users == 0 or n_users >= dataset.n_users:
        return dataset
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(dataset.n_users, size=min(n_users, dataset.n_users), replace=False))
    sequences = [dataset.sequence(user) for user in users]
    offsets = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum([len(sequence) for sequence in sequences], out=offsets[1:])
    return SequenceDataset(
        items=np.concatenate(sequences),
        offsets=offsets,
        user_labels=dataset.user_labels[users],
        item_labels=dataset.item_labels,
    )


def print_profile_table(datasets: dict[str, SequenceDataset], repeats: int) -> None:
    print(f"### Profile time (m=2, r=0, max_len=50), wall-clock / CPU seconds, best of {repeats}")
    print()
    print("| dataset | interactions | users | " + " | ".join(VARIANTS) + " |")
    print("|---|---:|---:|" + "---:|" * len(VARIANTS))
    for name, dataset in datasets.items():
        cells = []
        for variant in VARIANTS:
            params = ProfileParams(variant=variant)
            wall_s, cpu_s = best_time_s(lambda d=dataset, p=params: profile_dataset(d, p), repeats)
            cells.append(f"{wall_s:.3f} / {cpu_s:.3f}")
        print(f"| {name} | {dataset.n_interactions:,} | {dataset.n_users:,} | " + " | ".join(cells) + " |")
    print()


def print_speedup_table(
    datasets: dict[str, SequenceDataset], naive: ModuleType, sample_size: int, repeats: int
) -> None:
    users = "all users" if sample_size == 0 else f"{sample_size} sampled users"
    print(f"### Per-sequence ApEn (pincus, m=2, r=0, max_len=50) on {users}")
    print()
    print("| dataset | sequences | items | naive CPU (s) | fast CPU (s) | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, dataset in datasets.items():
        sample = sample_users(dataset, sample_size, seed=0)
        items, offsets = truncate_sequences(sample.items, sample.offsets, 50)
        sequences = [items[offsets[k] : offsets[k + 1]].tolist() for k in range(len(offsets) - 1)]
        naive_s = best_time_s(lambda: [naive.naive_apen(s, 2, 0.0) for s in sequences], 1)[1]
        fast_s = best_time_s(lambda: compute_apen(items, offsets, 2, 0.0), repeats)[1]
        print(
            f"| {name} | {len(sequences):,} | {len(items):,} | {naive_s:.3f} | {fast_s:.5f} "
            f"| {naive_s / fast_s:,.0f}x |"
        )
    print()


def print_synthetic_table(n_interactions: int, repeats: int) -> None:
    dataset = make_synthetic_dataset(n_interactions)
    print(
        f"### Synthetic log: {dataset.n_interactions:,} interactions, {dataset.n_users:,} users, "
        f"{dataset.n_items:,} items (m=2, r=0, max_len=50)"
    )
    print()
    print(f"| variant | wall-clock (s), best of {repeats} | CPU (s), best of {repeats} | peak NumPy memory (MiB) |")
    print("|---|---:|---:|---:|")
    for variant in VARIANTS:
        params = ProfileParams(variant=variant)
        wall_s, cpu_s = best_time_s(lambda p=params: profile_dataset(dataset, p), repeats)
        tracemalloc.start()
        profile_dataset(dataset, params)
        peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"| {variant} | {wall_s:.3f} | {cpu_s:.3f} | {peak_mib:.0f} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data_dir = os.environ.get("PERFLAW_DATA_DIR") or str(REPOSITORY_ROOT.parent / "shared" / "data")
    parser.add_argument("--data-dir", type=Path, default=Path(default_data_dir),
                        help="folder of the shared datasets (default: PERFLAW_DATA_DIR or ../shared/data)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell; the best is shown")
    parser.add_argument("--sample-users", type=int, default=0,
                        help="users per dataset for the naive-against-fast comparison; 0 for all")
    parser.add_argument("--synthetic-interactions", type=int, default=1_000_000,
                        help="size of the synthetic log")
    arguments = parser.parse_args()

    datasets = {}
    for name, (relative_path, options) in DATASETS.items():
        path = arguments.data_dir / relative_path
        if path.is_file():
            datasets[name] = read_interactions(path, options).dataset
        else:
            print(f"skipping {name}: {path} not found")
    if datasets:
        print_profile_table(datasets, arguments.repeats)
        print_speedup_table(datasets, load_naive_oracles(), arguments.sample_users, arguments.repeats)
    print_synthetic_table(arguments.synthetic_interactions, arguments.repeats)


if __name__ == "__main__":
    main()
