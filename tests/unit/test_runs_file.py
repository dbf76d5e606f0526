"""Tests of the runs-file reader and writer and of selecting observations from runs."""

import json

import numpy as np
import pytest

from core.runs_file import (
    RunRecord,
    RunsFileError,
    detect_format,
    format_runs,
    parse_runs,
    read_runs,
    select_observations,
    write_runs,
)

CSV_TEXT = """dataset,n_layers,d_model,n_heads,max_len,tokens,apen,protocol,hr@10,NDCG@10,seed
ml-1m,2,64,2,50,1000000,0.5,full,0.25,0.14,1
ml-1m,4,64,2,50,1000000,0.5,full,0.27,,2

beauty,2,128,4,50,200000,1.5,full,0.05,0.03,3
"""


def make_run(**changes):
    fields = dict(dataset="ml-1m", n_layers=2, d_model=64, n_heads=2, max_len=50,
                  d_prime=5e5, protocol="full", metrics={"hr@10": 0.25, "ndcg@10": 0.14},
                  tokens=1_000_000, apen=0.5)
    fields.update(changes)
    return RunRecord(**fields)


def test_csv_rows_are_read():
    runs = parse_runs(CSV_TEXT)
    assert len(runs) == 3
    first = runs[0]
    assert first.dataset == "ml-1m"
    assert (first.n_layers, first.d_model, first.n_heads, first.max_len) == (2, 64, 2, 50)
    assert first.d_prime == pytest.approx(500_000.0)
    assert first.metrics == {"hr@10": 0.25, "ndcg@10": 0.14}
    assert first.arch == "sasrec"
    assert first.seed == 1
    assert first.line == 2


def test_empty_metric_cell_is_missing():
    runs = parse_runs(CSV_TEXT)
    assert runs[1].metrics == {"hr@10": 0.27}


def test_line_numbers_count_blank_lines():
    assert parse_runs(CSV_TEXT)[2].line == 5


def test_jsonl_rows_are_read():
    text = "\n".join([
        json.dumps({"dataset": "a", "n_layers": 2, "d_model": 64, "n_heads": 1, "max_len": 50,
                    "d_prime": 1e6, "protocol": "sampled-100", "ndcg@10": 0.3,
                    "arch": "llama", "train_time_s": 12.5}),
        "",
        json.dumps({"dataset": "a", "n_layers": 4, "d_model": 64, "n_heads": 1, "max_len": 50,
                    "d_prime": 1e6, "protocol": "sampled-100", "ndcg@10": None}),
    ])
    runs = parse_runs(text)
    assert runs[0].arch == "llama"
    assert runs[0].protocol == "sampled-100"
    assert runs[0].train_time_s == 12.5
    assert runs[0].tokens is None
    assert runs[1].metrics == {}
    assert runs[1].line == 3


@pytest.mark.parametrize("format", ["csv", "jsonl"])
def test_round_trip_is_exact(tmp_path, format):
    runs = [make_run(), make_run(n_layers=4, metrics={"hr@10": 0.1 + 0.2}, seed=7,
                                 train_time_s=3.25, arch="llama"),
            make_run(tokens=None, apen=None, d_prime=123456.789, metrics={"mrr": 0.2})]
    path = tmp_path / f"runs.{format}"
    write_runs(runs, path)
    assert read_runs(path) == runs


def test_written_csv_orders_columns():
    header = format_runs([make_run(metrics={"ndcg@10": 0.1, "hr@5": 0.2, "hr@10": 0.3})])
    assert header.splitlines()[0] == (
        "dataset,arch,n_layers,d_model,n_heads,max_len,tokens,apen,d_prime,protocol,seed,"
        "train_time_s,hr@5,hr@10,ndcg@10")


def test_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_bytes(CSV_TEXT.encode("utf-8-sig"))
    assert len(read_runs(path)) == 3


@pytest.mark.parametrize("text, name, expected", [
    ("{}", None, "jsonl"), ("dataset,n_layers", None, "csv"), ("", "runs.jsonl", "jsonl"),
    ("{}", "runs.csv", "csv"), ("a", "runs.NDJSON", "jsonl"),
])
def test_format_detection(text, name, expected):
    assert detect_format(text, name) == expected


HEADER = "dataset,n_layers,d_model,n_heads,max_len,tokens,apen,d_prime,protocol,hr@10\n"


@pytest.mark.parametrize("row, message", [
    ("ml,2,64,2,50,1000,0.5,,full,0.2", None),
    ("ml,two,64,2,50,1000,0.5,,full,0.2", "line 2, column 'n_layers': expected an integer"),
    ("ml,2.5,64,2,50,1000,0.5,,full,0.2", "column 'n_layers': expected an integer >= 1"),
    ("ml,2,64,3,50,1000,0.5,,full,0.2", "column 'd_model': d_model 64 is not a multiple"),
    (",2,64,2,50,1000,0.5,,full,0.2", "column 'dataset': missing value"),
    ("ml,2,64,2,50,,0.5,,full,0.2", "column 'd_prime': missing value; give d_prime, or both tokens and apen"),
    ("ml,2,64,2,50,1000,0.0,,full,0.2", "d_prime = tokens x apen = 0 must be positive"),
    ("ml,2,64,2,50,1000,0.5,600,full,0.2", "column 'd_prime': d_prime 600 differs"),
    ("ml,2,64,2,50,1000,0.5,500.1,full,0.2", None),
    ("ml,2,64,2,50,,,-5,full,0.2", "column 'd_prime': expected a positive number"),
    ("ml,2,64,2,50,1000,0.5,,sampled,0.2", "column 'protocol': protocol must be"),
    ("ml,2,64,2,50,1000,0.5,,full,28.1", "column 'hr@10': expected a number in \\[0, 1\\]"),
    ("ml,2,64,2,50,1000,0.5,,full,nan", "column 'hr@10'"),
    ("ml,2,64,2,50,1000,0.5,,full", "line 2: expected 10 cells"),
])
def test_invalid_row_names_line_and_column(row, message):
    if message is None:
        assert len(parse_runs(HEADER + row)) == 1
        return
    with pytest.raises(RunsFileError, match=message):
        parse_runs(HEADER + row)


def test_error_carries_line_and_column():
    with pytest.raises(RunsFileError) as caught:
        parse_runs(HEADER + "ml,2,64,2,50,1000,0.5,,full,0.2\nml,2,x,2,50,1000,0.5,,full,0.2")
    assert caught.value.line == 3
    assert caught.value.column == "d_model"


@pytest.mark.parametrize("header, message", [
    ("dataset,n_layer,d_model", "column 'n_layer': unknown column"),
    ("dataset,hr@10,HR@10", "column 'hr@10': duplicate column"),
    ("dataset,ndcg@0", "column 'ndcg@0': unknown column"),
])
def test_invalid_header_raises(header, message):
    with pytest.raises(RunsFileError, match=message):
        parse_runs(header + "\n")


def test_empty_csv_raises():
    with pytest.raises(RunsFileError, match="empty"):
        parse_runs("", format="csv")


def test_invalid_json_line_raises():
    with pytest.raises(RunsFileError, match="line 2: invalid JSON"):
        valid = json.dumps({"dataset": "a", "n_layers": 2, "d_model": 64, "n_heads": 1,
                            "max_len": 50, "d_prime": 1e6, "protocol": "full"})
        parse_runs(valid + "\n{oops", format="jsonl")


def test_json_boolean_is_not_integer():
    row = {"dataset": "a", "n_layers": True, "d_model": 64, "n_heads": 1, "max_len": 50,
           "d_prime": 1e6, "protocol": "full"}
    with pytest.raises(RunsFileError, match="column 'n_layers'"):
        parse_runs(json.dumps(row))


def test_unknown_format_raises():
    with pytest.raises(RunsFileError, match="format must be"):
        parse_runs("x", format="xml")


def test_select_observations_builds_arrays():
    observations = select_observations(parse_runs(CSV_TEXT), "HR@10")
    np.testing.assert_array_equal(observations.n_layers, [2, 4, 2])
    np.testing.assert_array_equal(observations.y, [0.25, 0.27, 0.05])
    np.testing.assert_allclose(observations.d_prime, [5e5, 5e5, 3e5])
    assert observations.labels == ("ml-1m", "ml-1m", "beauty")


def test_select_reports_missing_metric():
    with pytest.raises(RunsFileError, match="1 runs have no ndcg@10 value \\(line 3\\)"):
        select_observations(parse_runs(CSV_TEXT), "ndcg@10")


def test_select_filters_by_dataset():
    observations = select_observations(parse_runs(CSV_TEXT), "ndcg@10", dataset="beauty")
    assert len(observations) == 1


def test_select_rejects_mixed_protocols():
    runs = [make_run(), make_run(protocol="sampled-100")]
    with pytest.raises(RunsFileError, match="mix protocols full, sampled-100"):
        select_observations(runs, "hr@10")
    assert len(select_observations(runs, "hr@10", protocol="full")) == 1


def test_select_rejects_mixed_architectures():
    runs = [make_run(), make_run(arch="llama")]
    with pytest.raises(RunsFileError, match="mix architectures llama, sasrec; .* pass arch="):
        select_observations(runs, "hr@10")


def test_select_rejects_no_match():
    with pytest.raises(RunsFileError, match="no runs match"):
        select_observations([make_run()], "hr@10", protocol="sampled-100")


def test_select_rejects_bad_metric_name():
    with pytest.raises(RunsFileError, match="invalid metric name"):
        select_observations([make_run()], "accuracy")
