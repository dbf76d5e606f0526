"""The server side of the CLI: the same commands, sent to a perflaw server over HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from app.cli.offline import ReadArguments
from app.cli.output import EXIT_BAD_INPUT, EXIT_SERVER_ERROR, fail
from core.runs_file import RunsFileError, read_runs

TIMEOUT_S = httpx.Timeout(connect=10.0, read=600.0, write=600.0, pool=10.0)


def _client(server: str) -> httpx.Client:
    headers = {}
    api_key = os.environ.get("PERFLAW_API_KEY")
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=TIMEOUT_S)


def request_json(server: str, method: str, path: str, **kwargs) -> dict:
    """Send one request and return its JSON body; 4xx exits with code 2, anything else wrong with 3."""
    try:
        with _client(server) as http:
            response = http.request(method, path, **kwargs)
    except httpx.HTTPError as error:
        fail(f"cannot reach {server}: {error}", EXIT_SERVER_ERROR)
    if response.status_code >= 400:
        fail(_describe_problem(response), EXIT_BAD_INPUT if response.status_code < 500 else EXIT_SERVER_ERROR)
    return response.json() if response.content else {}


def _describe_problem(response: httpx.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return f"server returned {response.status_code}: {response.text[:300]}"
    message = f"server returned {response.status_code}: {problem.get('detail') or problem.get('title')}"
    location = [f"{key} {problem[key]}" for key in ("line", "column", "value", "limit") if problem.get(key) is not None]
    return message + (f" ({', '.join(location)})" if location else "")


def upload_file(server: str, path: Path, arguments: ReadArguments) -> dict:
    """Upload a log and return the dataset document (an earlier identical upload is reused)."""
    if not path.is_file():
        fail(f"file not found: {path}")
    with open(path, "rb") as file:
        return request_json(
            server, "POST", "/v1/datasets", params=arguments.query_params(),
            files={"file": (path.name, file, "application/octet-stream")},
        )


def profile_file(server: str, path: Path, arguments: ReadArguments, values: dict, *, show_progress: bool) -> dict:
    dataset = upload_file(server, path, arguments)
    document = request_json(server, "GET", f"/v1/datasets/{dataset['id']}/profile", params=values)
    document["dataset"] = dataset
    return document


def import_runs_file(server: str, path: Path) -> dict:
    """Read a local runs file and import its runs; returns the created runs."""
    if not path.is_file():
        fail(f"runs file not found: {path}")
    try:
        records = read_runs(path)
    except RunsFileError as error:
        fail(f"{path}: {error}")
    runs = [
        {
            "dataset": record.dataset, "arch": record.arch, "n_layers": record.n_layers, "d_model": record.d_model,
            "n_heads": record.n_heads, "max_len": record.max_len, "tokens": record.tokens, "apen": record.apen,
            "d_prime": record.d_prime, "protocol": record.protocol, "metrics": dict(record.metrics),
            "seed": record.seed, "train_time_s": record.train_time_s,
        }
        for record in records
    ]
    return request_json(server, "POST", "/v1/runs", json={"runs": runs})
