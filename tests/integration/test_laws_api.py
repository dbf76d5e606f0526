"""Runs, laws, predictions, plans and checks through the API on real databases."""

from __future__ import annotations

import numpy as np
import pytest

from core.laws import get_form

TRUE_PARAMS = {"w1": 0.1, "a": -0.5, "w2": 0.5, "b": -0.15, "c": -0.03, "e": 0.9}
LAYERS = [1, 2, 4, 8]
WIDTHS = [16, 32, 64, 128]
D_PRIMES = [20_000.0, 60_000.0]


def synthetic_runs(noise: float = 0.002, seed: int = 0) -> list[dict]:
    """Runs whose ndcg@10 follows a known performance law, plus a little noise."""
    form = get_form("performance_law")
    generator = np.random.default_rng(seed)
    runs = []
    for d_prime in D_PRIMES:
        for layers in LAYERS:
            for width in WIDTHS:
                value = float(form.function(TRUE_PARAMS, np.array([layers]), np.array([width]), np.array([d_prime]), xi=2.0)[0])
                runs.append({
                    "dataset": f"synthetic-{int(d_prime)}", "n_layers": layers, "d_model": width, "n_heads": 1,
                    "max_len": 50, "d_prime": d_prime, "protocol": "full",
                    "metrics": {"ndcg@10": value + generator.normal(0, noise), "hr@10": min(1.0, 2 * value)},
                })
    return runs


@pytest.fixture
def fitted_law(client) -> dict:
    response = client.post("/v1/runs", json={"runs": synthetic_runs()})
    assert response.status_code == 201, response.text
    response = client.post("/v1/laws", json={"metric": "ndcg@10", "n_bootstrap": 50})
    assert response.status_code == 201, response.text
    return response.json()


def test_import_runs_and_filter(client):
    imported = client.post("/v1/runs", json={"runs": synthetic_runs()[:3]})

    assert imported.status_code == 201, imported.text
    listed = client.get("/v1/runs", params={"dataset": "synthetic-20000", "protocol": "full"}).json()
    assert len(listed["items"]) == 3
    assert all(run["source"] == "imported" for run in listed["items"])
    assert client.get("/v1/runs", params={"protocol": "sampled-100"}).json()["items"] == []


def test_run_needs_a_data_term(client):
    run = synthetic_runs()[0]
    del run["d_prime"]

    response = client.post("/v1/runs", json={"runs": [run]})

    assert response.status_code == 422
    assert "d_prime" in response.json()["detail"]


def test_run_with_percent_metric_is_rejected(client):
    run = synthetic_runs()[0]
    run["metrics"] = {"ndcg@10": 28.1}

    response = client.post("/v1/runs", json={"runs": [run]})

    assert response.status_code == 422
    assert "ndcg@10" in response.json()["detail"]


def test_fit_recovers_quality(fitted_law):
    summary = fitted_law["summary"]

    assert fitted_law["form"] == "performance_law"
    assert summary["n_observations"] == len(LAYERS) * len(WIDTHS) * len(D_PRIMES)
    assert summary["r2"] > 0.95
    assert summary["rmse"] < 0.005


def test_fit_with_too_few_runs_names_the_problem(client):
    client.post("/v1/runs", json={"runs": synthetic_runs()[:2]})

    response = client.post("/v1/laws", json={"metric": "ndcg@10"})

    assert response.status_code == 422
    assert "observations" in response.json()["detail"]


def test_fit_on_mixed_protocols_asks_to_choose(client):
    runs = synthetic_runs()
    runs[0]["protocol"] = "sampled-100"
    client.post("/v1/runs", json={"runs": runs})

    response = client.post("/v1/laws", json={"metric": "ndcg@10"})

    assert response.status_code == 422
    assert "protocol" in response.json()["detail"]


def test_prediction_matches_true_law_with_interval(client, fitted_law):
    response = client.post("/v1/predictions", json={
        "law": fitted_law["id"], "d_prime": 40_000, "layers": [2, 4], "d_models": [32, 64], "metric": "ndcg@10",
    })

    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["predictions"]) == 4
    form = get_form("performance_law")
    for row in body["predictions"]:
        truth = float(form.function(TRUE_PARAMS, np.array([row["n_layers"]]), np.array([row["d_model"]]), np.array([40_000.0]), xi=2.0)[0])
        assert abs(row["predicted"] - truth) < 0.01
        assert row["low"] <= row["predicted"] <= row["high"]
        assert row["extrapolated"] == []
    assert body["law"]["source"] == "law"


def test_prediction_outside_range_is_flagged(client, fitted_law):
    response = client.post("/v1/predictions", json={
        "law": fitted_law["id"], "d_prime": 40_000, "configs": [{"n_layers": 32, "d_model": 64}],
    })

    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["extrapolated"] == ["n_layers"]
    assert any("outside" in warning for warning in response.json()["warnings"])


def test_prediction_with_metric_of_other_law_is_rejected(client, fitted_law):
    response = client.post("/v1/predictions", json={
        "law": fitted_law["id"], "d_prime": 40_000, "layers": [2], "d_models": [32], "metric": "hr@10",
    })

    assert response.status_code == 422
    assert "ndcg@10" in response.json()["detail"]


def test_plan_respects_parameter_budget(client, fitted_law):
    response = client.post("/v1/plans", json={
        "law": fitted_law["id"], "d_prime": 40_000, "n_items": 10_000, "budget": "1M",
        "layer_grid": LAYERS, "width_grid": WIDTHS,
    })

    assert response.status_code == 200, response.text
    plan = response.json()["plan"]
    assert plan["best"]["params"] <= 1_000_000
    affordable = [candidate for candidate in plan["candidates"] if candidate["within_budget"]]
    assert plan["best"]["predicted"] == max(candidate["predicted"] for candidate in affordable)


def test_check_fails_with_reason_and_passes(client, fitted_law):
    request = {"law": fitted_law["id"], "d_prime": 40_000, "n_items": 10_000, "config": {"n_layers": 2, "d_model": 32}}

    failing = client.post("/v1/checks", json={**request, "min_metric": 0.99})
    passing = client.post("/v1/checks", json={**request, "min_metric": 0.01})

    assert failing.status_code == 200, failing.text
    assert failing.json()["passed"] is False
    assert "0.99" in failing.json()["reasons"][0]
    assert passing.json()["passed"] is True


@pytest.mark.parametrize("image_format, signature", [("png", b"\x89PNG"), ("svg", b"<?xml")])
def test_law_plot_formats(client, fitted_law, image_format, signature):
    response = client.get(f"/v1/laws/{fitted_law['id']}/plot", params={"format": image_format})

    assert response.status_code == 200
    assert response.content.startswith(signature)


def test_prediction_for_uploaded_dataset_uses_its_d_prime(client, fitted_law):
    log = b"".join(f"u{user} {item}\n".encode() for user in range(40) for item in range(user % 7, user % 7 + 6))
    dataset_id = client.post("/v1/datasets", params={"format": "sasrec"}, files={"file": ("log.txt", log)}).json()["id"]

    response = client.post("/v1/predictions", json={
        "law": fitted_law["id"], "dataset_id": dataset_id, "layers": [2], "d_models": [32],
    })

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["dataset_id"] == dataset_id
    assert data["d_prime"] == pytest.approx(data["tokens"] * data["apen"])
    assert data["apen_variant"] == "reference"
