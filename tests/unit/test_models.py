"""Properties of the SASRec and LLaMA-style models: shapes, causality, padding."""

import pytest
import torch

from core.models import (
    ARCHITECTURES,
    LlamaRec,
    ModelConfig,
    SASRec,
    build_attention_mask,
    build_model,
    swiglu_hidden_width,
)

MAX_LEN = 12
N_ITEMS = 40


def make_model(arch: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    settings = dict(arch=arch, n_layers=2, d_model=16, n_heads=2, max_len=MAX_LEN, dropout=0.3)
    settings.update(overrides)
    return build_model(ModelConfig(n_items=N_ITEMS, **settings)).eval()


def random_items(batch: int, width: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, N_ITEMS + 1, (batch, width), generator=generator)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_output_shapes(arch):
    model = make_model(arch)
    items = random_items(3, MAX_LEN)

    hidden = model(items)
    scores = model.score_all(hidden[:, -1])

    assert hidden.shape == (3, MAX_LEN, 16)
    assert scores.shape == (3, N_ITEMS + 1)
    assert model.score(hidden, items).shape == (3, MAX_LEN)


def test_build_model_picks_class():
    assert isinstance(make_model("sasrec"), SASRec)
    assert isinstance(make_model("llama"), LlamaRec)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_later_items_do_not_change_earlier_outputs(arch):
    model = make_model(arch)
    items = random_items(4, MAX_LEN)
    changed = items.clone()
    changed[:, 7:] = random_items(4, MAX_LEN - 7, seed=2)

    with torch.no_grad():
        original, altered = model(items), model(changed)

    torch.testing.assert_close(original[:, :7], altered[:, :7], rtol=0, atol=1e-6)
    assert not torch.allclose(original[:, 7:], altered[:, 7:])


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_padding_leaves_real_positions_unchanged(arch):
    model = make_model(arch)
    items = random_items(2, 5)
    padded = torch.cat((torch.zeros(2, MAX_LEN - 5, dtype=torch.long), items), dim=1)

    with torch.no_grad():
        alone, with_padding = model(items), model(padded)

    torch.testing.assert_close(with_padding[:, -5:], alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_padding_outputs_are_zero_and_finite(arch):
    model = make_model(arch)
    items = random_items(2, MAX_LEN)
    items[0, :9] = 0
    items[1, :-1] = 0

    with torch.no_grad():
        hidden = model(items)

    assert torch.isfinite(hidden).all()
    assert (hidden[0, :9] == 0).all()
    assert (hidden[1, :-1] == 0).all()
    assert (hidden[1, -1] != 0).any()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_training_mode_has_no_nan_on_padded_rows(arch):
    model = make_model(arch).train()
    items = random_items(3, MAX_LEN)
    items[:, :10] = 0

    hidden = model(items)
    hidden.sum().backward()

    assert torch.isfinite(hidden).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_attention_mask_blocks_future_and_padding():
    items = torch.tensor([[0, 0, 3, 4]])

    mask = build_attention_mask(items)[0, 0]

    expected = torch.tensor(
        [
            [True, False, False, False],
            [False, True, False, False],
            [False, False, True, False],
            [False, False, True, True],
        ]
    )
    assert torch.equal(mask, expected)


def test_input_wider_than_max_len_is_rejected():
    model = make_model("sasrec")

    with pytest.raises(ValueError, match="max_len"):
        model(random_items(1, MAX_LEN + 1))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(arch="gpt"), "arch"),
        (dict(d_model=10, n_heads=3), "multiple of n_heads"),
        (dict(arch="llama", d_model=6, n_heads=2), "even head width"),
        (dict(n_layers=0), "n_layers"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_invalid_config_is_rejected(settings, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(n_items=5, **settings)


def test_swiglu_width_is_rounded_up_multiple_of_8():
    for d_model in range(1, 200):
        width = swiglu_hidden_width(d_model)
        assert width % 8 == 0
        assert width >= 8 * d_model / 3
        assert width - 8 < 8 * d_model / 3
