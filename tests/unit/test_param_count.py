"""The closed-form parameter count equals the parameters of the PyTorch models."""

import itertools

import pytest
import torch

from core.models import CausalRecommender, ModelConfig, build_model
from core.sizing import count_parameters

WIDTHS = (8, 12, 16, 24, 50, 64, 96)
HEADS = (1, 2, 3, 4)
ITEM_COUNTS = (1, 5000)
MAX_LENS = (1, 200)


def model_parameters(config: ModelConfig) -> tuple[int, int]:
    """Return (all parameters, item-embedding parameters) of the model for config."""
    # The meta device allocates no memory.
    with torch.device("meta"):
        model = build_model(config)
    total = sum(parameter.numel() for parameter in model.parameters())
    return total, model.item_embedding.weight.numel()


def valid_configs(arch: str, n_layers: int):
    for d_model, n_heads, n_items, max_len in itertools.product(
        WIDTHS, HEADS, ITEM_COUNTS, MAX_LENS
    ):
        if d_model % n_heads:
            continue
        if arch == "llama" and (d_model // n_heads) % 2:
            continue
        yield ModelConfig(
            arch=arch,
            n_layers=n_layers,
            d_model=d_model,
            n_heads=n_heads,
            max_len=max_len,
            dropout=0.0,
            n_items=n_items,
        )


@pytest.fixture
def skip_initialisation(monkeypatch):
    """Skip weight initialisation, which only costs time when counting parameters."""
    for module_class in (CausalRecommender, torch.nn.Linear, torch.nn.Embedding):
        monkeypatch.setattr(module_class, "reset_parameters", lambda self: None)


@pytest.mark.parametrize("arch", ["sasrec", "llama"])
@pytest.mark.parametrize("n_layers", [1, 2, 3, 4])
def test_closed_form_matches_model(arch, n_layers, skip_initialisation):
    for config in valid_configs(arch, n_layers):
        total, item_embedding = model_parameters(config)

        count = count_parameters(
            config.arch,
            config.n_layers,
            config.d_model,
            config.n_heads,
            config.n_items,
            config.max_len,
        )

        assert count.total == total, config
        assert count.embedding + count.non_embedding == count.total, config
        assert count.embedding >= item_embedding, config
