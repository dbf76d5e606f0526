"""Property-based requests from the service's own OpenAPI document: none may get a 5xx.

Schemathesis generates valid and invalid requests for every operation in /openapi.json and
sends them to the ASGI app in process, on SQLite and on PostgreSQL. Each test first stores
a dataset, runs and a law with id 1, so generated ids can reach real rows as well as
missing ones. Hypothesis runs derandomized (a fixed seed per test) with a small example
budget per operation, so the whole module takes about a minute and fails the same way twice.
"""

from __future__ import annotations

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from app.main import create_app
from app.settings import Settings
from core.laws import get_form

EXAMPLES_PER_OPERATION = 10
# A law fit runs n_bootstrap refits (200 by default, up to 2000), which takes seconds. Capping
# it keeps the module within its time budget without changing which code paths run.
MAX_FUZZ_BOOTSTRAP = 10
LAW_PARAMS = {"w1": 0.1, "a": -0.5, "w2": 0.5, "b": -0.15, "c": -0.03, "e": 0.9}
CYCLE_LOG = b"".join(f"{user} {1 + (user + step) % 12}\n".encode() for user in range(40) for step in range(8))

# Only the middleware limits are read when the app is built, so default settings suffice
# here. Each request reads the test database and data folder that service_env sets.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings()))


def law_shaped_runs(dataset_id: int) -> list[dict]:
    """Sixteen runs whose ndcg@10 follows a performance law exactly, so fits converge fast."""
    form = get_form("performance_law")
    runs = []
    for n_layers in (1, 2, 4, 8):
        for d_model in (16, 32, 64, 128):
            value = form.function(LAW_PARAMS, np.array([n_layers]), np.array([d_model]), np.array([900.0]), xi=2.0)[0]
            runs.append({
                "dataset_id": dataset_id, "n_layers": n_layers, "d_model": d_model, "max_len": 10, "d_prime": 900.0,
                "protocol": "full", "metrics": {"ndcg@10": float(value)},
            })
    return runs


@pytest.fixture
def stored_rows(client) -> None:
    """Store a dataset, sixteen runs and a law, so that id 1 exists for each."""
    uploaded = client.post("/v1/datasets", params={"format": "sasrec"}, files={"file": ("cycle.txt", CYCLE_LOG)})
    assert uploaded.status_code == 201, uploaded.text
    assert client.post("/v1/runs", json={"runs": law_shaped_runs(uploaded.json()["id"])}).status_code == 201
    law = client.post("/v1/laws", json={"metric": "ndcg@10", "n_bootstrap": 0})
    assert law.status_code == 201, law.text


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_no_server_errors(case, stored_rows):
    if case.method == "POST" and case.path == "/v1/laws" and isinstance(case.body, dict):
        requested = case.body.get("n_bootstrap", MAX_FUZZ_BOOTSTRAP)
        if isinstance(requested, int) and not isinstance(requested, bool):
            case.body["n_bootstrap"] = min(requested, MAX_FUZZ_BOOTSTRAP)

    case.call_and_validate(checks=[not_a_server_error])
