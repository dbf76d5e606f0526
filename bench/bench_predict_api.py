"""Measure the prediction endpoint's latency and throughput under a bounded load on loopback.

Usage: python bench/bench_predict_api.py [--seconds 30] [--concurrency 4] [--port 8765]

The script starts `perflaw serve --no-worker` in a scratch data folder (SQLite), imports 32
synthetic runs, fits one law, and then, from this second process, sends POST /v1/predictions
(2 layer counts x 2 widths, a given D') from `concurrency` client threads for `seconds`
seconds, each thread waiting for its answer before the next request. It prints the request
count, errors, median, 95th and 99th percentile latency and sustained requests per second
as a markdown table row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from core.laws import get_form

TRUTH = {"w1": 0.1, "a": -0.5, "w2": 0.5, "b": -0.15, "c": -0.03, "e": 0.9}
REQUEST = {"d_prime": 40_000, "layers": [2, 4], "d_models": [64, 128], "metric": "ndcg@10"}


def synthetic_runs() -> list[dict]:
    form = get_form("performance_law")
    noise = np.random.default_rng(0)
    runs = []
    for d_prime in (20_000.0, 60_000.0):
        for n_layers in (1, 2, 4, 8):
            for d_model in (16, 32, 64, 128):
                value = float(form.evaluate(TRUTH, np.array([n_layers]), np.array([d_model]), np.array([d_prime]))[0])
                runs.append({"dataset": f"synthetic-{int(d_prime)}", "n_layers": n_layers, "d_model": d_model,
                             "d_prime": d_prime, "protocol": "full", "metrics": {"ndcg@10": value + noise.normal(0, 0.002)}})
    return runs


def start_server(port: int, data_dir: Path) -> subprocess.Popen:
    environment = {**os.environ, "PERFLAW_DATA_DIR": str(data_dir), "PERFLAW_LOG_LEVEL": "WARNING"}
    environment.pop("PERFLAW_DATABASE_URL", None)
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--no-worker"], env=environment)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not become ready within 60 s")


def load(base_url: str, law_id: int, seconds: float, concurrency: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client_loop() -> None:
        with httpx.Client(base_url=base_url, timeout=10) as http:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                response = http.post("/v1/predictions", json={**REQUEST, "law": law_id})
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors[0] += response.status_code != 200

    threads = [threading.Thread(target=client_loop) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--port", type=int, default=8765)
    arguments = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="perflaw-bench-"))
    server = start_server(arguments.port, data_dir)
    base_url = f"http://127.0.0.1:{arguments.port}"
    try:
        httpx.post(f"{base_url}/v1/runs", json={"runs": synthetic_runs()}, timeout=30).raise_for_status()
        law = httpx.post(f"{base_url}/v1/laws", json={"metric": "ndcg@10", "n_bootstrap": 200}, timeout=120)
        law.raise_for_status()
        load(base_url, law.json()["id"], 3.0, arguments.concurrency)  # warm-up, not measured
        latencies, errors = load(base_url, law.json()["id"], arguments.seconds, arguments.concurrency)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)

    milliseconds = sorted(latency * 1000 for latency in latencies)
    percentile = lambda share: milliseconds[min(len(milliseconds) - 1, int(share * len(milliseconds)))]
    print("| concurrency | requests | errors | median ms | p95 ms | p99 ms | requests/s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {arguments.concurrency} | {len(milliseconds)} | {errors} | {statistics.median(milliseconds):.1f} | "
          f"{percentile(0.95):.1f} | {percentile(0.99):.1f} | {len(milliseconds) / arguments.seconds:.0f} |")


if __name__ == "__main__":
    main()
