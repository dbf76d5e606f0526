"""Benchmark read_interactions: time and peak memory on a synthetic log and on the public datasets.

The synthetic log is a headerless TSV of `user item timestamp` rows in time order (users
interleaved, as in a click log), generated in chunks under bench/out/ and reused by later runs
of the same size and seed. Each measurement runs in a fresh Python process, so its peak RSS
(resource.getrusage ru_maxrss) covers only the interpreter, the imports and that one read.

    python bench/bench_read.py --interactions 1000000
    nice python bench/bench_read.py            # 100,000,000 interactions, a 2.1 GB file
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPOSITORY_ROOT / "bench" / "out"
CHUNK_ROWS = 5_000_000
# (folder, file, ReadOptions keyword arguments) for the public datasets.
SHARED_DATASETS = [
    ("ml-100k", "u.data", {}),
    ("amazon-beauty", "Beauty.txt", {}),
    ("amazon-sports", "Sports_and_Outdoors.txt", {}),
    ("amazon-toys", "Toys_and_Games.txt", {}),
    ("amazon-video-sasrec", "Video.txt", {}),
    (
        "diginetica-sample",
        "sample_train-item-views.csv",
        {"user_column": "session_id", "timestamp_column": "timeframe"},
    ),
]


def write_synthetic_log(
    path: Path, n_interactions: int, n_users: int, n_items: int, seed: int
) -> None:
    """Write n_interactions rows in chunks; item popularity follows a Zipf law (exponent 1.2)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(seed)
    partial = path.with_suffix(".partial")
    write_options = pa_csv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    with pa_csv.CSVWriter(
        partial,
        pa.schema([("user", pa.int64()), ("item", pa.int64()), ("timestamp", pa.int64())]),
        write_options=write_options,
    ) as writer:
        for start in range(0, n_interactions, CHUNK_ROWS):
            rows = min(CHUNK_ROWS, n_interactions - start)
            users = rng.integers(1, n_users + 1, rows)
            items = (rng.zipf(1.2, rows) - 1) % n_items + 1
            # About 10 interactions per second: timestamps never decrease through the file.
            timestamps = 1_600_000_000 + (np.arange(start, start + rows) // 10)
            writer.write_table(pa.table({"user": users, "item": items, "timestamp": timestamps}))
    partial.rename(path)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(path: str, options: dict, repeats: int) -> dict:
    """Read path `repeats` times in this process; return the best times and the counts.

    CPU time (user + system, all threads) is reported beside wall time because it depends
    less on other load on the machine.
    """
    from core.readers import ReadOptions, read_interactions

    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    best_wall = float("inf")
    best_cpu = float("inf")
    for _ in range(repeats):
        started_wall, started_cpu = time.perf_counter(), cpu_seconds()
        dataset = read_interactions(Path(path), ReadOptions(**options)).dataset
        best_wall = min(best_wall, time.perf_counter() - started_wall)
        best_cpu = min(best_cpu, cpu_seconds() - started_cpu)
    return {
        "seconds": best_wall,
        "cpu_seconds": best_cpu,
        "users": dataset.n_users,
        "items": dataset.n_items,
        "interactions": dataset.n_interactions,
        "baseline_rss_mib": baseline_kib / 1024,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "file_mib": os.path.getsize(path) / (1 << 20),
    }


def measure_in_child(path: Path, options: dict, repeats: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--measure",
        str(path),
        "--options",
        json.dumps(options),
        "--repeats",
        str(repeats),
    ]
    completed = subprocess.run(
        command, check=True, capture_output=True, text=True, cwd=REPOSITORY_ROOT
    )
    return json.loads(completed.stdout)


def format_table(rows: list[tuple[str, dict]]) -> str:
    lines = [
        "| log | interactions | users | items | file (MiB) | wall (s) | CPU (s) | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in rows:
        lines.append(
            f"| {name} | {result['interactions']:,} | {result['users']:,} | {result['items']:,} "
            f"| {result['file_mib']:.1f} | {result['seconds']:.3f} | {result['cpu_seconds']:.3f} "
            f"| {result['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--interactions", type=int, default=100_000_000, help="rows in the synthetic log"
    )
    parser.add_argument("--users", type=int, default=1_000_000, help="distinct user ids drawn from")
    parser.add_argument("--items", type=int, default=200_000, help="distinct item ids drawn from")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generator")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(
            os.environ.get("PERFLAW_DATA_DIR") or REPOSITORY_ROOT.parent / "shared" / "data"
        ),
        help="folder of the public datasets (default: PERFLAW_DATA_DIR)",
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.measure:
        sys.path.insert(0, str(REPOSITORY_ROOT))
        print(
            json.dumps(measure(arguments.measure, json.loads(arguments.options), arguments.repeats))
        )
        return

    rows = []
    for folder, file_name, options in SHARED_DATASETS:
        path = arguments.data_dir / folder / file_name
        if path.is_file():
            rows.append((folder, measure_in_child(path, options, repeats=3)))

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    name = f"synthetic_{arguments.interactions}_{arguments.users}_{arguments.items}"
    synthetic = OUT_DIR / f"{name}_{arguments.seed}.tsv"
    if not synthetic.exists():
        started = time.perf_counter()
        write_synthetic_log(
            synthetic, arguments.interactions, arguments.users, arguments.items, arguments.seed
        )
        print(f"wrote {synthetic} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    rows.append(
        (
            f"synthetic TSV ({arguments.interactions:,} rows)",
            measure_in_child(synthetic, {}, repeats=1),
        )
    )

    print(f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print(format_table(rows))
    baseline = rows[-1][1]["baseline_rss_mib"]
    print(f"\nPeak RSS includes the interpreter and imports ({baseline:.0f} MiB before the read).")


if __name__ == "__main__":
    main()
