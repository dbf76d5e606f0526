"""Exact parameter counts and training FLOPs of the recommender architectures.

The counts are closed forms of the models in core.models, written out per architecture in
count_parameters. A unit test compares them with sum(p.numel()) of the PyTorch modules.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

ARCHITECTURES = ("sasrec", "llama")


class SizingError(ValueError):
    """A model size, architecture or size string is invalid."""


@dataclass(frozen=True)
class ParameterCount:
    """Trainable parameters of one model.

    Attributes:
        total: embedding + non_embedding.
        embedding: the item embedding table and, for SASRec, the learned position
            embeddings. Kaplan et al. (2020) leave these out of a model's size N.
        non_embedding: everything else: the blocks and the final norm.
    """

    total: int
    embedding: int
    non_embedding: int


def ffn_hidden(d_model: int) -> int:
    """Return the SwiGLU hidden width h = 8 * ceil((8 d / 3) / 8) of the llama blocks.

    That is the 2/3 x 4d width of LLaMA (Touvron et al., arXiv:2302.13971, 2023) rounded up
    to a multiple of 8, which equals 8 * ceil(d / 3).
    """
    return 8 * -(-8 * d_model // 24)


def check_model_size(arch: str, n_layers: int, d_model: int, n_heads: int, n_items: int,
                     max_len: int) -> None:
    """Raise SizingError unless the arguments describe a model that can be built.

    Every size must be a positive integer, d_model a multiple of n_heads, and for llama the
    head width d_model / n_heads even, because rotary embeddings rotate pairs of dimensions.
    """
    if arch not in ARCHITECTURES:
        raise SizingError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    sizes = {"n_layers": n_layers, "d_model": d_model, "n_heads": n_heads,
             "n_items": n_items, "max_len": max_len}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SizingError(f"{name} must be a positive integer, got {value!r}")
    if d_model % n_heads:
        raise SizingError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
    if arch == "llama" and (d_model // n_heads) % 2:
        raise SizingError(
            f"llama needs an even head width for rotary embeddings, got d_model / n_heads = "
            f"{d_model} / {n_heads}"
        )


def count_parameters(arch: str, n_layers: int, d_model: int, n_heads: int, n_items: int,
                     max_len: int) -> ParameterCount:
    """Count the trainable parameters of a model exactly.

    With d = d_model, L = n_layers and V = n_items + 1 embedding rows (row 0 is padding):

    sasrec (pre-LN SASRec, Kang and McAuley 2018):
        embedding     = V d  (item table, also used to score items, counted once)
                      + max_len d  (learned position embedding)
        per block     = 2d  (LayerNorm weight and bias)
                      + 4d^2 + 4d  (Q, K, V and output Linear(d, d), each with bias)
                      + 2d  (LayerNorm)
                      + 2d^2 + 2d  (point-wise feed-forward Linear(d, d), ReLU, Linear(d, d))
                      = 6d^2 + 10d
        non_embedding = L (6d^2 + 10d) + 2d  (final LayerNorm)

    llama (RMSNorm, rotary positions, SwiGLU; Touvron et al. 2023):
        embedding     = V d  (item table, shared for scoring; rotary has no parameters)
        per block     = d  (RMSNorm weight)
                      + 4d^2  (Q, K, V and output, no bias)
                      + d  (RMSNorm)
                      + 3 d h  (SwiGLU gate, up and down, no bias), h = ffn_hidden(d)
                      = 4d^2 + 3dh + 2d
        non_embedding = L (4d^2 + 3dh + 2d) + d  (final RMSNorm)

    n_heads changes no count; it is validated only.

    Raises:
        SizingError: see check_model_size.
    """
    check_model_size(arch, n_layers, d_model, n_heads, n_items, max_len)
    d = d_model
    item_embedding = (n_items + 1) * d
    if arch == "sasrec":
        embedding = item_embedding + max_len * d
        non_embedding = n_layers * (6 * d * d + 10 * d) + 2 * d
    else:
        embedding = item_embedding
        non_embedding = n_layers * (4 * d * d + 3 * d * ffn_hidden(d) + 2 * d) + d
    return ParameterCount(embedding + non_embedding, embedding, non_embedding)


def training_flops_per_token(arch: str, n_layers: int, d_model: int, n_heads: int,
                             n_items: int, max_len: int, *, n_negatives: int | None = 1) -> int:
    """Estimate the floating-point operations of training on one token (one position).

    Following Kaplan et al., "Scaling Laws for Neural Language Models" (arXiv:2001.08361,
    2020), section 2.1, a forward pass costs 2 N + 2 L n_ctx d per token. N is the
    non-embedding parameter count, L = n_layers, n_ctx = max_len and d = d_model, and the
    second term is the attention scores and their weighted sum. A backward pass costs twice
    the forward, so training is 3 x forward. The loss adds the scoring of candidate items.
    Each scored item is a d-dimensional dot product (2d FLOPs forward). Per position, 1
    positive plus n_negatives sampled items are scored, or all n_items when n_negatives is
    None (a full softmax). Hence

        FLOPs per token = 6 N + 6 L max_len d + 6 d (1 + n_negatives).

    Like Kaplan's, this is an estimate. It charges 2 FLOPs per parameter per token (norm and
    bias parameters included), leaves out activations, softmax and normalisation, and
    charges every position the full context length although causal attention reads half of
    it on average. SASRec's binary cross-entropy uses n_negatives = 1.

    Raises:
        SizingError: see check_model_size, or n_negatives is not a non-negative integer.
    """
    count = count_parameters(arch, n_layers, d_model, n_heads, n_items, max_len)
    if n_negatives is None:
        scored_items = n_items
    elif isinstance(n_negatives, bool) or not isinstance(n_negatives, int) or n_negatives < 0:
        raise SizingError(f"n_negatives must be a non-negative integer or None, "
                          f"got {n_negatives!r}")
    else:
        scored_items = 1 + n_negatives
    forward = 2 * count.non_embedding + 2 * n_layers * max_len * d_model
    forward += 2 * d_model * scored_items
    return 3 * forward


_SIZE_PATTERN = re.compile(
    r"^\s*([0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]?)\s*$")
_SIZE_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9, "t": 10**12}


def parse_size(text: str) -> int:
    """Parse a count such as "20M", "1.5G", "300k", "2e7" or "1_000_000" into an integer.

    Suffixes are decimal and case-insensitive: k = 1e3, M = 1e6, G or B = 1e9, T = 1e12.
    A lower-case "m" means million, because a parameter or FLOP count has no use for milli.
    The value is rounded to the nearest integer.

    Raises:
        SizingError: the text is not a number with an optional suffix, or it is not positive.
    """
    match = _SIZE_PATTERN.match(text) if isinstance(text, str) else None
    if match is None or match.group(2).lower() not in _SIZE_SUFFIXES:
        raise SizingError(
            f"invalid size {text!r}; write a positive number with an optional suffix k, M, "
            "G (or B) or T, e.g. 20M or 1.5G"
        )
    value = float(match.group(1).replace("_", "")) * _SIZE_SUFFIXES[match.group(2).lower()]
    if not math.isfinite(value) or round(value) < 1:
        raise SizingError(f"size must be at least 1, got {text!r}")
    return round(value)


def format_size(value: float) -> str:
    """Format a count with a decimal suffix and three significant digits: 20M, 1.5G, 312k."""
    magnitude = abs(value)
    for suffix, factor in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if magnitude >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"
