"""The `perflaw` commands in process, on real files: outputs, exit codes and error messages."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli.main import app
from core.laws import get_form

TRUE_PARAMS = {"w1": 0.1, "a": -0.5, "w2": 0.5, "b": -0.15, "c": -0.03, "e": 0.9}
COLUMNS = ["dataset", "n_layers", "d_model", "n_heads", "max_len", "tokens", "apen", "protocol", "hr@10", "ndcg@10"]

runner = CliRunner()


def invoke(*arguments: str):
    return runner.invoke(app, [str(argument) for argument in arguments])


def write_runs(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


def law_runs(seed: int = 0) -> list[list]:
    """32 runs whose ndcg@10 follows a known performance law, with a little noise."""
    form = get_form("performance_law")
    generator = np.random.default_rng(seed)
    rows = []
    for tokens in (100_000, 300_000):
        for n_layers in (1, 2, 4, 8):
            for d_model in (16, 32, 64, 128):
                value = float(form.function(TRUE_PARAMS, np.array([n_layers]), np.array([d_model]), np.array([tokens * 0.2]), xi=2.0)[0])
                noisy = value + generator.normal(0, 0.002)
                rows.append([f"ds{tokens}", n_layers, d_model, 1, 50, tokens, 0.2, "full", min(1.0, 1.6 * noisy), noisy])
    return rows


@pytest.fixture(scope="module")
def law_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("law")
    runs = write_runs(folder / "runs.csv", law_runs())
    result = invoke("fit", runs, "--metric", "ndcg@10", "--n-bootstrap", "50", "--output", folder / "law.json")
    assert result.exit_code == 0, result.output
    return folder / "law.json"


@pytest.fixture
def log_file(tmp_path) -> Path:
    path = tmp_path / "log.txt"
    path.write_text("".join(f"{user} {item}\n" for user in range(1, 301) for item in range(user % 9, user % 9 + 8)))
    return path


def test_profile_json_is_one_document(log_file):
    result = invoke("profile", log_file, "--format", "sasrec", "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["dataset"]["n_interactions"] == 2400
    assert document["profile"]["params"]["m"] == 2


def test_profile_explains_negative_d_prime(log_file):
    pincus = invoke("profile", log_file, "--format", "sasrec")
    reference = invoke("profile", log_file, "--format", "sasrec", "--variant", "reference")

    assert pincus.exit_code == 0, pincus.output
    assert "note: D' is negative" in pincus.stdout
    assert reference.exit_code == 0, reference.output
    assert "note: D' is negative" not in reference.stdout
    assert "Sample Entropy is undefined for every sequence" in pincus.stdout


def test_profile_repeated_items_omit_note(tmp_path):
    path = tmp_path / "cycles.txt"
    path.write_text("".join(f"{user} {step % 3}\n" for user in range(1, 21) for step in range(12)))

    result = invoke("profile", path, "--format", "sasrec")

    assert result.exit_code == 0, result.output
    assert "Sample Entropy is undefined" not in result.stdout


def test_profile_bad_row_exits_2_with_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("user,item\nu1,a\nu2,\n")

    result = invoke("profile", path)

    assert result.exit_code == 2
    assert "line 3" in result.stderr


def test_profile_missing_file_exits_2(tmp_path):
    result = invoke("profile", tmp_path / "absent.csv")

    assert result.exit_code == 2
    assert "not found" in result.stderr


def test_fit_writes_law_with_quality(law_file):
    document = json.loads(law_file.read_text())

    assert document["form"] == "performance_law"
    assert document["metric"] == "ndcg@10"
    assert document["diagnostics"]["r2"] > 0.9


def test_fit_json_reports_parameters(tmp_path):
    runs = write_runs(tmp_path / "runs.csv", law_runs(seed=1))

    result = invoke("fit", runs, "--metric", "ndcg@10", "--n-bootstrap", "0", "--json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert set(summary["params"]) == set(TRUE_PARAMS)
    assert summary["n_observations"] == 32


def test_fit_plot_writes_png(tmp_path):
    runs = write_runs(tmp_path / "runs.csv", law_runs(seed=2))

    result = invoke("fit", runs, "--metric", "ndcg@10", "--n-bootstrap", "0", "--plot", tmp_path / "law.png")

    assert result.exit_code == 0, result.output
    assert (tmp_path / "law.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "rows, message",
    [
        (law_runs()[:2], "observations"),
        ([[*row[:8], row[8], float("nan")] for row in law_runs()], "ndcg@10"),
        ([[row[0], -row[1], *row[2:]] for row in law_runs()], "n_layers"),
    ],
    ids=["too-few-runs", "nan-metric", "negative-layers"],
)
def test_fit_degenerate_runs_exit_2(tmp_path, rows, message):
    runs = write_runs(tmp_path / "runs.csv", rows)

    result = invoke("fit", runs, "--metric", "ndcg@10")

    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_fit_one_size_folds_with_warning(tmp_path):
    rows = [row for row in law_runs() if row[1] == 2]

    result = invoke("fit", write_runs(tmp_path / "runs.csv", rows), "--metric", "ndcg@10", "--n-bootstrap", "0", "--json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert "n_layers" in summary["folded_inputs"]
    assert any("n_layers" in warning for warning in summary["warnings"])


def test_predict_with_law_file(log_file, law_file):
    result = invoke("predict", log_file, "--format", "sasrec", "--layers", "2,4", "--d-model", "32,64",
                    "--metric", "ndcg@10", "--law", law_file, "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [(row["n_layers"], row["d_model"]) for row in document["predictions"]] == [(2, 32), (2, 64), (4, 32), (4, 64)]
    assert all(row["low"] <= row["predicted"] <= row["high"] for row in document["predictions"])
    assert document["data"]["d_prime"] == pytest.approx(document["data"]["tokens"] * document["data"]["apen"])
    assert document["law"]["source"] == "file"


def test_predict_shows_read_warnings(tmp_path, law_file):
    path = tmp_path / "log.tsv"
    path.write_text("".join(f"u{user}\t{(user + step) % 20}\t{step}\n" for user in range(40) for step in range(6)))

    result = invoke("predict", path, "--layers", "2", "--d-model", "32", "--law", law_file, "--metric", "ndcg@10")

    assert result.exit_code == 0, result.output
    assert "was taken as the timestamp" in result.stdout


def test_predict_invalid_layers_exit_2(log_file, law_file):
    result = invoke("predict", log_file, "--layers", "2,x", "--law", law_file, "--metric", "ndcg@10")

    assert result.exit_code == 2
    assert "--layers" in result.stderr


def test_predict_law_of_other_metric_exit_2(log_file, law_file):
    result = invoke("predict", log_file, "--format", "sasrec", "--law", law_file, "--metric", "hr@10")

    assert result.exit_code == 2
    assert "ndcg@10" in result.stderr


def test_plan_stays_within_budget(log_file, law_file):
    result = invoke("plan", log_file, "--format", "sasrec", "--max-params", "100k", "--law", law_file,
                    "--metric", "ndcg@10", "--json")

    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["plan"]
    assert plan["best"]["params"] <= 100_000
    assert plan["budget_kind"] == "params"


def test_plan_needs_one_budget(log_file, law_file):
    result = invoke("plan", log_file, "--law", law_file, "--metric", "ndcg@10")

    assert result.exit_code == 2
    assert "budget" in result.stderr


def test_check_fails_with_exit_1_and_reason(log_file, law_file):
    result = invoke("check", log_file, "--format", "sasrec", "--layers", "2", "--d-model", "32", "--min", "0.99",
                    "--law", law_file, "--metric", "ndcg@10")

    assert result.exit_code == 1, result.output
    assert "FAILED" in result.stdout
    assert "below the minimum 0.990" in result.stdout


def test_check_passes_with_exit_0(log_file, law_file):
    result = invoke("check", log_file, "--format", "sasrec", "--layers", "2", "--d-model", "32", "--min", "0.05",
                    "--law", law_file, "--metric", "ndcg@10", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passed"] is True


def test_check_gap_to_best_fails(log_file, law_file):
    result = invoke("check", log_file, "--format", "sasrec", "--layers", "1", "--d-model", "16", "--max-gap", "0.0001",
                    "--max-params", "1M", "--law", law_file, "--metric", "ndcg@10", "--json")

    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["numbers"]["gap"] > 0.0001
    assert any("gap" in reason for reason in document["reasons"])


def test_dataset_id_without_server_exit_2(law_file):
    result = invoke("predict", "--dataset", "3", "--law", law_file)

    assert result.exit_code == 2
    assert "--server" in result.stderr


def test_train_appends_run_to_runs_file(log_file, tmp_path):
    runs_out = tmp_path / "runs.csv"

    for width in (8, 16):
        result = invoke("train", log_file, "--format", "sasrec", "--layers", "1", "--d-model", width, "--max-len", "10",
                        "--epochs", "2", "--device", "cpu", "--runs-out", runs_out, "--json")
        assert result.exit_code == 0, result.output

    rows = list(csv.DictReader(runs_out.open()))
    assert [int(row["d_model"]) for row in rows] == [8, 16]
    assert all(0 <= float(row["ndcg@10"]) <= 1 for row in rows)
    assert float(rows[0]["d_prime"]) == pytest.approx(float(rows[0]["tokens"]) * float(rows[0]["apen"]))


def test_train_invalid_width_exit_2(log_file):
    result = invoke("train", log_file, "--format", "sasrec", "--d-model", "10", "--n-heads", "3", "--epochs", "1")

    assert result.exit_code == 2
    assert "n_heads" in result.stderr


def test_train_checks_options_before_reading_the_file(tmp_path):
    result = invoke("train", tmp_path / "not-read.csv", "--epochs", "0")

    assert result.exit_code == 2
    assert "epochs must be a positive integer" in result.stderr


def test_train_table_lists_cutoffs_and_comparison(log_file):
    result = invoke("train", log_file, "--format", "sasrec", "--layers", "1", "--d-model", "8", "--max-len", "10",
                    "--epochs", "1", "--device", "cpu")

    assert result.exit_code == 0, result.output
    rows = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("│")}
    assert {"1", "5", "10", "20", "50"} <= rows
    assert "(reference ApEn)" in result.stdout
    assert "the epoch limit before early stopping" in result.stdout
    comparisons = [line for line in result.stdout.splitlines() if line.startswith(("hr@10: predicted", "ndcg@10: predicted"))]
    assert len(comparisons) == 2
    assert all(line.endswith(("inside the interval", "outside the interval")) for line in comparisons)


def test_train_json_compares_under_reference_protocol(log_file):
    full = invoke("train", log_file, "--format", "sasrec", "--layers", "1", "--d-model", "8", "--max-len", "10",
                  "--epochs", "1", "--device", "cpu", "--json")
    sampled = invoke("train", log_file, "--format", "sasrec", "--layers", "1", "--d-model", "8", "--max-len", "10",
                     "--epochs", "1", "--device", "cpu", "--protocol", "sampled-100", "--json")

    document = json.loads(full.stdout)
    compared = document["prediction"]["hr@10"]
    assert compared["measured"] == document["metrics"]["hr@10"]
    assert compared["error"] == pytest.approx(compared["measured"] - compared["predicted"])
    assert compared["within_interval"] == (compared["low"] <= compared["measured"] <= compared["high"])
    assert "prediction" not in json.loads(sampled.stdout)
    assert any("full protocol only" in note for note in json.loads(sampled.stdout)["notes"])


def test_train_notes_include_read_warnings(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_text("".join(f"u{user}\t{(user + step) % 20}\t{step}\n" for user in range(40) for step in range(6)))

    result = invoke("train", path, "--layers", "1", "--d-model", "8", "--max-len", "10", "--epochs", "1",
                    "--device", "cpu", "--json")

    assert result.exit_code == 0, result.output
    assert any("was taken as the timestamp" in note for note in json.loads(result.stdout)["notes"])


def test_keys_create_without_database_writes_nothing(tmp_path, monkeypatch):
    from app.runtime import reset_cached_state

    monkeypatch.delenv("PERFLAW_DATABASE_URL", raising=False)
    monkeypatch.setenv("PERFLAW_DATA_DIR", str(tmp_path / "fresh"))
    reset_cached_state()

    result = invoke("keys", "create", "--tenant", "team")
    reset_cached_state()

    assert result.exit_code == 2
    assert "perflaw db upgrade" in result.stderr
    assert not (tmp_path / "fresh" / "perflaw.sqlite3").exists()


def test_keys_create_without_schema_exits_2(tmp_path, monkeypatch):
    import sqlite3

    from app.runtime import reset_cached_state

    path = tmp_path / "empty.sqlite3"
    sqlite3.connect(path).close()
    monkeypatch.setenv("PERFLAW_DATABASE_URL", f"sqlite:///{path}")
    reset_cached_state()

    result = invoke("keys", "create", "--tenant", "team")
    reset_cached_state()

    assert result.exit_code == 2
    assert "does not have the newest perflaw schema" in result.stderr


def test_keys_create_and_revoke_on_an_upgraded_database(service_env):
    created = invoke("keys", "create", "--tenant", "team")
    revoked = invoke("keys", "revoke", created.stdout.strip())
    revoked_again = invoke("keys", "revoke", created.stdout.strip())

    assert created.exit_code == 0, created.output
    assert created.stdout.startswith("pl_")
    assert "shown only this once" in created.stderr
    assert revoked.exit_code == 0, revoked.output
    assert revoked_again.exit_code == 2
    assert "already revoked" in revoked_again.stderr


def key_is_active(secret: str) -> bool:
    from app import auth
    from app.db import session_scope

    with session_scope() as session:
        return auth.tenant_for_key(session, secret) is not None


def test_keys_revoke_with_mistyped_key_revokes_nothing(service_env):
    secret = invoke("keys", "create", "--tenant", "team").stdout.strip()

    result = invoke("keys", "revoke", secret[:8] + "not-the-rest-of-the-key")

    assert result.exit_code == 2
    assert key_is_active(secret)


def test_keys_revoke_by_prefix(service_env):
    secret = invoke("keys", "create", "--tenant", "team").stdout.strip()

    result = invoke("keys", "revoke", secret[:8])

    assert result.exit_code == 0, result.output
    assert not key_is_active(secret)


def test_keys_revoke_rejects_ambiguous_or_short_prefix(service_env):
    from app.db import session_scope
    from app.models import ApiKey

    secret = invoke("keys", "create", "--tenant", "team").stdout.strip()
    with session_scope() as session:
        tenant_id = session.scalar(select(ApiKey.tenant_id))
        session.add(ApiKey(tenant_id=tenant_id, key_hash="0" * 64, prefix=secret[:8]))

    ambiguous = invoke("keys", "revoke", secret[:8])
    short = invoke("keys", "revoke", "pl_")

    assert ambiguous.exit_code == 2
    assert "2 active keys start with" in ambiguous.stderr
    assert short.exit_code == 2
    assert "first 8 characters" in short.stderr
    assert key_is_active(secret)
