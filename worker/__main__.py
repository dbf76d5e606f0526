"""Run a worker: `python -m worker [--device auto|cpu|cuda] [--once] [--import MODULE ...]`.

`perflaw worker` does the same. This entry point also accepts --import, which imports a
module before the worker starts, so that the module can register more job kinds.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from app.runtime import prefer_passive_thread_waits
from worker.runner import run_worker


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker", description="Claim queued jobs and run them.")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="Device for training jobs.")
    parser.add_argument("--once", action="store_true", help="Run at most one job, then exit.")
    parser.add_argument(
        "--import",
        dest="modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="Import MODULE first, so that it can register job kinds; may be repeated.",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    prefer_passive_thread_waits()
    arguments = parse_arguments(argv)
    for module in arguments.modules:
        importlib.import_module(module)
    return run_worker(device=arguments.device, once=arguments.once)


if __name__ == "__main__":
    sys.exit(main())
