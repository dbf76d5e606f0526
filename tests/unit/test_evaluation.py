"""Ranks, metrics and negative sampling of the evaluation protocols."""

import math

import numpy as np
import pytest
import torch

from core.evaluation import (
    CUTOFFS,
    METRIC_NAMES,
    EvaluationSet,
    count_negatives,
    evaluate_ranking,
    left_pad_windows,
    rank_full,
    rank_targets,
    sample_negatives,
    summarize_ranks,
)


def fixed_scorer(score_table: torch.Tensor):
    """Return a score function that gives row r of score_table to the r-th user scored."""
    calls = {"offset": 0}

    def score_items(inputs: torch.Tensor) -> torch.Tensor:
        start = calls["offset"]
        calls["offset"] += len(inputs)
        return score_table[start : start + len(inputs)]

    return score_items


def naive_metrics(ranks: list[int]) -> dict[str, float]:
    metrics = {}
    for cutoff in CUTOFFS:
        metrics[f"hr@{cutoff}"] = sum(rank < cutoff for rank in ranks) / len(ranks)
        gains = [1 / math.log2(rank + 2) if rank < cutoff else 0.0 for rank in ranks]
        metrics[f"ndcg@{cutoff}"] = sum(gains) / len(ranks)
    metrics["mrr"] = sum(1 / (rank + 1) for rank in ranks) / len(ranks)
    return metrics


def test_ties_count_against_target():
    target_scores = torch.tensor([0.5, 0.5, 0.5])
    candidate_scores = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.2, 0.9], [0.5, 0.5, 0.5]])
    valid = torch.ones(3, 3, dtype=torch.bool)

    ranks = rank_targets(target_scores, candidate_scores, valid)

    assert ranks.tolist() == [0, 2, 3]


def test_nan_scores_count_against_target():
    nan = float("nan")
    target_scores = torch.tensor([nan, 0.5])
    candidate_scores = torch.tensor([[0.1, 0.2], [nan, 0.1]])
    valid = torch.ones(2, 2, dtype=torch.bool)

    ranks = rank_targets(target_scores, candidate_scores, valid)

    assert ranks.tolist() == [2, 1]


def test_invalid_candidates_do_not_count():
    ranks = rank_targets(
        torch.tensor([0.5]), torch.tensor([[0.9, 0.8, 0.1]]), torch.tensor([[False, True, True]])
    )

    assert ranks.tolist() == [1]


def test_full_rank_excludes_history_but_never_target():
    # Items 1..5; the target 3 scores 0.5. Items 1 (0.9) and 4 (0.5, a tie) beat it.
    scores = torch.tensor([[9.0, 0.9, 0.1, 0.5, 0.5, 0.2]])
    targets = torch.tensor([3])
    history = torch.zeros(1, 6, dtype=torch.bool)

    assert rank_full(scores, targets, history.clone()).tolist() == [2]

    history[0, 1] = True
    assert rank_full(scores, targets, history.clone()).tolist() == [1]

    history[0, 3] = True
    assert rank_full(scores, targets, history.clone()).tolist() == [1]


def test_full_rank_ignores_padding_column():
    scores = torch.tensor([[100.0, 0.1, 0.2]])

    assert rank_full(scores, torch.tensor([2]), torch.zeros(1, 3, dtype=torch.bool)).tolist() == [0]


def test_evaluate_full_with_and_without_history():
    # User 0 has history [1], target 2; user 1 has history [2, 4], target 3.
    evaluation_set = EvaluationSet.from_histories([[1], [2, 4]], [2, 3], n_items=5, max_len=4)
    scores = torch.tensor(
        [
            [0.0, 0.9, 0.5, 0.7, 0.1, 0.5],  # target 2 at 0.5: items 1, 3 and 5 (tie) beat it
            [0.0, 0.1, 0.8, 0.3, 0.6, 0.2],  # target 3 at 0.3: items 2 and 4 beat it
        ]
    )

    excluded = evaluate_ranking(fixed_scorer(scores), evaluation_set, "full")
    included = evaluate_ranking(
        fixed_scorer(scores), evaluation_set, "full", include_history=True
    )

    assert excluded == pytest.approx(naive_metrics([2, 0]))
    assert included == pytest.approx(naive_metrics([3, 2]))


def test_summarize_matches_naive_oracle():
    ranks = [0, 1, 2, 3, 4, 5, 9, 10, 19, 20, 49, 50, 100, 0, 7]

    metrics = summarize_ranks(torch.tensor(ranks))

    assert list(metrics) == list(METRIC_NAMES)
    assert metrics == pytest.approx(naive_metrics(ranks), abs=1e-12)


def test_summarize_known_values():
    metrics = summarize_ranks(torch.tensor([0, 1]))

    assert metrics["hr@1"] == pytest.approx(0.5)
    assert metrics["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert metrics["mrr"] == pytest.approx(0.75)


def test_sampled_negatives_avoid_excluded_items():
    generator = torch.Generator().manual_seed(0)
    excluded = torch.zeros(50, 301, dtype=torch.bool)
    excluded[:, 0] = True
    excluded[:, 1:151] = True

    negatives, valid = sample_negatives(excluded, 100, generator)

    assert negatives.shape == (50, 100)
    assert valid.all()
    assert (negatives > 150).all()
    assert all(len(set(row.tolist())) == 100 for row in negatives)


def test_sampled_negatives_flag_shortage():
    generator = torch.Generator().manual_seed(0)
    excluded = torch.ones(1, 11, dtype=torch.bool)
    excluded[0, [2, 5, 7]] = False

    negatives, valid = sample_negatives(excluded, 5, generator)

    assert sorted(negatives[valid].tolist()) == [2, 5, 7]
    assert valid.sum() == 3


def test_sampled_protocol_uses_only_non_history_negatives():
    n_items = 300
    history = list(range(1, 151))
    evaluation_set = EvaluationSet.from_histories([history], [151], n_items=n_items, max_len=8)
    # History items outscore the target, the other items score below it, so only a
    # history item drawn as a negative could push the target's rank above 0.
    scores = torch.zeros(1, n_items + 1)
    scores[0, 1:151] = 10.0
    scores[0, 151] = 1.0

    for seed in range(20):
        metrics = evaluate_ranking(fixed_scorer(scores), evaluation_set, "sampled-100", seed=seed)
        assert metrics["hr@1"] == 1.0


def test_sampled_rank_counts_negatives_above_target():
    n_items = 200
    evaluation_set = EvaluationSet.from_histories([[1]], [2], n_items=n_items, max_len=4)
    # Every other item ties the target, so the rank is the number of negatives drawn.
    scores = torch.ones(1, n_items + 1)

    metrics = evaluate_ranking(fixed_scorer(scores), evaluation_set, "sampled-100")

    assert metrics["mrr"] == pytest.approx(1 / 101)


def test_sampled_protocol_is_seeded():
    n_items = 500
    histories = [[1 + (user % 7)] for user in range(30)]
    evaluation_set = EvaluationSet.from_histories(histories, [100] * 30, n_items, max_len=4)
    scores = torch.rand(30, n_items + 1, generator=torch.Generator().manual_seed(3))

    first = evaluate_ranking(fixed_scorer(scores), evaluation_set, "sampled-100", seed=5)
    again = evaluate_ranking(fixed_scorer(scores), evaluation_set, "sampled-100", seed=5)
    other = evaluate_ranking(fixed_scorer(scores), evaluation_set, "sampled-100", seed=6)

    assert first == again
    assert first != other


def test_batching_does_not_change_full_metrics():
    n_items = 60
    generator = torch.Generator().manual_seed(0)
    histories = [
        torch.randint(1, n_items + 1, (5,), generator=generator).tolist() for _ in range(37)
    ]
    targets = torch.randint(1, n_items + 1, (37,), generator=generator).tolist()
    evaluation_set = EvaluationSet.from_histories(histories, targets, n_items, max_len=5)
    scores = torch.randn(37, n_items + 1, generator=generator)

    whole = evaluate_ranking(fixed_scorer(scores), evaluation_set, "full", batch_size=64)
    pieces = evaluate_ranking(fixed_scorer(scores), evaluation_set, "full", batch_size=5)

    assert whole == pytest.approx(pieces, abs=1e-12)


def test_left_pad_windows_keeps_last_items():
    items = np.array([1, 2, 3, 4, 5, 6, 7], dtype=np.int64)
    starts = np.array([0, 3, 6])
    ends = np.array([3, 6, 6])

    windows = left_pad_windows(items, starts, ends, 2)

    assert windows.tolist() == [[2, 3], [5, 6], [0, 0]]


def test_evaluation_set_history_mask():
    evaluation_set = EvaluationSet.from_histories([[1, 3], [], [2]], [2, 1, 3], 4, max_len=3)

    mask = evaluation_set.history_mask(0, 3)

    assert mask.tolist() == [
        [False, True, False, True, False],
        [False, False, False, False, False],
        [False, False, True, False, False],
    ]
    assert evaluation_set.inputs.tolist() == [[0, 1, 3], [0, 0, 0], [0, 0, 2]]


@pytest.mark.parametrize(
    "protocol, expected", [("full", None), ("sampled-100", 100), ("sampled-2499", 2499)]
)
def test_count_negatives(protocol, expected):
    assert count_negatives(protocol) == expected


def test_unknown_protocol_is_rejected():
    with pytest.raises(ValueError, match="protocol"):
        count_negatives("sampled-7")


def test_include_history_with_sampled_protocol_is_rejected():
    evaluation_set = EvaluationSet.from_histories([[1]], [2], 5, max_len=2)

    with pytest.raises(ValueError, match="include_history"):
        evaluate_ranking(
            fixed_scorer(torch.zeros(1, 6)), evaluation_set, "sampled-100", include_history=True
        )


def test_target_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="targets"):
        EvaluationSet.from_histories([[1]], [9], 5, max_len=2)
