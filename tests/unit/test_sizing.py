"""Tests of the closed-form parameter counts, the FLOPs estimate and the size parser."""

import pytest

from core.sizing import (
    ParameterCount,
    SizingError,
    count_parameters,
    ffn_hidden,
    format_size,
    parse_size,
    training_flops_per_token,
)


@pytest.mark.parametrize("arch, n_layers, d_model, n_heads, n_items, max_len, expected", [
    # embedding 10*4 + 5*4 = 60; block 8 + (64 + 16) + 8 + (32 + 8) = 136; final norm 8.
    ("sasrec", 1, 4, 2, 9, 5, ParameterCount(204, 60, 144)),
    # embedding 101*8 + 10*8 = 888; block 16 + 288 + 16 + 144 = 464, twice; final 16.
    ("sasrec", 2, 8, 2, 100, 10, ParameterCount(1832, 888, 944)),
    # h = 16; embedding 10*6 = 60; block 6 + 144 + 6 + 288 = 444; final norm 6.
    ("llama", 1, 6, 1, 9, 5, ParameterCount(510, 60, 450)),
    # h = 32; embedding 51*12 = 612; block 12 + 576 + 12 + 1152 = 1752, twice; final 12.
    ("llama", 2, 12, 2, 50, 7, ParameterCount(4128, 612, 3516)),
])
def test_count_matches_hand_count(arch, n_layers, d_model, n_heads, n_items, max_len,
                                  expected):
    assert count_parameters(arch, n_layers, d_model, n_heads, n_items, max_len) == expected


def test_heads_do_not_change_count():
    one_head = count_parameters("sasrec", 3, 64, 1, 500, 50)
    eight_heads = count_parameters("sasrec", 3, 64, 8, 500, 50)
    assert one_head == eight_heads


def test_llama_has_no_position_embedding():
    short = count_parameters("llama", 2, 64, 2, 500, 10)
    long = count_parameters("llama", 2, 64, 2, 500, 200)
    assert short == long


@pytest.mark.parametrize("d_model, expected", [(1, 8), (6, 16), (12, 32), (48, 128),
                                               (64, 176), (100, 272)])
def test_ffn_hidden_rounds_up_to_eight(d_model, expected):
    assert ffn_hidden(d_model) == expected


@pytest.mark.parametrize("arch, n_layers, d_model, n_heads", [
    ("sasrec", 1, 16, 1), ("sasrec", 2, 64, 2), ("sasrec", 3, 48, 4),
    ("llama", 1, 16, 1), ("llama", 2, 64, 2), ("llama", 3, 48, 4),
])
def test_count_matches_pytorch_model(arch, n_layers, d_model, n_heads):
    models = pytest.importorskip("core.models")
    config = models.ModelConfig(arch=arch, n_layers=n_layers, d_model=d_model,
                                n_heads=n_heads, max_len=20, n_items=77)
    model = models.build_model(config)
    expected = count_parameters(arch, n_layers, d_model, n_heads, 77, 20).total
    assert sum(parameter.numel() for parameter in model.parameters()) == expected


@pytest.mark.parametrize("n_negatives, expected", [
    # 6 * 144 non-embedding + 6 * 1 * 5 * 4 attention + 6 * 4 * scored items
    (1, 864 + 120 + 48),
    (100, 864 + 120 + 2424),
    (None, 864 + 120 + 216),
])
def test_flops_match_formula(n_negatives, expected):
    flops = training_flops_per_token("sasrec", 1, 4, 2, 9, 5, n_negatives=n_negatives)
    assert flops == expected


def test_flops_grow_with_context():
    short = training_flops_per_token("llama", 2, 64, 2, 500, 10)
    long = training_flops_per_token("llama", 2, 64, 2, 500, 20)
    assert long - short == 6 * 2 * 10 * 64


@pytest.mark.parametrize("arguments, message", [
    (("gru", 1, 64, 1, 10, 5), "arch must be one of"),
    (("sasrec", 0, 64, 1, 10, 5), "n_layers must be a positive integer, got 0"),
    (("sasrec", 1, 64.0, 1, 10, 5), "d_model must be a positive integer"),
    (("sasrec", 1, 64, 3, 10, 5), "d_model \\(64\\) must be a multiple of n_heads \\(3\\)"),
    (("llama", 1, 12, 4, 10, 5), "even head width"),
    (("sasrec", 1, 64, 1, 0, 5), "n_items must be a positive integer"),
    (("sasrec", 1, 64, 1, 10, True), "max_len must be a positive integer"),
])
def test_invalid_size_raises(arguments, message):
    with pytest.raises(SizingError, match=message):
        count_parameters(*arguments)


def test_negative_negatives_raise():
    with pytest.raises(SizingError, match="n_negatives"):
        training_flops_per_token("sasrec", 1, 4, 2, 9, 5, n_negatives=-1)


@pytest.mark.parametrize("text, expected", [
    ("20M", 20_000_000), ("20m", 20_000_000), ("1.5G", 1_500_000_000), ("2B", 2_000_000_000),
    ("300k", 300_000), ("300K", 300_000), ("1T", 10**12), ("2e7", 20_000_000),
    ("1_000_000", 1_000_000), (" 64 ", 64), ("1.5", 2), ("2.5e3k", 2_500_000),
])
def test_parse_size_reads_suffixes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "abc", "20X", "20Mi", "-5M", "0", "0.2", "1e400",
                                  "20 M B", None])
def test_parse_size_rejects_invalid(text):
    with pytest.raises(SizingError, match="size"):
        parse_size(text)


@pytest.mark.parametrize("value, expected", [(20_000_000, "20M"), (1_500_000_000, "1.5G"),
                                             (312_345, "312k"), (12, "12"), (2e12, "2T")])
def test_format_size_uses_suffixes(value, expected):
    assert format_size(value) == expected


def test_format_size_round_trips_through_parser():
    assert parse_size(format_size(20_000_000)) == 20_000_000
