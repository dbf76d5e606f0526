"""`perflaw serve` as a real process: address checks, API keys and JSON access logs.

Each server listens on a free port, either on 127.0.0.1 or on 0.0.0.0 (the case the key
check is for), is reached only through 127.0.0.1, and is stopped as soon as the test has
what it needs. The service gets a scratch data folder and SQLite file of its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

START_TIMEOUT_S = 60


def perflaw_command() -> list[str]:
    """Return the installed `perflaw` script beside this interpreter, or the module entry point."""
    script = Path(sys.executable).with_name("perflaw")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from app.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def service_env(tmp_path) -> dict[str, str]:
    """The environment of a perflaw process: a scratch data folder and SQLite file, no workers."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PERFLAW_")}
    environment.update({
        "PERFLAW_DATA_DIR": str(tmp_path / "data"),
        "PERFLAW_DATABASE_URL": f"sqlite:///{tmp_path / 'perflaw.sqlite3'}",
        "PERFLAW_WORKERS": "0",
        "PERFLAW_LOG_FORMAT": "json",
    })
    return environment


class Server:
    """A `perflaw serve` process whose stderr goes to a file."""

    def __init__(self, environment: dict[str, str], host: str, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*perflaw_command(), "serve", "--host", host, "--port", str(self.port)],
                env=environment, stdout=log, stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"perflaw serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"perflaw serve did not answer /healthz within {START_TIMEOUT_S} s:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_server(service_env, tmp_path) -> Iterator:
    servers: list[Server] = []

    def start(host: str) -> Server:
        server = Server(service_env, host, tmp_path / f"serve-{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def run_perflaw(service_env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*perflaw_command(), *map(str, arguments)], env=service_env, capture_output=True, text=True, timeout=120
    )


def test_public_address_without_keys_is_refused(start_server):
    server = start_server("0.0.0.0")

    exit_code = server.process.wait(timeout=START_TIMEOUT_S)

    assert exit_code == 2
    output = server.output()
    assert "refusing to listen on 0.0.0.0 without API keys" in output
    assert "perflaw keys create" in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base_url}/healthz", timeout=2)


def test_public_address_with_key_starts_and_checks_keys(service_env, start_server):
    assert run_perflaw(service_env, "db", "upgrade").returncode == 0
    created = run_perflaw(service_env, "keys", "create", "--tenant", "e2e")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    server = start_server("0.0.0.0")

    server.wait_ready()
    anonymous = httpx.get(f"{server.base_url}/v1/datasets", timeout=10)
    with_key = httpx.get(f"{server.base_url}/v1/datasets", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
    server.stop()

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert with_key.status_code == 200, with_key.text
    assert with_key.json()["items"] == []
    assert ready.status_code == 200, ready.text


def test_revoked_key_is_refused_by_running_server(service_env, start_server):
    assert run_perflaw(service_env, "db", "upgrade").returncode == 0
    key = run_perflaw(service_env, "keys", "create", "--tenant", "e2e").stdout.strip()
    server = start_server("127.0.0.1")
    server.wait_ready()
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{server.base_url}/v1/datasets", headers=headers, timeout=10).status_code == 200

    revoked = run_perflaw(service_env, "keys", "revoke", key)
    after = httpx.get(f"{server.base_url}/v1/datasets", headers=headers, timeout=10)
    server.stop()

    assert revoked.returncode == 0, revoked.stderr
    assert after.status_code == 401


def test_loopback_without_keys_serves_and_logs_json(start_server):
    server = start_server("127.0.0.1")
    server.wait_ready()

    response = httpx.get(f"{server.base_url}/v1/datasets/5", headers={"X-Request-ID": "e2e-trace-7"}, timeout=10)
    server.stop()

    assert response.status_code == 404
    assert response.headers["x-request-id"] == "e2e-trace-7"
    records = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    access = [record for record in records if record.get("request_id") == "e2e-trace-7"]
    assert len(access) == 1, server.output()
    assert access[0]["logger"] == "app.access"
    assert access[0]["status"] == 404
    assert access[0]["path"] == "/v1/datasets/5"


def test_train_on_server_prints_prediction_against_measurement(service_env, start_server, tmp_path):
    service_env["PERFLAW_WORKERS"] = "1"
    log = tmp_path / "cycle.txt"
    log.write_text("".join(f"u{user} {1 + (user + step) % 12}\n" for user in range(60) for step in range(8)))
    server = start_server("127.0.0.1")
    server.wait_ready()
    options = ["--format", "sasrec", "--layers", "1", "--max-len", "10", "--epochs", "1", "--server", server.base_url]

    uploaded = httpx.post(f"{server.base_url}/v1/datasets", params={"format": "sasrec"},
                          files={"file": ("cycle.txt", log.read_bytes())}, timeout=30)
    predicted = httpx.post(f"{server.base_url}/v1/predictions", timeout=30,
                           json={"dataset_id": uploaded.json()["id"], "layers": [1], "d_models": [8], "metric": "hr@10"})
    compared = run_perflaw(service_env, "train", log, "--d-model", "8", *options)
    uncompared = run_perflaw(service_env, "train", log, "--d-model", "16", *options)
    server.stop()

    assert predicted.status_code == 200, predicted.text
    assert compared.returncode == 0, compared.stderr
    assert "sasrec 1 x 8 on cycle.txt, protocol full" in compared.stdout
    assert f"hr@10: predicted {predicted.json()['predictions'][0]['predicted']:.4f}" in compared.stdout
    assert uncompared.returncode == 0, uncompared.stderr
    assert "the server has none for this dataset and size" in uncompared.stdout
