"""Causal transformers over item ids: SASRec and a LLaMA-style variant.

SASRec follows Kang and McAuley, "Self-Attentive Sequential Recommendation" (ICDM 2018),
with pre-LN blocks: x + Attention(LN(x)), then x + FFN(LN(x)), then a final LayerNorm.
This is the norm_first variant of the public PyTorch reimplementation SASRec.pytorch
(pmixer), which differs from it as follows:
- nn.Linear feed-forward layers instead of 1x1 convolutions (the same parameters);
- separate Q, K, V and output projections with biases (the parameters that
  nn.MultiheadAttention packs into one input projection and one output projection);
- padded keys are masked out of attention, where the reimplementation lets real
  positions attend to padding, so here the outputs at real positions do not depend on it;
- max_len position embeddings counted from the right end of the window, so the most
  recent item always gets position max_len - 1 and a sequence gives the same outputs at
  any input width. The reimplementation numbers the slots of a full-width window and
  keeps an extra zero row for padding.

LlamaRec swaps the normalisation, positions and feed-forward for those of LLaMA (Touvron
et al., 2023). It uses RMSNorm without bias and rotary position embeddings without
parameters (Su et al., 2021). Its SwiGLU feed-forward (Shazeer, 2020) has hidden width
8 * ceil(d / 3), which is LLaMA's 8d/3 rounded up to a multiple of 8. No linear layer in
it has a bias.

Both models take left-padded item ids of shape (batch, width), width <= max_len, with 0
as padding, return hidden states of shape (batch, width, d_model), and score items by the
dot product with the item embedding table (shared input and output embeddings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURES = ("sasrec", "llama")
SASREC_LAYER_NORM_EPS = 1e-8  # the value SASRec.pytorch uses
RMS_NORM_EPS = 1e-6
ROTARY_BASE = 10000.0


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Architecture and size of one model.

    Attributes:
        arch: "sasrec" or "llama".
        n_layers: number of transformer blocks.
        d_model: hidden width; a multiple of n_heads (and d_model / n_heads even for llama,
            because rotary embeddings rotate pairs of dimensions).
        n_heads: attention heads per block.
        max_len: maximum input width in items; SASRec learns one position embedding per slot.
        dropout: dropout probability for embeddings, attention weights and block outputs.
        n_items: number of distinct items; ids are 1..n_items and 0 is padding.
    """

    arch: str = "sasrec"
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 1
    max_len: int = 50
    dropout: float = 0.2
    n_items: int

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        for name in ("n_layers", "d_model", "n_heads", "max_len", "n_items"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})"
            )
        if self.arch == "llama" and (self.d_model // self.n_heads) % 2 != 0:
            raise ValueError(
                f"llama needs an even head width for rotary embeddings, got d_model / n_heads"
                f" = {self.d_model} / {self.n_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


def swiglu_hidden_width(d_model: int) -> int:
    """Return the SwiGLU hidden width 8 * ceil((8 * d_model / 3) / 8) = 8 * ceil(d_model / 3)."""
    return 8 * -(-d_model // 3)


def build_model(config: ModelConfig) -> CausalRecommender:
    """Create the model that config.arch names, with initialised weights."""
    if config.arch == "sasrec":
        return SASRec(config)
    return LlamaRec(config)


def build_attention_mask(item_ids: torch.Tensor) -> torch.Tensor:
    """Return the boolean attention mask (batch, 1, width, width); True means attend.

    A query attends to earlier and equal positions that contain an item. Every position
    also attends to itself, so a padding query has one key and no softmax row is fully
    masked, which would give NaN. The models zero the padding outputs afterwards.
    """
    width = item_ids.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=item_ids.device).tril()
    diagonal = torch.eye(width, dtype=torch.bool, device=item_ids.device)
    key_is_item = (item_ids != 0)[:, None, :]
    return (causal & (key_is_item | diagonal)).unsqueeze(1)


def build_rotary_tables(
    positions: torch.Tensor, head_width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return float32 cos and sin tables (width, head_width / 2) for rotary embeddings.

    Pair i of a head rotates by position * ROTARY_BASE^(-2i / head_width) (Su et al., 2021).
    """
    half = head_width // 2
    exponents = torch.arange(half, device=positions.device, dtype=torch.float32) / half
    inverse_frequencies = ROTARY_BASE ** (-exponents)
    angles = positions.to(torch.float32)[:, None] * inverse_frequencies[None, :]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the two halves of the last dimension of x (batch, heads, width, head_width)."""
    # Under autocast the projections come out in bf16 while the tables are float32.
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    first, second = x.chunk(2, dim=-1)
    return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with separate Q, K, V and output projections."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.o_proj = nn.Linear(d_model, d_model, bias=bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, width, d_model = x.shape
        return x.view(batch, width, self.n_heads, d_model // self.n_heads).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        queries = self.split_heads(self.q_proj(x))
        keys = self.split_heads(self.k_proj(x))
        values = self.split_heads(self.v_proj(x))
        if rotary is not None:
            queries = apply_rotary(queries, *rotary)
            keys = apply_rotary(keys, *rotary)

        attended = F.scaled_dot_product_attention(
            queries,
            keys,
            values,
            attn_mask=attention_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        batch, _, width, _ = attended.shape
        return self.o_proj(attended.transpose(1, 2).reshape(batch, width, -1))


class SASRecBlock(nn.Module):
    """Pre-LN SASRec block: x + Attention(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d_model = config.d_model
        self.attention_norm = nn.LayerNorm(d_model, eps=SASREC_LAYER_NORM_EPS)
        self.attention = CausalSelfAttention(d_model, config.n_heads, config.dropout, bias=True)
        self.feed_forward_norm = nn.LayerNorm(d_model, eps=SASREC_LAYER_NORM_EPS)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, d_model),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(d_model, d_model),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), attention_mask)
        return x + self.feed_forward(self.feed_forward_norm(x))


class SwiGLU(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x)), no biases."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        hidden_width = swiglu_hidden_width(d_model)
        self.gate_proj = nn.Linear(d_model, hidden_width, bias=False)
        self.up_proj = nn.Linear(d_model, hidden_width, bias=False)
        self.down_proj = nn.Linear(hidden_width, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaBlock(nn.Module):
    """LLaMA block: x + Attention(RMSNorm(x)), then x + SwiGLU(RMSNorm(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d_model = config.d_model
        self.attention_norm = nn.RMSNorm(d_model, eps=RMS_NORM_EPS)
        self.attention = CausalSelfAttention(d_model, config.n_heads, config.dropout, bias=False)
        self.feed_forward_norm = nn.RMSNorm(d_model, eps=RMS_NORM_EPS)
        self.feed_forward = SwiGLU(d_model)
        self.residual_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        attended = self.attention(self.attention_norm(x), attention_mask, rotary)
        x = x + self.residual_dropout(attended)
        return x + self.residual_dropout(self.feed_forward(self.feed_forward_norm(x)))


class CausalRecommender(nn.Module):
    """Shared parts of both architectures: the item table, scoring and initialisation."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(config.n_items + 1, config.d_model, padding_idx=0)
        self.embedding_dropout = nn.Dropout(config.dropout)

    def check_input(self, item_ids: torch.Tensor) -> None:
        if item_ids.ndim != 2:
            raise ValueError(
                f"item_ids must have shape (batch, width), got {tuple(item_ids.shape)}"
            )
        if item_ids.shape[1] > self.config.max_len:
            raise ValueError(
                f"input width {item_ids.shape[1]} exceeds max_len {self.config.max_len}"
            )

    def positions(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Return position indices (width,), right-aligned so the last slot is max_len - 1."""
        width = item_ids.shape[1]
        offset = self.config.max_len - width
        return torch.arange(offset, offset + width, device=item_ids.device)

    def score(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Return logits hidden . embedding(items); hidden (..., d_model), items (...)."""
        return (hidden * self.item_embedding(items)).sum(dim=-1)

    def score_all(self, hidden: torch.Tensor) -> torch.Tensor:
        """Return logits (batch, n_items + 1) for every item; column 0 is padding."""
        return hidden @ self.item_embedding.weight.T

    def reset_parameters(self) -> None:
        """Initialise weights as SASRec.pytorch does.

        Every weight matrix (embeddings and linear layers) is Xavier-normal, attention
        biases are zero (nn.MultiheadAttention's choice), feed-forward biases keep
        PyTorch's default, norms start at one, and the padding row is zero.
        """
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.xavier_normal_(module.weight)
            if isinstance(module, CausalSelfAttention):
                for projection in (module.q_proj, module.k_proj, module.v_proj, module.o_proj):
                    if projection.bias is not None:
                        nn.init.zeros_(projection.bias)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()


class SASRec(CausalRecommender):
    """SASRec with pre-LN blocks, learned positions and a shared item table."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.position_embedding = nn.Embedding(config.max_len, config.d_model)
        self.blocks = nn.ModuleList(SASRecBlock(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.d_model, eps=SASREC_LAYER_NORM_EPS)
        self.reset_parameters()

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Return hidden states (batch, width, d_model) for left-padded item_ids (batch, width).

        Padding positions (id 0) come out as zero vectors.
        """
        self.check_input(item_ids)
        is_item = (item_ids != 0).unsqueeze(-1)
        attention_mask = build_attention_mask(item_ids)

        # Embeddings scaled by sqrt(d_model), as in the Transformer and SASRec.
        x = self.item_embedding(item_ids) * math.sqrt(self.config.d_model)
        x = x + self.position_embedding(self.positions(item_ids))
        x = self.embedding_dropout(x * is_item)

        for block in self.blocks:
            x = block(x, attention_mask) * is_item
        return self.final_norm(x) * is_item


class LlamaRec(CausalRecommender):
    """LLaMA-style causal recommender: RMSNorm, rotary positions, SwiGLU, no biases."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.blocks = nn.ModuleList(LlamaBlock(config) for _ in range(config.n_layers))
        self.final_norm = nn.RMSNorm(config.d_model, eps=RMS_NORM_EPS)
        self.reset_parameters()

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Return hidden states (batch, width, d_model) for left-padded item_ids (batch, width).

        Padding positions (id 0) come out as zero vectors.
        """
        self.check_input(item_ids)
        is_item = (item_ids != 0).unsqueeze(-1)
        attention_mask = build_attention_mask(item_ids)
        x = self.embedding_dropout(self.item_embedding(item_ids))
        head_width = self.config.d_model // self.config.n_heads
        rotary = build_rotary_tables(self.positions(item_ids), head_width)

        for block in self.blocks:
            x = block(x, attention_mask, rotary) * is_item
        return self.final_norm(x) * is_item
