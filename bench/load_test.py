"""Bounded load test of a real `perflaw serve`, from this process over loopback.

The mix, by weight: list datasets (reads), get a stored profile (cached reads), predict with a
fitted law, and upload a small new log. Before the timed part the script uploads a base
dataset, computes its profile once and fits a law on synthetic runs that follow a known
performance law. Then `--concurrency` clients send requests back to back for
`--duration-s` seconds. Every response other than the expected status counts as an error.

Without --server the script starts `perflaw serve` itself on a free port of 127.0.0.1,
with a scratch data folder and SQLite database and PERFLAW_WORKERS=0, and stops it at the
end. Run from the repository root:

    .venv/bin/python bench/load_test.py --duration-s 150 --concurrency 8

It prints a table and, with --output, writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY_ROOT))

from core.laws import get_form  # noqa: E402

# Request kinds and their share of the mix.
MIX = {"list_datasets": 0.3, "get_profile": 0.3, "predict": 0.3, "upload": 0.1}
EXPECTED_STATUS = {"list_datasets": 200, "get_profile": 200, "predict": 200, "upload": 201}
LAW_PARAMS = {"w1": 0.1, "a": -0.5, "w2": 0.5, "b": -0.15, "c": -0.03, "e": 0.9}
UPLOAD_USERS = 200
UPLOAD_ITEMS_PER_USER = 10
SERVER_START_TIMEOUT_S = 90
REQUEST_TIMEOUT_S = 120


def synthetic_log(seed: int, n_users: int, items_per_user: int, n_items: int = 500) -> bytes:
    """Return a `user item timestamp` TSV log whose content depends on seed."""
    generator = np.random.default_rng(seed)
    lines = []
    for user in range(n_users):
        items = generator.integers(1, n_items, size=items_per_user)
        lines.extend(f"u{seed}-{user}\t{item}\t{step}" for step, item in enumerate(items))
    return ("\n".join(lines) + "\n").encode()


def law_shaped_runs() -> list[dict]:
    """32 runs whose ndcg@10 follows LAW_PARAMS exactly, at two values of D'."""
    form = get_form("performance_law")
    runs = []
    for d_prime in (20_000.0, 60_000.0):
        for n_layers in (1, 2, 4, 8):
            for d_model in (16, 32, 64, 128):
                value = form.function(LAW_PARAMS, np.array([n_layers]), np.array([d_model]), np.array([d_prime]), xi=2.0)[0]
                runs.append({
                    "dataset": f"synthetic-{int(d_prime)}", "n_layers": n_layers, "d_model": d_model,
                    "d_prime": d_prime, "protocol": "full", "metrics": {"ndcg@10": float(value)},
                })
    return runs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def started_server():
    """Start `perflaw serve` on a free loopback port with scratch storage; yield its base URL.

    The scratch folder (data, SQLite file and serve.log) is left in the temporary directory
    for inspection.
    """
    scratch = Path(tempfile.mkdtemp(prefix="perflaw-load-"))
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PERFLAW_")}
    environment.update({
        "PERFLAW_DATA_DIR": str(scratch / "data"),
        "PERFLAW_WORKERS": "0",
        "PERFLAW_LOG_LEVEL": "WARNING",
    })
    port = free_port()
    script = Path(sys.executable).with_name("perflaw")
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from app.cli import main; main()"]
    with open(scratch / "serve.log", "wb") as log:
        process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker"],
            env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=REPOSITORY_ROOT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base_url, process, scratch / "serve.log")
        yield base_url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_health(base_url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"perflaw serve exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"perflaw serve did not answer /healthz within {SERVER_START_TIMEOUT_S} s")


@dataclass
class Fixture:
    """The ids that the timed requests use."""

    dataset_id: int
    law_id: int
    d_prime: float


def prepare(base_url: str, headers: dict[str, str]) -> Fixture:
    """Upload the base dataset, store its profile and fit a law; raise on any failure."""
    with httpx.Client(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S) as client:
        uploaded = client.post("/v1/datasets", files={"file": ("base.tsv", synthetic_log(0, 5_000, 20))})
        uploaded.raise_for_status()
        dataset_id = uploaded.json()["id"]
        client.get(f"/v1/datasets/{dataset_id}/profile").raise_for_status()
        client.post("/v1/runs", json={"runs": law_shaped_runs()}).raise_for_status()
        law = client.post("/v1/laws", json={"metric": "ndcg@10", "n_bootstrap": 50})
        law.raise_for_status()
    return Fixture(dataset_id=dataset_id, law_id=law.json()["id"], d_prime=40_000.0)


@dataclass
class Results:
    latencies_s: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in MIX})
    errors: dict[str, int] = field(default_factory=lambda: {kind: 0 for kind in MIX})
    error_examples: list[str] = field(default_factory=list)


async def send(client: httpx.AsyncClient, kind: str, fixture: Fixture, upload_seed: int) -> httpx.Response:
    if kind == "list_datasets":
        return await client.get("/v1/datasets", params={"limit": 50})
    if kind == "get_profile":
        return await client.get(f"/v1/datasets/{fixture.dataset_id}/profile")
    if kind == "predict":
        return await client.post("/v1/predictions", json={
            "law": fixture.law_id, "d_prime": fixture.d_prime, "layers": [2, 4], "d_models": [32, 64],
        })
    content = synthetic_log(upload_seed, UPLOAD_USERS, UPLOAD_ITEMS_PER_USER)
    return await client.post("/v1/datasets", files={"file": (f"log-{upload_seed}.tsv", content)})


async def run_client(
    base_url: str, headers: dict[str, str], fixture: Fixture, deadline: float, seed: int, results: Results
) -> None:
    """Send requests one after another until the deadline, choosing each kind by MIX."""
    generator = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())
    sent = 0
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S) as client:
        while time.monotonic() < deadline:
            kind = generator.choices(kinds, weights)[0]
            started = time.perf_counter()
            try:
                response = await send(client, kind, fixture, upload_seed=1_000_000 * (seed + 1) + sent)
                failed = response.status_code != EXPECTED_STATUS[kind]
                outcome = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as error:
                failed, outcome = True, f"{type(error).__name__}: {error}"
            results.latencies_s[kind].append(time.perf_counter() - started)
            if failed:
                results.errors[kind] += 1
                if len(results.error_examples) < 10:
                    results.error_examples.append(f"{kind}: {outcome}")
            sent += 1


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q)) if values else float("nan")


def summarize(results: Results, elapsed_s: float, arguments: argparse.Namespace) -> dict:
    kinds = {}
    for kind, latencies in results.latencies_s.items():
        kinds[kind] = {
            "requests": len(latencies),
            "errors": results.errors[kind],
            "median_ms": round(percentile_ms(latencies, 50), 1),
            "p95_ms": round(percentile_ms(latencies, 95), 1),
            "p99_ms": round(percentile_ms(latencies, 99), 1),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
        }
    total = sum(len(latencies) for latencies in results.latencies_s.values())
    return {
        "duration_s": round(elapsed_s, 1),
        "concurrency": arguments.concurrency,
        "requests": total,
        "errors": sum(results.errors.values()),
        "requests_per_s": round(total / elapsed_s, 1),
        "kinds": kinds,
        "error_examples": results.error_examples,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
    }


def print_table(summary: dict) -> None:
    print(f"{summary['requests']} requests in {summary['duration_s']} s at concurrency {summary['concurrency']}: "
          f"{summary['requests_per_s']} requests/s, {summary['errors']} errors")
    print(f"{'kind':<15}{'requests':>10}{'errors':>8}{'median ms':>11}{'p95 ms':>9}{'p99 ms':>9}")
    for kind, numbers in summary["kinds"].items():
        print(f"{kind:<15}{numbers['requests']:>10}{numbers['errors']:>8}{numbers['median_ms']:>11}"
              f"{numbers['p95_ms']:>9}{numbers['p99_ms']:>9}")
    for example in summary["error_examples"]:
        print(f"error: {example}")


async def run_load(base_url: str, headers: dict[str, str], arguments: argparse.Namespace) -> dict:
    fixture = prepare(base_url, headers)
    results = Results()
    started = time.monotonic()
    deadline = started + arguments.duration_s
    await asyncio.gather(*(
        run_client(base_url, headers, fixture, deadline, arguments.seed + index, results)
        for index in range(arguments.concurrency)
    ))
    return summarize(results, time.monotonic() - started, arguments)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration-s", type=float, default=150.0, help="Length of the timed part in seconds.")
    parser.add_argument("--concurrency", type=int, default=8, help="Clients sending requests at the same time.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the request mix and the uploaded logs.")
    parser.add_argument("--server", help="Base URL of a running server on loopback; default: start one.")
    parser.add_argument("--output", type=Path, help="Also write the numbers as JSON to this file.")
    arguments = parser.parse_args()
    if not 1 <= arguments.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64")
    if not 1 <= arguments.duration_s <= 3600:
        parser.error("--duration-s must be between 1 and 3600")
    if arguments.server and not arguments.server.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        parser.error("--server must be a loopback URL such as http://127.0.0.1:8000")
    return arguments


def main() -> None:
    arguments = parse_arguments()
    api_key = os.environ.get("PERFLAW_API_KEY")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if arguments.server:
        summary = asyncio.run(run_load(arguments.server, headers, arguments))
    else:
        with started_server() as base_url:
            summary = asyncio.run(run_load(base_url, headers, arguments))
    print_table(summary)
    if arguments.output:
        arguments.output.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
