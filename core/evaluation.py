"""Ranking metrics for next-item prediction under the full and sampled protocols.

Each evaluated user has one target item and a history (the items before the target).
The target's rank is the number of candidates whose score is >= the target's score, the
target itself not counted, so ties count against the target and a model that scores every
item the same gets the worst rank rather than the best. Ranks are 0-based.

Protocols:
- "full": the candidates are all items 1..n_items except the target and, unless
  include_history is set, the items in the user's history.
- "sampled-100": 100 negatives drawn uniformly without replacement from the items that are
  neither the target nor in the user's history. The evaluation code of SASRec.pytorch draws
  its 100 negatives the same way but with replacement, which differs only when a
  catalogue is small enough for repeats to be likely.
- "sampled-2499": 2499 such negatives.
When fewer items are eligible than the protocol needs, all eligible items are used.

Metrics, averaged over users; with one relevant item the ideal DCG is 1, so NDCG is the
discounted gain of the target alone:
HR@K = [rank < K], NDCG@K = [rank < K] / log2(rank + 2), MRR = 1 / (rank + 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

PROTOCOLS = ("full", "sampled-100", "sampled-2499")
CUTOFFS = (1, 5, 10, 20, 50)
METRIC_NAMES = tuple(
    [f"hr@{k}" for k in CUTOFFS] + [f"ndcg@{k}" for k in CUTOFFS] + ["mrr"]
)
# Rows per scoring batch are capped so a (rows, n_items + 1) float32 score matrix stays
# near 128 MiB, whatever the catalogue size.
MAX_SCORE_ELEMENTS = 1 << 25


def count_negatives(protocol: str) -> int | None:
    """Return the number of sampled negatives for protocol, or None for "full"."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol == "full":
        return None
    return int(protocol.removeprefix("sampled-"))


def left_pad_windows(
    items: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int
) -> np.ndarray:
    """Return the last `width` items of each slice items[start:end], left-padded with 0.

    Args:
        items: int64 array of item ids (1-based).
        starts, ends: int64 arrays of shape (n,) with slice bounds into items.
        width: window length.

    Returns:
        int64 array of shape (n, width); row r ends with items[ends[r] - 1].
    """
    indices = ends[:, None] - width + np.arange(width)[None, :]
    inside = indices >= starts[:, None]
    windows = items[np.clip(indices, 0, max(len(items) - 1, 0))] if len(items) else indices
    return np.where(inside, windows, 0).astype(np.int64)


@dataclass(frozen=True)
class EvaluationSet:
    """Users to evaluate: model inputs, targets and the histories to exclude.

    Attributes:
        inputs: int64 array (n_users, max_len), each row the last max_len history items,
            left-padded with 0.
        targets: int64 array (n_users,) with the item to rank.
        history_items: int64 array, the full histories (not cut to max_len) back to back.
        history_offsets: int64 array (n_users + 1,); user r's history is
            history_items[history_offsets[r]:history_offsets[r + 1]].
        n_items: number of items; ids are 1..n_items.
    """

    inputs: np.ndarray
    targets: np.ndarray
    history_items: np.ndarray
    history_offsets: np.ndarray
    n_items: int

    def __post_init__(self) -> None:
        n_users = len(self.targets)
        if self.inputs.ndim != 2 or self.inputs.shape[0] != n_users:
            raise ValueError(
                f"inputs must have shape ({n_users}, max_len), got {self.inputs.shape}"
            )
        if len(self.history_offsets) != n_users + 1:
            raise ValueError(
                f"history_offsets must have {n_users + 1} entries, got {len(self.history_offsets)}"
            )
        if n_users and (self.targets.min() < 1 or self.targets.max() > self.n_items):
            raise ValueError(f"targets must be item ids in 1..{self.n_items}")

    @property
    def n_users(self) -> int:
        return len(self.targets)

    @classmethod
    def from_histories(
        cls, histories: list[list[int]], targets: list[int], n_items: int, max_len: int
    ) -> EvaluationSet:
        """Build a set from per-user history lists; for tests and small tools."""
        lengths = np.array([len(history) for history in histories], dtype=np.int64)
        offsets = np.zeros(len(histories) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = np.array([item for history in histories for item in history], dtype=np.int64)
        return cls(
            inputs=left_pad_windows(items, offsets[:-1], offsets[1:], max_len),
            targets=np.asarray(targets, dtype=np.int64),
            history_items=items,
            history_offsets=offsets,
            n_items=n_items,
        )

    def history_mask(self, start: int, stop: int) -> torch.Tensor:
        """Return a bool tensor (stop - start, n_items + 1); True marks history items."""
        first, last = self.history_offsets[start], self.history_offsets[stop]
        lengths = np.diff(self.history_offsets[start : stop + 1])
        rows = np.repeat(np.arange(stop - start), lengths)
        mask = torch.zeros(stop - start, self.n_items + 1, dtype=torch.bool)
        mask[torch.from_numpy(rows), torch.from_numpy(self.history_items[first:last])] = True
        return mask


def rank_targets(
    target_scores: torch.Tensor, candidate_scores: torch.Tensor, candidate_valid: torch.Tensor
) -> torch.Tensor:
    """Return 0-based ranks: the valid candidates scoring >= the target, per row.

    Args:
        target_scores: (batch,) scores of the targets.
        candidate_scores: (batch, n_candidates) scores of the candidates.
        candidate_valid: bool (batch, n_candidates); False for candidates that do not count.
    """
    # A NaN score on either side counts against the target, so a model whose scores have
    # diverged gets the worst rank, not the best.
    beats_target = (
        (candidate_scores >= target_scores[:, None])
        | candidate_scores.isnan()
        | target_scores.isnan()[:, None]
    )
    return (beats_target & candidate_valid).sum(dim=1)


def summarize_ranks(ranks: torch.Tensor) -> dict[str, float]:
    """Return HR@K and NDCG@K for K in CUTOFFS, and MRR, averaged over ranks (0-based)."""
    ranks = ranks.to(torch.float64)
    metrics: dict[str, float] = {}
    gains = 1.0 / torch.log2(ranks + 2.0)
    for cutoff in CUTOFFS:
        hit = ranks < cutoff
        metrics[f"hr@{cutoff}"] = hit.to(torch.float64).mean().item()
        metrics[f"ndcg@{cutoff}"] = torch.where(hit, gains, 0.0).mean().item()
    metrics["mrr"] = (1.0 / (ranks + 1.0)).mean().item()
    return {name: metrics[name] for name in METRIC_NAMES}


def rank_full(
    scores: torch.Tensor, targets: torch.Tensor, excluded: torch.Tensor
) -> torch.Tensor:
    """Rank targets among all items (columns 1..n_items) that are not excluded.

    Args:
        scores: (batch, n_items + 1) item scores; column 0 (padding) never counts.
        targets: (batch,) target ids.
        excluded: bool (batch, n_items + 1); True for items that are not candidates.
            The target is never a candidate, whether excluded or not.
    """
    candidate_valid = ~excluded
    candidate_valid[:, 0] = False
    candidate_valid.scatter_(1, targets[:, None], False)
    target_scores = scores.gather(1, targets[:, None]).squeeze(1)
    return rank_targets(target_scores, scores, candidate_valid)


def sample_negatives(
    excluded: torch.Tensor, n_negatives: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw n_negatives distinct items per row uniformly from the items not excluded.

    Each item gets a uniform random key and the n_negatives smallest keys among eligible
    items win, which is uniform sampling without replacement.

    Args:
        excluded: bool (batch, n_items + 1) on the CPU; True for items that may not be drawn.
        n_negatives: negatives per row.
        generator: CPU generator that makes the draw reproducible.

    Returns:
        negatives: int64 (batch, k) item ids, k = min(n_negatives, n_items + 1).
        valid: bool (batch, k); False where a row had fewer eligible items than k.
    """
    keys = torch.rand(excluded.shape, generator=generator)
    keys[excluded] = float("inf")
    count = min(n_negatives, excluded.shape[1])
    negative_keys, negatives = torch.topk(keys, count, dim=1, largest=False, sorted=False)
    return negatives, torch.isfinite(negative_keys)


def rank_sampled(
    scores: torch.Tensor,
    targets: torch.Tensor,
    history: torch.Tensor,
    n_negatives: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Rank targets among n_negatives items drawn from outside the history and the target.

    Args:
        scores: (batch, n_items + 1) item scores on any device.
        targets: (batch,) target ids on the device of scores.
        history: bool (batch, n_items + 1) on the CPU; True for the history items.
        n_negatives: negatives per user.
        generator: CPU generator for the draw.
    """
    excluded = history.clone()
    excluded[:, 0] = True
    excluded.scatter_(1, targets.cpu()[:, None], True)
    negatives, valid = sample_negatives(excluded, n_negatives, generator)
    negatives, valid = negatives.to(scores.device), valid.to(scores.device)
    target_scores = scores.gather(1, targets[:, None]).squeeze(1)
    return rank_targets(target_scores, scores.gather(1, negatives), valid)


def evaluate_ranking(
    score_items: Callable[[torch.Tensor], torch.Tensor],
    evaluation_set: EvaluationSet,
    protocol: str,
    *,
    include_history: bool = False,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Score every user of evaluation_set and return the protocol's metrics.

    Args:
        score_items: maps inputs (batch, max_len) int64 on device to scores
            (batch, n_items + 1); higher means more likely next.
        evaluation_set: users, targets and histories.
        protocol: one of PROTOCOLS.
        include_history: keep history items as candidates; allowed for "full" only.
        seed: seed of the negative sample. For a fixed seed, user order and batch_size the
            negatives are the same on every call and on every device.
        batch_size: users per scoring batch; lowered for large catalogues so one score
            matrix stays under MAX_SCORE_ELEMENTS.
        device: where score_items expects its inputs.

    Returns:
        Metric name ("hr@10", "ndcg@10", "mrr", ...) to mean value over users.

    Raises:
        ValueError: for an unknown protocol, include_history with a sampled protocol, or
            an empty evaluation set.
    """
    n_negatives = count_negatives(protocol)
    if include_history and n_negatives is not None:
        raise ValueError("include_history applies to the full protocol only")
    if evaluation_set.n_users == 0:
        raise ValueError("evaluation set has no users")

    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    rows_per_batch = max(1, min(batch_size, MAX_SCORE_ELEMENTS // (evaluation_set.n_items + 1)))
    ranks = []
    for start in range(0, evaluation_set.n_users, rows_per_batch):
        stop = min(start + rows_per_batch, evaluation_set.n_users)
        inputs = torch.from_numpy(evaluation_set.inputs[start:stop]).to(device)
        targets = torch.from_numpy(evaluation_set.targets[start:stop]).to(device)
        scores = score_items(inputs).float()
        history = evaluation_set.history_mask(start, stop)
        if n_negatives is None:
            excluded = torch.zeros_like(history) if include_history else history
            batch_ranks = rank_full(scores, targets, excluded.to(device))
        else:
            batch_ranks = rank_sampled(scores, targets, history, n_negatives, generator)
        ranks.append(batch_ranks.cpu())
    return summarize_ranks(torch.cat(ranks))
